"""
The resumable training loop of :mod:`art_idfr.experiments.models`: :func:`train_model` trains a target in place with
cross-entropy (SGD or Adam, one-cycle or cosine schedule, crop / flip augmentation, deterministic for a seed),
recalibrates batch-norm statistics every epoch, writes ``epoch_NNNN.pt`` checkpoints and resumes from the newest one
whose configuration matches (:func:`latest_checkpoint`).
"""
from __future__ import annotations

import glob
import logging
import math
import os
import re
import time
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from art_idfr._utils import random_crop_flip
from art_idfr.experiments.choices import OPTIMIZERS
from art_idfr.experiments.models.predict import _as_tensors, accuracy, recalibrate_batchnorm, torch_device

logger = logging.getLogger(__name__)


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """
    Random crop with zero padding of 1/8 of the side (4 px for 32x32) plus random horizontal flips for colour
    images; 28x28 (MNIST-like digits and clothes) gets 2 px crops and no flips.
    """
    n, c, h, w = x.shape
    if (h, w) == (28, 28):
        return random_crop_flip(x, generator, pad=2, flip=False)
    return random_crop_flip(x, generator, pad=max(1, round(min(h, w) / 8)), flip=c == 3)


def latest_checkpoint(checkpoint_dir: str) -> Optional[str]:
    """
    Path of the newest ``epoch_NNNN.pt`` file in ``checkpoint_dir`` (``None`` if there is none).

    :param checkpoint_dir: Directory written by :func:`train_model`.
    :return: The path or ``None``.
    """
    files = _checkpoint_files(checkpoint_dir)
    return files[-1][1] if files else None


def _checkpoint_files(checkpoint_dir: str) -> List[Tuple[int, str]]:
    found = []
    for path in glob.glob(os.path.join(checkpoint_dir, "epoch_*.pt")):
        m = re.fullmatch(r"epoch_(\d+)\.pt", os.path.basename(path))
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


_RESUME_KEYS = (
    "epochs", "batch_size", "lr", "optimizer", "schedule", "seed", "augment", "n_train", "weight_decay",
    "recalibrate_bn",
)  # fmt: skip


def train_model(
    model: nn.Module,
    x,
    y,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: Optional[float] = None,
    optimizer: str = "sgd",
    weight_decay: Optional[float] = None,
    augment: bool = True,
    schedule: str = "onecycle",
    device: Union[str, torch.device] = "auto",
    seed: int = 0,
    checkpoint_dir: Optional[str] = None,
    resume: bool = True,
    keep_last: int = 1,
    recalibrate_bn: bool = True,
    x_val=None,
    y_val=None,
    verbose: bool = True,
    amp: Optional[bool] = None,
) -> Dict[str, List[float]]:
    """
    Train ``model`` in place with cross-entropy, optionally checkpointing after every epoch and resuming.

    The run is deterministic on CPU for a fixed ``seed``: shuffling, augmentation and dropout of epoch ``e`` draw from
    generators seeded with ``(seed, e)``, so an interrupted and resumed run gives the same weights as an
    uninterrupted one. The global RNG state is left untouched.

    :param model: The network (trained in place, moved to ``device`` and left in eval mode).
    :param x: Training images ``(N, C, H, W)`` in ``[0, 1]``.
    :param y: Integer labels ``(N,)`` (or one-hot).
    :param epochs: Total number of epochs (including those already done in a resumed checkpoint).
    :param batch_size: Mini-batch size (the last, smaller batch is kept).
    :param lr: (Peak) learning rate; default 0.05 for SGD, 1e-3 for Adam.
    :param optimizer: ``"sgd"`` (momentum 0.9, Nesterov) or ``"adam"``.
    :param weight_decay: L2 weight decay; default 5e-4 for SGD, 0 for Adam.
    :param augment: Random crop with zero padding of 1/8 of the side (+ horizontal flips for colour images); 28x28
                    gets 2 px crops only.
    :param schedule: ``"onecycle"``, ``"cosine"`` (both stepped per batch) or ``"none"``.
    :param device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a :class:`torch.device`.
    :param seed: Seed of shuffling / augmentation / dropout.
    :param checkpoint_dir: If given, ``epoch_NNNN.pt`` (model, optimizer, scheduler, epoch, history, config) is
                           written there after every epoch; older files beyond ``keep_last`` are deleted.
    :param resume: Continue from the newest checkpoint in ``checkpoint_dir`` (if any). Its configuration must match.
    :param keep_last: Number of checkpoint files to keep (>= 1).
    :param recalibrate_bn: After every epoch, recompute batch-norm statistics on up to 4096 (non-augmented)
                           training images with :func:`recalibrate_batchnorm`, so eval-mode accuracy is right even
                           after very short trainings.
    :param x_val: Optional validation images; validation accuracy is recorded after every epoch.
    :param y_val: Optional validation labels.
    :param verbose: Show a progress bar per epoch and log a line per epoch.
    :param amp: Mixed precision (bfloat16 autocast) for the training steps; ``None`` = on for CUDA, off on CPU.
                Weights, batch-norm statistics, validation and everything after training stay float32.
    :return: History dict with lists ``epoch``, ``loss``, ``train_acc``, ``val_acc`` (NaN without validation data),
             ``lr`` (at the end of the epoch) and ``seconds``.
    """
    from art_idfr.progress import progress_bar

    optimizer, schedule, lr, weight_decay = _check_training_args(epochs, batch_size, optimizer, schedule, lr,
                                                                 weight_decay, keep_last)
    xt, yt = _as_tensors(x, y)
    if len(xt) == 0:
        raise ValueError("Cannot train on an empty set.")
    if (x_val is None) != (y_val is None):
        raise ValueError("Pass both `x_val` and `y_val`, or neither.")
    dev = torch_device(device)
    model.to(dev)

    steps_per_epoch = math.ceil(len(xt) / batch_size)
    opt, sched = _optimiser_and_schedule(model, optimizer, lr, weight_decay, schedule, epochs, steps_per_epoch)
    config = _training_config(epochs, batch_size, lr, optimizer, schedule, seed, augment, len(xt), weight_decay,
                              recalibrate_bn)
    history: Dict[str, List[float]] = {k: [] for k in ("epoch", "loss", "train_acc", "val_acc", "lr", "seconds")}
    start_epoch = 0
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
        if resume:
            history, start_epoch = _resume_training(checkpoint_dir, config, model, opt, sched, dev, verbose,
                                                    history)

    use_amp = dev.type == "cuda" if amp is None else bool(amp)
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        total_loss, correct = _train_epoch(model, xt, yt, opt, sched, epoch=epoch, epochs=epochs,
                                           batch_size=batch_size, steps_per_epoch=steps_per_epoch, seed=seed,
                                           augment=augment, recalibrate_bn=recalibrate_bn, dev=dev,
                                           use_amp=use_amp, verbose=verbose, progress_bar=progress_bar)
        model.eval()
        val_acc = float("nan")
        if x_val is not None:
            val_acc = accuracy(model, x_val, y_val, batch_size=max(batch_size, 256), device=dev)
        _record_epoch(history, epoch, epochs, total_loss / len(xt), correct / len(xt), val_acc,
                      float(opt.param_groups[0]["lr"]), time.perf_counter() - t0, x_val is not None, verbose,
                      progress_bar)
        if checkpoint_dir is not None:
            _save_training_checkpoint(checkpoint_dir, epoch + 1, model, opt, sched, history, config, keep_last)

    model.eval()
    return history


def _check_training_args(epochs, batch_size, optimizer, schedule, lr, weight_decay, keep_last):
    """Check :func:`train_model`'s settings; return ``(optimizer, schedule, lr, weight_decay)`` with defaults."""
    if not isinstance(epochs, (int, np.integer)) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive int, got {epochs!r}.")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}.")
    optimizer = str(optimizer).lower()
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {optimizer!r}; use 'sgd' or 'adam'.")
    schedule = str(schedule).lower()
    if schedule not in ("onecycle", "cosine", "none"):
        raise ValueError(f"Unknown schedule {schedule!r}; use 'onecycle', 'cosine' or 'none'.")
    if lr is None:
        lr = 0.05 if optimizer == "sgd" else 1e-3
    if not lr > 0:
        raise ValueError(f"`lr` must be positive, got {lr!r}.")
    if weight_decay is None:
        weight_decay = 5e-4 if optimizer == "sgd" else 0.0
    if keep_last < 1:
        raise ValueError(f"`keep_last` must be >= 1, got {keep_last!r}.")
    return optimizer, schedule, lr, weight_decay


def _training_config(epochs, batch_size, lr, optimizer, schedule, seed, augment, n_train, weight_decay,
                     recalibrate_bn) -> Dict[str, Any]:
    """The settings saved with every checkpoint (those of :data:`_RESUME_KEYS` must match to resume)."""
    return {
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "optimizer": optimizer,
        "schedule": schedule,
        "seed": int(seed),
        "augment": bool(augment),
        "n_train": int(n_train),
        "weight_decay": float(weight_decay),
        "recalibrate_bn": bool(recalibrate_bn),
    }


def _optimiser_and_schedule(model: nn.Module, optimizer: str, lr: float, weight_decay: float, schedule: str,
                            epochs: int, steps_per_epoch: int) -> Tuple[torch.optim.Optimizer, Optional[Any]]:
    """The optimiser over the trainable parameters, and its per-batch learning-rate schedule (``None``: constant)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay
        )
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if schedule == "onecycle":
        sched: Optional[Any] = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, epochs=epochs, steps_per_epoch=steps_per_epoch
        )
    elif schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    else:
        sched = None
    return opt, sched


def _resume_training(checkpoint_dir: str, config: Dict[str, Any], model: nn.Module, opt, sched, dev: torch.device,
                     verbose: bool, history: Dict[str, List[float]]) -> Tuple[Dict[str, List[float]], int]:
    """
    Load the newest readable checkpoint of ``checkpoint_dir`` into ``model``, ``opt`` and ``sched`` (its
    configuration must match ``config``); return its history and epoch, or ``(history, 0)`` if there is none.
    """
    for epoch_done, path in reversed(_checkpoint_files(checkpoint_dir)):
        try:
            state = torch.load(path, map_location=dev, weights_only=True)
        except Exception as err:  # e.g. a file truncated by a crash: try the previous one
            logger.warning("Skipping unreadable checkpoint %s: %s", path, err)
            continue
        saved = state.get("config", {})
        diff = {k: (saved.get(k), config[k]) for k in _RESUME_KEYS if saved.get(k) != config[k]}
        if diff:
            raise ValueError(
                f"Checkpoint {path} was written with a different configuration {diff} "
                "(saved, requested); use another checkpoint_dir or resume=False."
            )
        _check_same_shapes(path, state["model"], model)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"])
        if verbose:
            logger.info("Resuming from %s (epoch %d of %d).", path, start_epoch, config["epochs"])
        return {k: list(v) for k, v in state["history"].items()}, start_epoch
    return history, 0


def _check_same_shapes(path: str, saved: Dict[str, torch.Tensor], model: nn.Module) -> None:
    """A clear error when a training checkpoint holds another architecture or width than ``model``."""
    own = model.state_dict()
    names = sorted(set(saved) ^ set(own))
    shapes = [k for k in saved if k in own and tuple(saved[k].shape) != tuple(own[k].shape)]
    if names or shapes:
        what = (f"tensor {names[0]!r} is in only one of them" if names else
                f"{shapes[0]!r} is {tuple(saved[shapes[0]].shape)} there, {tuple(own[shapes[0]].shape)} here")
        raise ValueError(f"Checkpoint {path} holds a model of another architecture or width ({what}); use another "
                         "checkpoint_dir or resume=False.")


def _train_epoch(model: nn.Module, xt: torch.Tensor, yt: torch.Tensor, opt, sched, *, epoch: int, epochs: int,
                 batch_size: int, steps_per_epoch: int, seed: int, augment: bool, recalibrate_bn: bool,
                 dev: torch.device, use_amp: bool, verbose: bool, progress_bar) -> Tuple[float, int]:
    """
    One epoch of training (shuffling, augmentation and dropout drawn from generators seeded with ``(seed, epoch)``,
    the global RNG state restored afterwards), then the batch-norm recalibration; return the summed loss and the
    number of correct training predictions.
    """
    loss_fn = nn.CrossEntropyLoss()
    cuda_devices = [dev.index or 0] if dev.type == "cuda" else []
    gen = torch.Generator().manual_seed(int(seed) * 100003 + epoch)
    perm = torch.randperm(len(xt), generator=gen)
    model.train()
    total_loss, correct = 0.0, 0
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(int(seed) * 100003 + epoch + 7)
        bar = progress_bar(
            range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=not verbose
        )
        for step in bar:
            idx = perm[step * batch_size : (step + 1) * batch_size]
            xb, yb = xt[idx], yt[idx]
            if augment:
                xb = _augment(xb, gen)
            xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(xb)
            loss = loss_fn(logits.float(), yb)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total_loss += float(loss.detach()) * len(yb)
            correct += int((logits.detach().argmax(1) == yb).sum())
            bar.set_postfix(loss=f"{total_loss / ((step * batch_size) + len(yb)):.4f}", refresh=False)
        if recalibrate_bn:
            recalibrate_batchnorm(model, xt, batch_size=max(batch_size, 256), device=dev, seed=int(seed) + epoch)
    return total_loss, correct


def _record_epoch(history: Dict[str, List[float]], epoch: int, epochs: int, loss: float, train_acc: float,
                  val_acc: float, lr: float, seconds: float, validated: bool, verbose: bool, progress_bar) -> None:
    """Append one epoch to ``history``; with ``verbose``, log it (``val_acc`` if ``validated``) and print it above
    the progress bars."""
    history["epoch"].append(epoch + 1)
    history["loss"].append(loss)
    history["train_acc"].append(train_acc)
    history["val_acc"].append(val_acc)
    history["lr"].append(lr)
    history["seconds"].append(seconds)
    if verbose:
        msg = (
            f"epoch {epoch + 1}/{epochs}: loss {history['loss'][-1]:.4f}, "
            f"train acc {history['train_acc'][-1]:.4f}"
            + (f", val acc {val_acc:.4f}" if validated else "")
            + f" ({history['seconds'][-1]:.1f} s)"
        )
        logger.info(msg)
        progress_bar.write(msg)


def _save_training_checkpoint(checkpoint_dir: str, epochs_done: int, model: nn.Module, opt, sched,
                              history: Dict[str, List[float]], config: Dict[str, Any], keep_last: int) -> None:
    """Write ``epoch_NNNN.pt`` atomically and delete the files beyond the newest ``keep_last``."""
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict() if sched is not None else {},
        "epoch": epochs_done,
        "history": history,
        "config": config,
    }
    path = os.path.join(checkpoint_dir, f"epoch_{epochs_done:04d}.pt")
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)
    for _, old in _checkpoint_files(checkpoint_dir)[:-keep_last]:
        os.remove(old)
