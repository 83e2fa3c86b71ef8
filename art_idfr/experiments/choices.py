"""
Choice lists of the experiment side, each defined once. Plain tuples, no torch/ART imports: the command line builds
its parser from them. The library's own lists (ID losses, ID architectures, residual heads, augmentations, model and attack names)
live in :mod:`art_idfr._names` and are re-exported here.
"""
from art_idfr._names import ID_ARCHITECTURES, ID_LOSSES, RESIDUAL_HEADS  # noqa: F401  (re-exported)

#: ``art_idfr.experiments.models.train_model(optimizer=...)``
OPTIMIZERS = ("sgd", "adam")

#: ``EvalConfig.device``
DEVICES = ("auto", "cpu", "cuda")
