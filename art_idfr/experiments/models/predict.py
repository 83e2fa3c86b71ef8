"""
Prediction helpers of :mod:`art_idfr.experiments.models`: the device a user's string names (:func:`torch_device`),
batched logits and top-1 accuracy of a model on NumPy or torch images (:func:`predict_logits`, :func:`accuracy`), and
the exact recomputation of batch-norm statistics after short trainings (:func:`recalibrate_batchnorm`).
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from art_idfr._utils import device_of, eval_mode


def torch_device(device: Union[str, torch.device] = "auto") -> torch.device:
    """
    The :class:`torch.device` a user's device string names: ``"auto"`` -> CUDA if available else CPU; other strings /
    devices are passed to :class:`torch.device` (CUDA only if available).

    :param device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a :class:`torch.device`.
    :return: The device.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"Invalid device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available; use device='cpu' or 'auto'.")
    return dev


def _run_device(model: nn.Module, device: Union[str, torch.device]) -> torch.device:
    """``"auto"``: the model's own device (:func:`art_idfr._utils.device_of`); else :func:`torch_device`."""
    return device_of(model) if isinstance(device, str) and device == "auto" else torch_device(device)


def _as_tensors(x, y=None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x.float()
    if xt.ndim != 4:
        raise ValueError(f"`x` must have shape (N, C, H, W), got {tuple(xt.shape)}.")
    if y is None:
        return xt, None
    y_np = y.cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if y_np.ndim == 2:  # one-hot
        y_np = y_np.argmax(axis=1)
    if y_np.ndim != 1 or len(y_np) != len(xt):
        raise ValueError(f"`y` must be {len(xt)} integer labels (or one-hot rows), got shape {y_np.shape}.")
    return xt, torch.as_tensor(y_np.astype(np.int64))


@torch.no_grad()
def predict_logits(
    model: nn.Module, x, batch_size: int = 256, device: Union[str, torch.device] = "auto"
) -> np.ndarray:
    """
    Logits of ``model`` on ``x`` (eval mode, batched).

    :param model: The network.
    :param x: Images ``(N, C, H, W)`` in ``[0, 1]``.
    :param batch_size: Batch size.
    :param device: Device to run on (``"auto"``: the model's device, that of its first parameter or buffer, CPU
                   if it has none).
    :return: ``float32`` logits ``(N, num_classes)``.
    """
    xt, _ = _as_tensors(x)
    dev = _run_device(model, device)
    with eval_mode(model.to(dev)):
        out = [model(xt[i : i + batch_size].to(dev)).float().cpu() for i in range(0, len(xt), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def accuracy(model: nn.Module, x, y, batch_size: int = 256, device: Union[str, torch.device] = "auto") -> float:
    """
    Top-1 accuracy of ``model`` on ``(x, y)``.

    :param model: The network.
    :param x: Images ``(N, C, H, W)`` in ``[0, 1]``.
    :param y: Integer labels ``(N,)`` or one-hot ``(N, K)``.
    :param batch_size: Batch size.
    :param device: Device (see :func:`predict_logits`).
    :return: Accuracy in ``[0, 1]``.
    """
    _, yt = _as_tensors(x, y)
    if len(yt) == 0:
        raise ValueError("Cannot compute the accuracy of an empty set.")
    logits = predict_logits(model, x, batch_size=batch_size, device=device)
    return float((logits.argmax(axis=1) == yt.numpy()).mean())


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    x,
    batch_size: int = 256,
    device: Union[str, torch.device] = "auto",
    max_samples: Optional[int] = 4096,
    seed: int = 0,
) -> nn.Module:
    """
    Recompute the running mean / variance of every batch-norm layer as exact averages over (a subset of) ``x``.

    The exponential running averages kept during training lag behind the weights; after short trainings (a few
    dozen steps) they can be far off, and eval-mode accuracy collapses (e.g. 10% instead of 58% after 16 steps on
    MNIST-5k). One forward pass in train mode, averaging the batch statistics weighted by batch size, fixes this.
    The model is left in eval mode.

    :param model: The network (changed in place).
    :param x: Images ``(N, C, H, W)`` in ``[0, 1]`` (no augmentation is applied).
    :param batch_size: Batch size of the forward pass.
    :param device: Device (see :func:`predict_logits`).
    :param max_samples: Use at most this many samples (a seeded random subset); ``None`` uses all.
    :param seed: Seed of the subset.
    :return: ``model``.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return model.eval()
    xt, _ = _as_tensors(x)
    if max_samples is not None and len(xt) > max_samples:
        idx = torch.randperm(len(xt), generator=torch.Generator().manual_seed(int(seed) + 7919))[:max_samples]
        xt = xt[idx.sort().values]
    dev = _run_device(model, device)
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
    model.to(dev).train()
    try:
        for i in range(0, len(xt), batch_size):
            batch = xt[i : i + batch_size]
            for m in bns:  # sample-weighted running average: the mean is exact, the variance the mean batch variance
                m.momentum = len(batch) / (i + len(batch))
            model(batch.to(dev))
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        model.eval()
    return model
