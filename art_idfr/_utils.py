"""
Shared helpers of the IDFR library, one per job: input checks, labels, devices, freezing a model, seeding, JSON.

Nothing here imports the experiment side of the package (data, models, attacks, evaluation, cli).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
from typing import Any, Iterator, Optional, Tuple

import numpy as np
import torch
from torch import nn

from art_idfr._names import DEVICE_TYPES

#: absolute slack allowed when checking that inputs lie inside ``clip_values``
CLIP_TOLERANCE = 1e-4


def check_device_type(device_type: str) -> None:
    """Raise ``ValueError`` unless ``device_type`` is ART's ``"gpu"`` or ``"cpu"``."""
    if device_type not in DEVICE_TYPES:
        raise ValueError(f"device_type must be 'gpu' or 'cpu', got {device_type!r}.")


def resolve_device(device_type: str) -> torch.device:
    """ART convention: ``"gpu"`` uses the current CUDA device when one is available, anything else the CPU."""
    check_device_type(device_type)
    if device_type == "gpu" and torch.cuda.is_available():
        return torch.device(f"cuda:{torch.cuda.current_device()}")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX); without it torch emulates bfloat16, and
    autocast to it is slower than float32 (2.9x slower for an Algorithm-1 step on an AVX-512 CPU without BF16)."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(check()) for check in checks if check is not None)


def check_pytorch_classifier(classifier, what: str = "classifier") -> None:
    """Raise a clear ``TypeError`` unless ``classifier`` is an ART ``PyTorchClassifier``."""
    from art.estimators.classification import PyTorchClassifier

    if not isinstance(classifier, PyTorchClassifier):
        raise TypeError(
            f"{what} must be an art.estimators.classification.PyTorchClassifier, got {type(classifier).__name__}. "
            "IDFR trains through the target's PyTorch graph; wrap your torch model in a PyTorchClassifier."
        )


def check_finite(x: np.ndarray | torch.Tensor, name: str = "x") -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or inf."""
    finite = torch.isfinite(x).all().item() if isinstance(x, torch.Tensor) else bool(np.isfinite(x).all())
    if not finite:
        raise ValueError(f"{name} contains NaN or inf values.")


def check_range(x: np.ndarray | torch.Tensor, clip_values: Tuple[float, float], name: str = "x") -> None:
    """Raise ``ValueError`` if ``x`` leaves ``clip_values`` (with :data:`CLIP_TOLERANCE` slack)."""
    if isinstance(x, torch.Tensor):
        lo, hi = x.detach().amin().item(), x.detach().amax().item()
    else:
        lo, hi = float(np.min(x)), float(np.max(x))
    cmin, cmax = float(clip_values[0]), float(clip_values[1])
    if lo < cmin - CLIP_TOLERANCE or hi > cmax + CLIP_TOLERANCE:
        hint = ""
        if hi > 1.5 and cmax <= 1.0:
            hint = " It looks like 0-255 pixels were given to a model that expects [0, 1]; divide by 255."
        raise ValueError(
            f"{name} has values in [{lo:.4g}, {hi:.4g}], outside clip_values=({cmin:g}, {cmax:g}).{hint}"
        )


def check_image_batch(
    x: np.ndarray | torch.Tensor,
    input_shape: Tuple[int, int, int],
    channels_first: bool,
    clip_values: Optional[Tuple[float, float]],
    name: str = "x",
) -> None:
    """
    Check a batch of images against the declared ``input_shape`` (always given channels-first as (C, H, W) or,
    with ``channels_first=False``, as (H, W, C)), layout, value range and finiteness.
    """
    shape = tuple(x.shape)
    if len(shape) != 4:
        layout = "(N, C, H, W)" if channels_first else "(N, H, W, C)"
        raise ValueError(f"{name} must be a 4-D batch {layout}, got shape {shape}.")
    if shape[1:] != tuple(input_shape):
        msg = f"{name} has per-sample shape {shape[1:]}, but the defence was built for input_shape={tuple(input_shape)}"
        other = (shape[3], shape[1], shape[2]) if channels_first else (shape[2], shape[3], shape[1])
        if other == tuple(input_shape):
            msg += (
                " — the data looks channels-last (NHWC) while channels_first=True; transpose with "
                "x.transpose(0, 3, 1, 2)"
                if channels_first
                else " — the data looks channels-first (NCHW) while channels_first=False"
            )
        raise ValueError(msg + ".")
    check_finite(x, name)
    if clip_values is not None:
        check_range(x, clip_values, name)


def class_indices(y: np.ndarray, nb_classes: int) -> np.ndarray:
    """Class indices (int64) from integer labels or one-hot/probability rows, checked against ``nb_classes``."""
    y = np.asarray(y)
    if y.ndim == 2:
        if y.shape[1] != nb_classes:
            raise ValueError(f"one-hot labels have {y.shape[1]} columns, the classifier has {nb_classes} classes.")
        return np.argmax(y, axis=1).astype(np.int64)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D class indices or 2-D one-hot, got shape {y.shape}.")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= nb_classes):
        raise ValueError(f"labels must lie in [0, {nb_classes - 1}], got range [{y.min()}, {y.max()}].")
    return y


def device_of(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for parameter-free modules)."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """
    Eval mode for the duration of the block; afterwards every submodule is back in its *own* mode (a model whose
    frozen parts are in eval mode comes back so, not with every part in the top-level module's mode).
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, mode in modes:
            m.training = mode


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and ``requires_grad=False`` for the duration of the block; restores both afterwards."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        with eval_mode(module):
            yield module
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int, flip: bool) -> torch.Tensor:
    """
    Per-sample random crop of an NCHW batch from its zero-padded copy (``pad`` pixels each side) and, if ``flip``,
    random horizontal flips (probability 1/2) — torchvision's ``RandomCrop(padding=pad)`` + ``RandomHorizontalFlip``
    drawn for every sample of a batch at once. Draws from ``generator`` in a fixed order (shifts, then flips).
    """
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :]).to(x.device)  # (n, h)
    cols = (dx[:, None] + torch.arange(w)[None, :]).to(x.device)  # (n, w)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        out = torch.where(mask[:, None, None, None], out.flip(3), out)
    return out.contiguous()


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed numpy's and torch's global RNGs for the block and restore both states afterwards."""
    state = np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        np.random.seed(int(seed) % (2**32))
        torch.manual_seed(int(seed))
        try:
            yield
        finally:
            np.random.set_state(state)


def skip_numpy_draws(count: int) -> None:
    """
    Advance numpy's global RNG by ``count`` doubles (what ``np.random.rand``/``uniform``/``random_sample`` draw one
    of per value): the stream a shard of a seeded run must start from to get the draws of its first image.
    """
    count = int(count)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}.")
    chunk = 1 << 22
    while count > 0:
        np.random.random_sample(min(count, chunk))
        count -= chunk


def seed_generator(seed: Optional[int]) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (0 when ``None``): the training randomness of a component."""
    return torch.Generator().manual_seed(seed if seed is not None else 0)


def json_clean(value: Any) -> Any:
    """
    ``value`` with only plain JSON types left: tuples become lists, dict keys strings, NumPy/torch scalars Python
    numbers and non-finite floats ``None`` (strict JSON). Used for checkpoints, metadata and reports alike.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:  # numpy/torch scalars
        return json_clean(value.item())
    return json.loads(json.dumps(value))  # anything else must already be plain JSON (raises TypeError if not)


def digest(*items: Any) -> str:
    """SHA-256 of arrays, tensors, modules (their state dicts) and strings, in order: a cheap identity of run inputs."""
    h = hashlib.sha256()
    for item in items:
        if isinstance(item, nn.Module):
            for name, tensor in item.state_dict().items():
                h.update(name.encode())
                h.update(_bytes(tensor))
        elif isinstance(item, (np.ndarray, torch.Tensor)):
            h.update(_bytes(item))
        else:
            h.update(str(item).encode())
    return h.hexdigest()


def _bytes(value) -> bytes:
    t = torch.as_tensor(value).detach().cpu().contiguous()
    return str(t.dtype).encode() + str(tuple(t.shape)).encode() + (
        t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def model_digest(model: nn.Module) -> str:
    """:func:`digest` of a model's parameters and buffers (its ``state_dict``): which exact weights it holds."""
    return digest(model)
