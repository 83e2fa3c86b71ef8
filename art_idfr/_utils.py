"""
Shared helpers of the IDFR library: input checks, device handling and a differentiable forward pass through
the frozen target of an ART `PyTorchClassifier`.

Nothing here imports the experiment side of the package (data, models, attacks, evaluation, cli).
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from art_idfr._names import AUGMENTATIONS  # noqa: F401  (re-exported)

if TYPE_CHECKING:  # pragma: no cover
    from art.estimators.classification import PyTorchClassifier

#: absolute slack allowed when checking that inputs lie inside ``clip_values``
CLIP_TOLERANCE = 1e-4


def resolve_device(device_type: str) -> torch.device:
    """ART convention: ``"gpu"`` uses the current CUDA device when one is available, anything else the CPU."""
    if device_type not in ("gpu", "cpu"):
        raise ValueError(f"device_type must be 'gpu' or 'cpu', got {device_type!r}.")
    if device_type == "gpu" and torch.cuda.is_available():
        return torch.device(f"cuda:{torch.cuda.current_device()}")
    return torch.device("cpu")


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


def to_one_hot_indices(y: np.ndarray, nb_classes: int) -> np.ndarray:
    """Accept integer labels or one-hot/probability rows and return int64 class indices."""
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
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and ``requires_grad=False`` for the duration of the block; restores both afterwards."""
    was_training = module.training
    flags = [p.requires_grad for p in module.parameters()]
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)
        module.train(was_training)


def target_logits(classifier: "PyTorchClassifier", x: torch.Tensor, skip: Sequence[type] = ()) -> torch.Tensor:
    """
    Differentiable logits of an ART ``PyTorchClassifier`` for a torch batch ``x`` in the classifier's input space.

    Applies the classifier's PyTorch preprocessing operations (defences and standardisation) except instances of
    ``skip`` — so the IDFR components can train against the *bare* target even when the classifier already carries
    them — then runs the model. Non-PyTorch defences cannot be differentiated through and raise ``TypeError``.
    """
    from art.defences.preprocessor.preprocessor import PreprocessorPyTorch
    from art.preprocessing.standardisation_mean_std.numpy import StandardisationMeanStd

    for op in classifier.preprocessing_operations:
        if skip and isinstance(op, tuple(skip)):
            continue
        if isinstance(op, StandardisationMeanStd):  # numpy standardisation: replicate it in torch
            mean = torch.as_tensor(np.asarray(op.mean), dtype=x.dtype, device=x.device)
            std = torch.as_tensor(np.asarray(op.std), dtype=x.dtype, device=x.device)
            x = (x - mean) / std
        elif isinstance(op, PreprocessorPyTorch):
            if op.apply_predict:
                x, _ = op.forward(x)
        else:
            raise TypeError(
                f"cannot back-propagate through the classifier's {type(op).__name__} (not a PreprocessorPyTorch); "
                "give IDFR the undefended classifier."
            )
    out = classifier.model(x)
    if isinstance(out, (list, tuple)):
        out = out[-1]
    return out


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


def batches(n: int, batch_size: int, shuffle: bool = False, generator: Optional[torch.Generator] = None):
    """Yield index tensors of consecutive (or shuffled) mini-batches."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def craft(attacks: Sequence, x: np.ndarray, onehot: np.ndarray, desc: str, verbose: bool = False) -> list:
    """
    ``attack.generate(x, onehot)`` for every ART attack, as float32 arrays checked for NaN/inf, with a progress bar
    over the attacks (the name and ``eps`` of the one running as its postfix) when ``verbose``.
    """
    from tqdm.auto import tqdm

    out = []
    x = np.asarray(x, dtype=np.float32)
    with tqdm(attacks, desc=desc, disable=not verbose or not attacks, leave=False) as progress:
        for attack in progress:
            name = type(attack).__name__
            eps = getattr(attack, "eps", None)
            progress.set_postfix_str(name + ("" if eps is None else f" eps={float(np.max(eps)):.4g}"))
            adv = np.asarray(attack.generate(x=x, y=onehot), dtype=np.float32)
            check_finite(adv, f"AEs from {name}")
            out.append(adv)
    return out


def warn_unused_kwargs(kwargs: dict, where: str) -> None:
    """``fit(**kwargs)`` keeps ART's signature; a keyword nothing uses (e.g. ``epochs=`` for ``nb_epochs=``) warns."""
    if kwargs:
        import warnings

        hints = {"epochs": "nb_epochs", "nb_epoch": "nb_epochs", "validation": "validation_data", "val_data":
                 "validation_data", "bs": "batch_size", "attack": "attacks", "model": "classifier"}
        names = ", ".join(f"{k!r}" + (f" (did you mean {hints[k]!r}?)" if k in hints else "") for k in kwargs)
        warnings.warn(f"{where} ignores unknown keyword argument(s): {names}.", UserWarning, stacklevel=3)

