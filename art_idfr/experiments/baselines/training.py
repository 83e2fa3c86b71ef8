"""
The training loop every baseline shares: Adam over mini-batches of NumPy arrays (shuffled by a seeded generator), a
progress bar (:func:`art_idfr.progress.progress_bar`), a per-epoch record of the mean of each loss term, and the fit
time. Each defence module supplies its own step (the loss of one batch) in its ``fit_*`` function.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from art_idfr._utils import seed_generator
from art_idfr.progress import progress_bar
from art_idfr.training.common import batches

#: a training step: the batch tensors (on the device) and the training generator -> (loss, {term: value})
Step = Callable[..., Tuple[torch.Tensor, Dict[str, float]]]


def as_tensors(arrays: Sequence[np.ndarray]) -> List[torch.Tensor]:
    """NumPy arrays -> CPU tensors (float32 images, int64 labels), checked to have the same length."""
    tensors = []
    for a in arrays:
        a = np.asarray(a)
        tensors.append(torch.from_numpy(a.astype(np.int64 if a.dtype.kind in "iu" else np.float32, copy=False)))
    if len({t.shape[0] for t in tensors}) > 1:
        raise ValueError(f"training arrays have different lengths: {[t.shape[0] for t in tensors]}.")
    return tensors


def train_epochs(network: nn.Module, parameters: Iterable[nn.Parameter], arrays: Sequence[np.ndarray], step: Step, *,
                 nb_epochs: int, batch_size: int, learning_rate: float, device: torch.device, seed: Optional[int],
                 verbose: bool, desc: str, betas: Tuple[float, float] = (0.9, 0.999), lr_schedule: str = "constant"
                 ) -> Tuple[List[Dict[str, float]], Dict[str, float]]:
    """
    Minimise ``step``'s loss with Adam for ``nb_epochs`` epochs over shuffled mini-batches of ``arrays``.

    :param network: Put in training mode during the loop and in eval mode after it.
    :param parameters: What Adam updates.
    :param arrays: NumPy arrays of the same length (images, optionally labels); each batch reaches ``step`` as
        tensors on ``device``, followed by the training ``torch.Generator`` (CPU, seeded with ``seed``).
    :param lr_schedule: One of :data:`LR_SCHEDULES`: ``"constant"``, or ``"cosine"`` (torch's
        ``CosineAnnealingLR`` from ``learning_rate`` to 0 over all the steps).
    :return: ``(history, info)``: one ``{"epoch": e, term: mean, ...}`` per epoch (``loss`` is the total) and
        ``{"fit_seconds", "nb_epochs", "n_train", "batch_size", "learning_rate"}``.
    """
    tensors = as_tensors(arrays)
    n = tensors[0].shape[0] if tensors else 0
    if n == 0:
        raise ValueError("no training data: the arrays are empty.")
    generator = seed_generator(seed)
    optimiser = torch.optim.Adam(list(parameters), lr=learning_rate, betas=betas)
    nb_batches = (n + batch_size - 1) // batch_size
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=nb_epochs * nb_batches) \
        if check_lr_schedule(lr_schedule) == "cosine" else None
    history: List[Dict[str, float]] = []
    start = time.perf_counter()
    network.train()
    try:
        with progress_bar(total=nb_epochs * nb_batches, desc=desc, disable=not verbose, leave=False) as bar:
            for epoch in range(nb_epochs):
                sums: Dict[str, float] = {}
                for idx in batches(n, batch_size, shuffle=True, generator=generator):
                    batch = [t[idx].to(device) for t in tensors]
                    loss, terms = step(*batch, generator)
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                    if scheduler is not None:
                        scheduler.step()
                    for key, value in {"loss": float(loss.detach()), **terms}.items():
                        sums[key] = sums.get(key, 0.0) + float(value) * len(idx)
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(loss.detach()):.4g}", refresh=False)
                history.append({"epoch": epoch + 1, **{k: v / n for k, v in sums.items()}})
    finally:
        network.eval()
    info = {"fit_seconds": time.perf_counter() - start, "nb_epochs": nb_epochs, "n_train": n,
            "batch_size": batch_size, "learning_rate": learning_rate, "lr_schedule": lr_schedule}
    return history, info


#: the learning-rate schedules of :func:`train_epochs`
LR_SCHEDULES = ("constant", "cosine")


def check_lr_schedule(name: str) -> str:
    """``name`` if it is one of :data:`LR_SCHEDULES`, else a ``ValueError`` naming them."""
    if name not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {name!r}.")
    return name


def randn(shape: Sequence[int], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Standard normal noise drawn from a CPU generator (the same draws on every device), moved to ``device``."""
    return torch.randn(tuple(shape), generator=generator).to(device)


def rand(shape: Sequence[int], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) noise drawn from a CPU generator, moved to ``device``."""
    return torch.rand(tuple(shape), generator=generator).to(device)
