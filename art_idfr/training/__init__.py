"""
Training of the IDFR components, one algorithm per module (the components themselves hold only inference and
persistence):

- :mod:`~art_idfr.training.algorithm1` — Algorithm 1, the ID on fixed AEs + Gaussian-enhanced clean images (Eq. 3);
- :mod:`~art_idfr.training.algorithm2` — Algorithm 2, the FR on mixed embeddings (Eq. 4-6);
- :mod:`~art_idfr.training.trainer` — :class:`IDFRTrainer`, both in sequence, ART ``Trainer`` style;
- :mod:`~art_idfr.training.adaptive` — :class:`AdaptiveDenoiserTrainer`, the ID trained against attacks through
  ID(+FR)+target (not in the paper);
- :mod:`~art_idfr.training.common` — crafting, batching, best-epoch choice, Gaussian enhancement;
- :mod:`~art_idfr.training.resume` — the resume file of a long fit (a cut adaptive fit continues where it stopped).

Names are imported on first use (PEP 562), so that the components can use :mod:`~art_idfr.training.common` without
importing the trainers (which import the components).
"""
_EXPORTS = {"IDFRTrainer": "art_idfr.training.trainer", "AdaptiveDenoiserTrainer": "art_idfr.training.adaptive"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'art_idfr.training' has no attribute {name!r}")
