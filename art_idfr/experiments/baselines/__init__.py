"""
The IDFR paper's purification baselines, reimplemented from their papers as ART-native defences (none is in ART):

============= ============================================ ============================= =============================
module        defence                                      ART form                      white-box gradient
============= ============================================ ============================= =============================
``comdefend`` :class:`ComDefend` (Jia et al. CVPR 2019)    ``PreprocessorPyTorch``       straight-through (BPDA) on
                                                                                         the code's binarisation
``nrp``       :class:`NRP` (Naseer et al. CVPR 2020)       ``PreprocessorPyTorch``       exact
``adp``       :class:`ADP` (Yoon et al. ICML 2021)         ``PreprocessorPyTorch``,      exact per draw; EOT over
                                                           randomised                    draws
``soap``      :class:`SOAPModel` (Shi et al. ICLR 2021)    an estimator (retrains the    BPDA through the purification
                                                           classifier):                  (``bpda=True``)
                                                           :func:`soap_classifier`
============= ============================================ ============================= =============================

Each module's docstring tabulates the paper's settings beside ours (the CPU preset). Every defence has ``fit`` on
NumPy NCHW arrays in ``clip_values``, ``save``/``load`` through :mod:`art_idfr.checkpoint` (kinds ``ComDefend``,
``NRP``, ``ADP``, ``SOAP``; loading never runs code) and raises ``ValueError`` on bad input or unfitted use
(:class:`NotFittedError`). The shared training loop is :mod:`~art_idfr.experiments.baselines.training`.
"""
from art_idfr.experiments.baselines._common import BaselinePreprocessor, NotFittedError
from art_idfr.experiments.baselines.adp import ADP, fit_adp
from art_idfr.experiments.baselines.comdefend import ComDefend, fit_comdefend
from art_idfr.experiments.baselines.nrp import NRP, fit_nrp
from art_idfr.experiments.baselines.soap import SOAPModel, fit_soap, soap_classifier

__all__ = ["ADP", "BaselinePreprocessor", "ComDefend", "NRP", "NotFittedError", "SOAPModel", "fit_adp",
           "fit_comdefend", "fit_nrp", "fit_soap", "soap_classifier"]
