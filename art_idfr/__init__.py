"""
art-idfr: the IDFR adversarial defence (input denoising + feature restoring) as a plug-in for IBM's Adversarial
Robustness Toolbox.

The library (this namespace: ``denoiser``, ``unet``, ``restorer``, ``inner``, ``embedding``, ``defended``, ``training``,
``checkpoint``) never imports the experiment side (``art_idfr.experiments``: data, model zoo, attacks, evaluation,
CLI). Its names are imported on first use (PEP 562), so ``import art_idfr.experiments.cli`` (and
``art-idfr --help``) does not load torch and ART; ``from art_idfr import IDFRDenoiser`` works as usual.
"""
from typing import TYPE_CHECKING

from art_idfr._version import __version__  # noqa: E402

#: public name -> module that defines it
_EXPORTS = {
    "IDFRDenoiser": "art_idfr.denoiser",
    "UNetDenoiser": "art_idfr.unet",
    "FeatureRestorer": "art_idfr.restorer",
    "RestorerMLP": "art_idfr.restorer",
    "InnerRestorer": "art_idfr.inner",
    "attach_feature_restorer": "art_idfr.defended",
    "attach_inner_restorer": "art_idfr.defended",
    "defend": "art_idfr.defended",
    "as_module": "art_idfr.defended",
    "DefendedModule": "art_idfr.defended",
    "clone_classifier": "art_idfr.defended",
    "find_embedding_layer": "art_idfr.embedding",
    "IDFRTrainer": "art_idfr.training.trainer",
    "AdaptiveDenoiserTrainer": "art_idfr.training.adaptive",
}

__all__ = [
    "IDFRDenoiser",
    "UNetDenoiser",
    "FeatureRestorer",
    "RestorerMLP",
    "InnerRestorer",
    "attach_feature_restorer",
    "attach_inner_restorer",
    "defend",
    "as_module",
    "DefendedModule",
    "clone_classifier",
    "find_embedding_layer",
    "IDFRTrainer",
    "AdaptiveDenoiserTrainer",
    "__version__",
]

if TYPE_CHECKING:  # static analysers and IDEs see the real imports
    from art_idfr.defended import (DefendedModule, as_module, attach_feature_restorer, attach_inner_restorer,
                                   clone_classifier, defend)
    from art_idfr.inner import InnerRestorer
    from art_idfr.denoiser import IDFRDenoiser
    from art_idfr.embedding import find_embedding_layer
    from art_idfr.restorer import FeatureRestorer, RestorerMLP
    from art_idfr.training.adaptive import AdaptiveDenoiserTrainer
    from art_idfr.training.trainer import IDFRTrainer
    from art_idfr.unet import UNetDenoiser


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'art_idfr' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
