"""
Steps shared by the IDFR training algorithms: crafting AEs with ART attacks, mini-batch indices, keeping the best
epoch's weights, and the keyword check of ``fit(**kwargs)``.
"""
from __future__ import annotations

import warnings
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch import nn
from art_idfr.progress import progress_bar

from art_idfr._utils import check_finite


def batches(n: int, batch_size: int, shuffle: bool = False, generator: Optional[torch.Generator] = None
            ) -> Iterator[torch.Tensor]:
    """Yield index tensors of consecutive (or shuffled) mini-batches."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def craft(attacks: Sequence, x: np.ndarray, onehot: np.ndarray, desc: str, verbose: bool = False) -> List[np.ndarray]:
    """
    ``attack.generate(x, onehot)`` for every ART attack, as float32 arrays checked for NaN/inf, with a progress bar
    over the attacks (the name and ``eps`` of the one running as its postfix) when ``verbose``. Under
    ``torch.distributed`` (:mod:`art_idfr.training.distributed`) each rank crafts a contiguous shard of ``x`` and
    every rank gets all AEs, in the order of ``x``.
    """
    from art_idfr.training import distributed as ddp

    out = []
    x = np.asarray(x, dtype=np.float32)
    lo, hi = ddp.shard_bounds(len(x))  # distributed: each rank crafts its contiguous shard, then all-gather
    x_part, onehot_part = (x[lo:hi], onehot[lo:hi]) if ddp.is_distributed() else (x, onehot)
    verbose = verbose and ddp.is_main_process()
    with progress_bar(attacks, desc=desc, disable=not verbose or not attacks, leave=False) as progress:
        for attack in progress:
            name = type(attack).__name__
            eps = getattr(attack, "eps", None)
            label = name + ("" if eps is None else f" eps={float(np.max(eps)):.4g}")
            progress.set_postfix_str(label, refresh=False)
            adv = np.asarray(attack.generate(x=x_part, y=onehot_part), dtype=np.float32) if len(x_part) else x_part
            check_finite(adv, f"AEs from {name}")
            out.append(ddp.all_gather_numpy(adv))
    return out


class BestEpoch:
    """
    Keeps a copy of the weights of the epoch with the highest validation score (the mean of clean and adversarial
    validation accuracy in both algorithms) and puts them back at the end.
    """

    def __init__(self) -> None:
        self.score = -1.0
        self.state: Optional[Dict[str, torch.Tensor]] = None

    def update(self, score: float, network: nn.Module) -> None:
        """Remember ``network``'s weights if ``score`` beats every earlier epoch."""
        if score > self.score:
            self.score = score
            self.state = {k: v.detach().clone() for k, v in network.state_dict().items()}

    def restore(self, network: nn.Module) -> None:
        """Load the best epoch's weights into ``network`` (nothing when no epoch was scored)."""
        if self.state is not None:
            network.load_state_dict(self.state)

    def finish(self, network: nn.Module) -> None:
        """End of training: the best epoch's weights, rank 0's copy on every rank when distributed, eval mode."""
        from art_idfr.training import distributed as ddp

        self.restore(network)
        ddp.sync_module(network, average_buffers=False)
        network.eval()


def validation_score(clean_acc: float, adv_accs: Sequence[float]) -> Dict[str, float]:
    """
    Best-epoch criterion: the mean of clean validation accuracy and the mean accuracy on the validation AEs, so that
    neither a component that barely changes anything (clean only) nor one that rewrites clean images wins.
    """
    stats = {"val_acc": clean_acc, "val_score": clean_acc}
    if len(adv_accs):
        adv = float(np.mean(adv_accs))
        stats.update(val_adv_acc=adv, val_score=(clean_acc + adv) / 2)
    return stats


#: common misspellings of ``fit`` keywords, for the warning of :func:`warn_unused_kwargs`
_KWARG_HINTS = {"epochs": "nb_epochs", "nb_epoch": "nb_epochs", "validation": "validation_data",
                "val_data": "validation_data", "bs": "batch_size", "attack": "attacks", "model": "classifier"}


def warn_unused_kwargs(kwargs: dict, where: str) -> None:
    """``fit(**kwargs)`` keeps ART's signature; a keyword nothing uses (e.g. ``epochs=`` for ``nb_epochs=``) warns."""
    if kwargs:
        names = ", ".join(f"{k!r}" + (f" (did you mean {_KWARG_HINTS[k]!r}?)" if k in _KWARG_HINTS else "")
                          for k in kwargs)
        warnings.warn(f"{where} ignores unknown keyword argument(s): {names}.", UserWarning, stacklevel=3)


def gaussian_enhance(x: torch.Tensor, sigma: float, rounds: int, clip_values, generator: Optional[torch.Generator]
                     ) -> torch.Tensor:
    """
    Multi-round Gaussian enhancement (Sec. 3.2, after Jeong & Shin 2020): ``rounds`` noisy copies of each clean image,
    round k of K with σ_k = σ·k/K, clipped to ``clip_values``; the input of both Algorithm 1 and Algorithm 2.
    """
    copies = []
    for k in range(1, rounds + 1):
        sigma_k = sigma * k / rounds
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
        x_e = x + sigma_k * noise
        copies.append(x_e.clamp(*clip_values) if clip_values is not None else x_e)
    return torch.cat(copies) if copies else x[:0]
