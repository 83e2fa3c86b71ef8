"""
The experiment side of art-idfr: datasets (``data``), the model zoo and target training (``models``), attacks
(``attacks``), the evaluation protocol (``evaluation``) and the command line (``cli``).

It uses the library (``art_idfr``: ID, FR, training, checkpoints); the library never imports this package.
"""
