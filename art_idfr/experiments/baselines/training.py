"""
The training loop every baseline shares: Adam over mini-batches of NumPy arrays (shuffled by a seeded generator), a
progress bar (:func:`art_idfr.progress.progress_bar`), a per-epoch record of the mean of each loss term, the fit
time, and an optional resume file that lets a cut-off fit continue where it stopped. Each defence module supplies
its own step (the loss of one batch) in its ``fit_*`` function.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from art_idfr._utils import digest, seed_generator
from art_idfr.progress import progress_bar
from art_idfr.training.common import batches
from art_idfr.training.resume import ResumeFile

#: optimizer steps between two writes of a resume file (one SOAP step on CIFAR-10 at the CPU preset: ~3 s)
CHECKPOINT_EVERY = 100
#: a fit whose last epoch's mean loss is more than this factor above its best epoch's diverged: the best epoch's
#: weights are restored (a ComDefend at Adam 3e-3 jumped from 0.014 to 0.21 and ended at one output for every image)
DIVERGED = 2.0
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
                 verbose: bool, desc: str, betas: Tuple[float, float] = (0.9, 0.999), lr_schedule: str = "constant",
                 checkpoint: Optional[str] = None, checkpoint_every: Optional[int] = None,
                 fingerprint: Optional[Dict[str, Any]] = None) -> Tuple[List[Dict[str, float]], Dict[str, float]]:
    """
    Minimise ``step``'s loss with Adam for ``nb_epochs`` epochs over shuffled mini-batches of ``arrays``.

    :param network: Put in training mode during the loop and in eval mode after it.
    :param parameters: What Adam updates.
    :param arrays: NumPy arrays of the same length (images, optionally labels); each batch reaches ``step`` as
        tensors on ``device``, followed by the training ``torch.Generator`` (CPU, seeded with ``seed``).
    :param lr_schedule: One of :data:`LR_SCHEDULES`: ``"constant"``, or ``"cosine"`` (torch's
        ``CosineAnnealingLR`` from ``learning_rate`` to 0 over all the steps).
    :param checkpoint: Path of a resume file (:mod:`art_idfr.training.resume`): the whole state (``network``'s
        weights, optimizer, schedule, generator, history, position in the epoch) is written there every
        ``checkpoint_every`` steps (default :data:`CHECKPOINT_EVERY`) and after every epoch; a fit cut off and
        started again with the same arguments continues from it and ends with the uncut fit's weights and history.
        Deleted when the fit ends. A file of another fit (settings, data, starting weights or ``fingerprint``
        differ) is refused (``ValueError``).
    :param fingerprint: What else the resume file must match (the defence's settings, a frozen helper network; a
        ``verbose`` key is left out).
    :return: ``(history, info)``: one ``{"epoch": e, term: mean, ...}`` per epoch (``loss`` is the total) and
        ``{"fit_seconds", "nb_epochs", "n_train", "batch_size", "learning_rate"}``; ``fit_seconds`` counts the
        cut-off parts of a resumed fit too. A fit that diverged (last epoch's loss above :data:`DIVERGED` × the
        best epoch's) ends with the best epoch's weights, says so, and ``info["restored_epoch"]`` names it.
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
    extra = {k: v for k, v in (fingerprint or {}).items() if k != "verbose"}
    settings = dict(nb_epochs=nb_epochs, batch_size=batch_size, learning_rate=learning_rate, betas=list(betas),
                    lr_schedule=lr_schedule, seed=seed, desc=desc, extra=extra)
    resume = None if checkpoint is None else ResumeFile(checkpoint, _fingerprint(network, tensors, settings))
    loop = _EpochLoop(network, optimiser, scheduler, generator, resume)
    every = CHECKPOINT_EVERY if checkpoint_every is None else int(checkpoint_every)
    network.train()
    try:
        with progress_bar(total=nb_epochs * nb_batches, desc=desc, disable=not verbose, leave=False) as bar:
            bar.update(loop.epoch * nb_batches + loop.step)
            while loop.epoch < nb_epochs:
                loop.run_epoch(tensors, batch_size, step, device, bar, every)
    finally:
        network.eval()
    if resume is not None:
        resume.remove()
    info = {"fit_seconds": loop.seconds(), "nb_epochs": nb_epochs, "n_train": n, "batch_size": batch_size,
            "learning_rate": learning_rate, "lr_schedule": lr_schedule}
    restored = loop.restore_best_if_diverged()
    if restored is not None:
        info["restored_epoch"] = restored
        print(f"{desc}: the fit diverged (last epoch's loss {loop.history[-1]['loss']:.4g}, best "
              f"{loop.best['loss']:.4g} at epoch {restored}): epoch {restored}'s weights are kept")
    return loop.history, info


def _fingerprint(network: nn.Module, tensors: Sequence[torch.Tensor], settings: Dict[str, Any]) -> Dict[str, Any]:
    """What a baseline's resume file must match: the settings, the training data and the starting weights."""
    return {"settings": settings, "data": digest(*tensors), "start": digest(network)}


class _EpochLoop:
    """
    The state of :func:`train_epochs` between optimizer steps (epoch, step in it, running sums, history, the
    generator's state when the epoch drew its order), loaded from ``resume`` when it holds a cut-off fit's state,
    and written to it every few steps.
    """

    def __init__(self, network: nn.Module, optimiser: torch.optim.Optimizer, scheduler: Any,
                 generator: torch.Generator, resume: Optional[ResumeFile]) -> None:
        self.network, self.optimiser, self.scheduler, self.generator, self.resume = \
            network, optimiser, scheduler, generator, resume
        self.epoch, self.step, self.sums, self.history = 0, 0, {}, []
        self.epoch_generator: Optional[torch.Tensor] = None  # the generator before the epoch drew its order
        self.best: Optional[Dict[str, Any]] = None  # {"loss", "epoch", "network"}: the lowest-loss epoch so far
        self.seconds_before, self.start = 0.0, time.perf_counter()
        saved = None if resume is None else resume.load()
        if saved is not None:
            self._restore(saved)

    def seconds(self) -> float:
        """Training seconds so far, the cut-off parts of a resumed fit included."""
        return self.seconds_before + time.perf_counter() - self.start

    def run_epoch(self, tensors: Sequence[torch.Tensor], batch_size: int, step: Step, device: torch.device,
                  bar: Any, checkpoint_every: int) -> None:
        """The rest of the current epoch (all of it, unless a resumed fit was cut inside it)."""
        n = tensors[0].shape[0]
        resumed = self.step > 0
        if resumed:  # draw the cut epoch's order again, then continue the generator where it was
            mid_epoch = self.generator.get_state()
            self.generator.set_state(self.epoch_generator)
        else:
            self.epoch_generator = self.generator.get_state()
        order = list(batches(n, batch_size, shuffle=True, generator=self.generator))
        if resumed:
            self.generator.set_state(mid_epoch)
        for idx in order[self.step:]:
            loss, terms = step(*[t[idx].to(device) for t in tensors], self.generator)
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()
            if self.scheduler is not None:
                self.scheduler.step()
            for key, value in {"loss": float(loss.detach()), **terms}.items():
                self.sums[key] = self.sums.get(key, 0.0) + float(value) * len(idx)
            self.step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4g}", refresh=False)
            if self.step % checkpoint_every == 0 and self.step < len(order):
                self._save()
        self.history.append({"epoch": self.epoch + 1, **{k: v / n for k, v in self.sums.items()}})
        self._remember_if_best(self.history[-1])
        self.epoch, self.step, self.sums = self.epoch + 1, 0, {}
        self._save()

    def _remember_if_best(self, record: Dict[str, float]) -> None:
        if self.best is None or record["loss"] < self.best["loss"]:
            weights = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
            self.best = {"loss": float(record["loss"]), "epoch": int(record["epoch"]), "network": weights}

    def restore_best_if_diverged(self) -> Optional[int]:
        """Load the best epoch's weights when the last epoch's loss is above :data:`DIVERGED` × the best; its epoch
        number, else ``None``."""
        if self.best is None or not self.history or self.history[-1]["loss"] <= DIVERGED * self.best["loss"]:
            return None
        self.network.load_state_dict(self.best["network"])
        return self.best["epoch"]

    def _save(self) -> None:
        if self.resume is None:
            return
        self.resume.save({
            "network": self.network.state_dict(), "optimiser": self.optimiser.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "generator": self.generator.get_state(), "epoch_generator": self.epoch_generator,
            "epoch": self.epoch, "step": self.step, "sums": dict(self.sums), "history": list(self.history),
            "seconds": self.seconds(), "best": self.best})

    def _restore(self, saved: Dict[str, Any]) -> None:
        self.network.load_state_dict(saved["network"])
        self.optimiser.load_state_dict(saved["optimiser"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        self.generator.set_state(saved["generator"])
        self.epoch_generator = saved["epoch_generator"]
        self.epoch, self.step, self.sums = int(saved["epoch"]), int(saved["step"]), dict(saved["sums"])
        self.history, self.seconds_before = list(saved["history"]), float(saved["seconds"])
        self.best = saved.get("best")


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
