"""
Multi-process training of the ID (Algorithm 1) and the FR (Algorithm 2) with PyTorch's own engine:
``torch.distributed`` collectives and ``DistributedDataParallel`` (DDP). Nothing here schedules work itself.

Launch with ``torchrun --nproc_per_node=N script.py`` and call :func:`init_distributed` at the top of the script
(the ``art-idfr`` command does it itself); ``IDFRDenoiser.fit`` / ``FeatureRestorer.fit`` /
``AdaptiveDenoiserTrainer.fit`` then notice the process group (world size > 1) and

- craft the training and validation AEs on a contiguous shard of ``x`` per rank and all-gather them
  (:func:`shard_bounds`, :func:`all_gather_numpy`), so every rank holds all AEs in the original order;
- draw the same epoch (Gaussian copies, shuffled order, augmentation) on every rank from the shared seed and split
  each global mini-batch ``rank::world_size`` (:func:`local_rows`): per epoch the ranks together see exactly the
  samples, and take exactly the optimizer steps, of the single-process run;
- train the network wrapped in DDP (:func:`wrap_ddp`); each rank's loss is scaled so that DDP's gradient average is
  the gradient of the global mini-batch's mean loss;
- BatchNorm: plain DDP, i.e. per-rank batch statistics during training (each rank normalises its part of the global
  batch); the running statistics are averaged over the ranks after every epoch (:func:`sync_module`), so validation
  and the final weights are the same everywhere;
- sum validation hit counts over the ranks (:func:`all_reduce_sum`), so every rank picks the same best epoch;
- broadcast rank 0's weights at the end (:func:`sync_module`): the final weights are identical on all ranks.

A module trained outside DDP (the adaptive trainer's FR, called from the target's forward hook) has its gradients
averaged by :func:`average_gradients`; :func:`broadcast_object` hands rank 0's Python objects (metadata, a resume
decision) to every rank.

Checkpoints: :func:`art_idfr.checkpoint.save` writes on rank 0 only and then waits at a :func:`barrier`; call
``save`` on every rank. Single-process runs (no process group, or world size 1) take none of these paths.
"""
from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

DEFAULT_TIMEOUT_S = 600.0


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that writes files and logs."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def leave_group() -> None:
    """
    Last call of a rank: wait for every rank (within the group's timeout), then leave the process group (no-op when
    not distributed). Without the barrier a rank can tear Gloo down while its peer is still in it; once, in CI, that
    aborted the other rank ("terminate called without an active exception") after both had finished their work.
    """
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


def init_distributed(backend: Optional[str] = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> Tuple[int, int]:
    """
    Join the process group set up by ``torchrun`` (its ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` environment).

    :param backend: ``"nccl"`` or ``"gloo"``; default NCCL when CUDA is available, else Gloo. With NCCL, each rank
        takes the GPU ``LOCAL_RANK`` (so ``device_type="gpu"`` components land on their own GPU).
    :param timeout_s: Longest wait of any collective: when a rank dies or stalls, the others fail with a
        ``RuntimeError`` naming the timeout after this many seconds instead of hanging (torchrun also stops the
        remaining ranks as soon as one exits with an error).
    :return: ``(rank, world_size)``.
    """
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")  # a timed-out NCCL op ends the process
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=float(timeout_s)))
    return dist.get_rank(), dist.get_world_size()


def shard_bounds(n: int, world: Optional[int] = None, rnk: Optional[int] = None) -> Tuple[int, int]:
    """``[lo, hi)`` of rank ``rnk``'s contiguous shard of ``range(n)``; shard sizes differ by at most one."""
    world = world_size() if world is None else world
    rnk = rank() if rnk is None else rnk
    base, extra = divmod(n, world)
    lo = rnk * base + min(rnk, extra)
    return lo, lo + base + (1 if rnk < extra else 0)


def all_gather_numpy(x: np.ndarray) -> np.ndarray:
    """Concatenate every rank's array (same trailing shape and dtype, any length) in rank order, on every rank."""
    if not is_distributed():
        return x
    x = np.ascontiguousarray(x)
    lengths = [torch.zeros(1, dtype=torch.int64) for _ in range(world_size())]
    dist.all_gather(lengths, torch.tensor([len(x)], dtype=torch.int64))
    lengths = [int(t) for t in lengths]
    longest = max(lengths)
    padded = np.zeros((longest, *x.shape[1:]), dtype=x.dtype)
    padded[: len(x)] = x
    device = _collective_device()
    gathered = [torch.zeros(padded.shape, dtype=torch.from_numpy(padded).dtype, device=device) for _ in lengths]
    dist.all_gather(gathered, torch.from_numpy(padded).to(device))
    return np.concatenate([g[:k].cpu().numpy() for g, k in zip(gathered, lengths)])


def all_gather_tensor(t: torch.Tensor) -> torch.Tensor:
    """:func:`all_gather_numpy` for a CPU tensor (bool tensors travel as uint8)."""
    if not is_distributed():
        return t
    if t.dtype == torch.bool:
        return torch.from_numpy(all_gather_numpy(t.to(torch.uint8).numpy())).bool()
    return torch.from_numpy(all_gather_numpy(t.numpy()))


def all_reduce_sum(*values: float) -> List[float]:
    """Sum each number over the ranks (float64; unchanged when not distributed)."""
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return t.cpu().tolist()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` (anything picklable) on every rank; ``obj`` itself when not distributed."""
    if not is_distributed():
        return obj
    box = [obj if is_main_process() else None]
    dist.broadcast_object_list(box, src=0, device=_collective_device())
    return box[0]


def local_rows(n_global: int, min_rows: int = 1) -> Tuple[torch.Tensor, torch.Tensor]:
    """
    This rank's rows of a global mini-batch of ``n_global`` rows: positions ``rank::world_size`` and a mask of which
    are its own. A rank left with fewer than ``min_rows`` rows (1, so that DDP's collective backward runs on every
    rank; 2 for BatchNorm1d) pads with other rows masked out, which add nothing to the loss or the counts.
    """
    world, rnk = world_size(), rank()
    own = torch.arange(rnk, n_global, world)
    if len(own) >= min_rows:
        return own, torch.ones(len(own), dtype=torch.bool)
    pad = [i for i in range(n_global) if i % world != rnk][: min_rows - len(own)]
    rows = torch.cat([own, torch.as_tensor(pad, dtype=torch.long)])
    return rows, torch.arange(len(rows)) < len(own)


def wrap_ddp(module: nn.Module) -> nn.Module:
    """``module`` in ``DistributedDataParallel`` (its parameters stay shared with ``module``); itself if single."""
    if not is_distributed():
        return module
    device = next(module.parameters()).device
    ids = [device] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, output_device=device if ids else None)


def average_gradients(module: nn.Module) -> None:
    """
    Average the gradients of ``module``'s trainable parameters over the ranks (what DDP does for the modules it
    wraps), for a module trained outside DDP, e.g. the FR inside the target's forward hook; no-op when single.
    """
    if not is_distributed():
        return
    for p in module.parameters():
        if p.requires_grad:
            if p.grad is None:  # no gradient on this rank: it adds zero (every rank must join the collective)
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad /= world_size()


def sync_module(module: nn.Module, average_buffers: bool = True) -> None:
    """
    Make ``module`` identical on every rank: parameters from rank 0; floating buffers (BatchNorm running
    statistics) averaged over the ranks when ``average_buffers``, else from rank 0; integer buffers from rank 0.
    """
    if not is_distributed():
        return
    with torch.no_grad():
        for p in module.parameters():
            dist.broadcast(p.data, src=0)
        for b in module.buffers():
            if average_buffers and b.is_floating_point():
                dist.all_reduce(b)
                b /= world_size()
            else:
                dist.broadcast(b, src=0)


def _collective_device() -> torch.device:
    """Tensors for NCCL collectives must live on the rank's GPU; Gloo takes CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
