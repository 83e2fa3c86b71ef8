"""
art-idfr: the IDFR adversarial defence (input denoising + feature restoring) as a plug-in for IBM's Adversarial
Robustness Toolbox.

The library side (this namespace) never imports the experiment side (``art_idfr.data``, ``art_idfr.models``,
``art_idfr.attacks``, ``art_idfr.evaluation``, ``art_idfr.cli``).
"""
from art_idfr.denoiser import IDFRDenoiser, UNetDenoiser
from art_idfr.restorer import FeatureRestorer, RestorerMLP, attach_feature_restorer, find_embedding_layer
from art_idfr.trainer import IDFRTrainer, defend

__version__ = "0.1.0"

__all__ = [
    "IDFRDenoiser",
    "UNetDenoiser",
    "FeatureRestorer",
    "RestorerMLP",
    "attach_feature_restorer",
    "find_embedding_layer",
    "IDFRTrainer",
    "defend",
    "__version__",
]
