"""
Weights files of :mod:`art_idfr.experiments.models`: :func:`load_weights` reads a ``state_dict`` (torchvision's, of
the backbone, or this zoo's ``model.pt``, of the whole model) with ``torch.load(weights_only=True)`` -- loading never
runs code, nothing is downloaded -- and, before loading, lists every entry that does not fit the architecture.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List

import torch
from torch import nn

from art_idfr.experiments.models.architectures import ImageClassifier, classifier_head


def load_weights(model: ImageClassifier, path: str) -> ImageClassifier:
    """
    Load a weights file into ``model`` (in place; also returned) with ``torch.load(path, map_location="cpu",
    weights_only=True)``: loading never runs code from the file, and nothing is downloaded.

    Accepted contents: a ``state_dict`` of the backbone, such as torchvision's (``conv1.weight`` ... ``fc.bias``;
    loaded into ``model.backbone``, ``model.normalize`` keeps its mean and std), or of the whole model
    (``normalize.*`` and ``backbone.*``: the ``model.pt`` of ``art-idfr train-target``); either may be wrapped as
    ``{"state_dict": ...}`` or ``{"model": ...}`` and carry DataParallel's ``module.`` prefix. Inception-v3's
    auxiliary classifier (``AuxLogits.*``, a training-time head) is dropped: the zoo's Inception-v3 has none.

    :param model: A model of :func:`make_model`.
    :param path: The file.
    :return: ``model``.
    :raises FileNotFoundError: no such file.
    :raises ValueError: not a state dict readable with ``weights_only=True``, or entries missing, unexpected or shaped
                        unlike the architecture's (listed; with a hint when the number of classes differs).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} not found.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, refused globals, truncated files, ...
        raise ValueError(
            f"{path}: cannot be read as a PyTorch state_dict with torch.load(weights_only=True) "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); save weights with "
            "torch.save(model.state_dict(), path)."
        ) from err
    state = _state_dict_of(state, path)
    whole = any(k.startswith("backbone.") for k in state)
    module = model if whole else model.backbone
    arch = getattr(model, "arch", "") or type(module).__name__
    if arch == "inception_v3":
        aux = "backbone.AuxLogits." if whole else "AuxLogits."
        state = {k: v for k, v in state.items() if not k.startswith(aux)}
    _check_state_dict(module, state, path, arch)
    module.load_state_dict(state, strict=True)
    return model


def _state_dict_of(obj: Any, path: str) -> Dict[str, torch.Tensor]:
    """The ``{name: tensor}`` dict in a loaded file (unwrapping ``state_dict`` / ``model``; ``module.`` removed)."""
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ValueError(f"{path}: not a state_dict (a dict of parameter names to tensors) but a "
                         f"{type(obj).__name__}; save weights with torch.save(model.state_dict(), path).")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def _check_state_dict(module: nn.Module, state: Dict[str, torch.Tensor], path: str, arch: str) -> None:
    """``ValueError`` listing what does not fit, before ``load_state_dict`` (whose message is one long line)."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} in the model"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    if not (missing or unexpected or shapes):
        return

    def few(keys: List[str]) -> str:
        return ", ".join(keys[:4]) + (f", ... ({len(keys)} in all)" if len(keys) > 4 else "")

    found = [f"{what}: {few(keys)}" for what, keys in (("missing", missing), ("unexpected", unexpected),
                                                        ("other shapes", shapes)) if keys]
    head = classifier_head(module)
    head_key = next(f"{n}.weight" for n, m in module.named_modules() if m is head)
    hint = ""
    if head_key in state and state[head_key].ndim == 2 and state[head_key].shape[0] != head.out_features:
        hint = (f" The file's classifier has {state[head_key].shape[0]} classes, the model {head.out_features} (the "
                "dataset's class folders): ImageNet weights need all 1000 class folders (sorted WordNet IDs, "
                "torchvision's class order).")
    raise ValueError(f"{path}: the weights do not fit {arch}: {'; '.join(found)}.{hint}")
