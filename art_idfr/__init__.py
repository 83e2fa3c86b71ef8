"""
art-idfr: the IDFR adversarial defence (input denoising + feature restoring) as a plug-in for IBM's Adversarial
Robustness Toolbox.

The library side (this namespace) never imports the experiment side (``art_idfr.experiments.data``, ``art_idfr.experiments.models``,
``art_idfr.experiments.attacks``, ``art_idfr.experiments.evaluation``, ``art_idfr.experiments.cli``). Its names are imported on first use (PEP 562), so
``import art_idfr.experiments.cli`` (and ``art-idfr --help``) does not load torch and ART; ``from art_idfr import IDFRDenoiser``
works as usual.
"""
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS = {
    "IDFRDenoiser": "art_idfr.denoiser",
    "UNetDenoiser": "art_idfr.denoiser",
    "FeatureRestorer": "art_idfr.restorer",
    "RestorerMLP": "art_idfr.restorer",
    "attach_feature_restorer": "art_idfr.restorer",
    "find_embedding_layer": "art_idfr.restorer",
    "IDFRTrainer": "art_idfr.trainer",
    "defend": "art_idfr.trainer",
}

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

if TYPE_CHECKING:  # static analysers and IDEs see the real imports
    from art_idfr.denoiser import IDFRDenoiser, UNetDenoiser
    from art_idfr.restorer import FeatureRestorer, RestorerMLP, attach_feature_restorer, find_embedding_layer
    from art_idfr.trainer import IDFRTrainer, defend


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'art_idfr' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
