"""
One adaptive training run (:class:`_AdaptiveRun`, driven by :class:`~art_idfr.training.adaptive.AdaptiveDenoiserTrainer`):
the defended forward pass, the inner attack, the loss of the trainer's module docstring, the epochs, the resume
state and the best-epoch choice. The trained parts are the ID, and, as the trainer says, the FR and the restorers
inside the target; the target itself stays frozen.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from art_idfr._utils import class_indices, frozen, seed_generator
from art_idfr.defended import clone_classifier
from art_idfr.denoiser import IDFRDenoiser
from art_idfr.embedding import target_logits
from art_idfr.progress import progress_bar
from art_idfr.training import distributed as ddp
from art_idfr.training.common import BestEpoch, batches, validation_score
from art_idfr.training.resume import ResumeFile

logger = logging.getLogger("art_idfr.training.adaptive")


class _NoDenoiser:
    """Stands in for the ID when only parts behind it train (restorers inside the target, the FR): x ↦ x."""

    def __init__(self, classifier: Any) -> None:
        self.clip_values, self.channels_first = classifier.clip_values, classifier.channels_first
        self.device = classifier.device
        self.network = nn.Identity()  # no weights: nothing to train, freeze or average

    def denoise_nchw(self, x: torch.Tensor, fused: bool = False, batch_size: Optional[int] = None,
                     network: Optional[nn.Module] = None) -> torch.Tensor:
        return x


class _AdaptiveRun:
    """One adaptive training run: the inner attack, the loss, the epochs, the best-epoch choice."""

    def __init__(self, trainer: Any, fixed: Optional[torch.Tensor]) -> None:  # an AdaptiveDenoiserTrainer
        self.t, self.fixed = trainer, fixed
        self.den = trainer.denoiser if trainer.denoiser is not None else _NoDenoiser(trainer.target)
        self.clf = trainer._head_classifier  # the target, with the restorers (inner, FR) hooked in when there are
        self.trained = trainer.trained_networks()  # what the optimizer steps: ID, FR, inner restorers
        self.bare = trainer.target
        self.skip = (IDFRDenoiser,)  # the ID is applied by us, once
        self.generator = seed_generator(trainer.seed)
        self.to_model = (lambda t: t) if self.den.channels_first else (lambda t: t.permute(0, 2, 3, 1))
        self.to_nchw = (lambda t: t) if self.den.channels_first else (lambda t: t.permute(0, 3, 1, 2))
        self.resume: Optional[ResumeFile] = None
        self.seconds_before = 0.0  # fit seconds of the earlier, cut-off parts of a resumed run

    # ------------------------------------------------------------------ the defended forward pass
    def logits(self, x: torch.Tensor, fused: bool = False) -> torch.Tensor:
        """f(FR(ID(x))) for a batch in the classifier's layout; differentiable w.r.t. ``x`` and the ID's weights."""
        x_star = self.den.denoise_nchw(self.layout(self.to_nchw(x).to(self.den.device)), fused=fused)
        return target_logits(self.clf, self.to_model(x_star).to(self.clf.device), skip=self.skip)

    def inner_attack(self, x: torch.Tensor, y: torch.Tensor, eps: float,
                     noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The AEs of this batch through the current defence (ID weights frozen in eval mode while crafting)."""
        t = self.t
        if callable(t.attack):
            return self._art_attack(x, y, eps)
        with self.amp():
            return self._builtin_attack(x, y, eps, noise)

    def _builtin_attack(self, x: torch.Tensor, y: torch.Tensor, eps: float, noise: Optional[torch.Tensor]):
        t = self.t
        ref = self.clean_reference(x) if t.trades_beta > 0 and t.trades_reference == "defended" else None
        if t.attack == "fgsm_rs":
            return self.pgd(x, y, eps, steps=1, step=1.25 * eps, noise=noise, reference=ref)
        if t.attack == "n_fgsm":  # de Jorge et al. 2022: noise of radius 2ε, step ε, no projection to the ε-ball
            return self.pgd(x, y, 3 * eps, steps=1, step=eps, noise=noise, start=2 * eps, reference=ref)
        return self.pgd(x, y, eps, steps=t.max_iter, step=t.eps_step * eps / t.eps, noise=noise, reference=ref)

    def clean_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The defended classifier's class probabilities on the clean batch (TRADES' inner reference), no gradient."""
        with torch.no_grad():
            return F.softmax(self.logits(x).float(), dim=1)

    def layout(self, x_nchw: torch.Tensor) -> torch.Tensor:
        """An NCHW batch in channels-last memory layout with the trainer's ``channels_last``, else as it is."""
        return x_nchw.contiguous(memory_format=torch.channels_last) if self.t.channels_last else x_nchw

    def amp(self):
        """The trainer's ``autocast`` (bfloat16 on the device of the target) around a forward pass, else nothing."""
        dev = torch.device(self.clf.device).type
        return torch.autocast(dev, dtype=torch.bfloat16, enabled=self.t.autocast == "bf16")

    def pgd(self, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, step: float,
            noise: Optional[torch.Tensor] = None, start: Optional[float] = None,
            reference: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        L∞ PGD with a uniform random start in the ``start``-ball (default: the ε-ball), projected to the ε-ball, on
        the cross-entropy of the defended classifier, or with ``reference`` (class probabilities) on the KL from it
        (TRADES). ``noise``: the start's ``U[0, 1)`` draws (default: drawn here from the run's generator).
        """
        lo, hi = self.den.clip_values if self.den.clip_values is not None else (-math.inf, math.inf)
        if noise is None:
            noise = torch.rand(x.shape, generator=self.generator)
        x_adv = (x + (eps if start is None else start) * (noise.to(x.device) * 2 - 1)).clamp(lo, hi)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            logits = self.logits(x_adv).float()
            loss = (F.cross_entropy(logits, y.to(self.clf.device)) if reference is None else
                    F.kl_div(F.log_softmax(logits, dim=1), reference, reduction="batchmean"))
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = x_adv.detach() + step * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(lo, hi)
        return x_adv.detach()

    def _art_attack(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        own = list(self.bare.preprocessing_defences or [])
        front = [self.den] if isinstance(self.den, IDFRDenoiser) else []
        attack = self.t.attack(clone_classifier(self.clf, preprocessing_defences=[*front, *own]))
        if hasattr(attack, "eps") and eps != self.t.eps:  # ε warm-up: scale the attack's budget
            attack.set_params(eps=eps, eps_step=getattr(attack, "eps_step", eps) * eps / self.t.eps)
        onehot = np.eye(self.bare.nb_classes, dtype=np.float32)[y.cpu().numpy()]
        return torch.as_tensor(attack.generate(x=x.cpu().numpy(), y=onehot), device=x.device)

    # ------------------------------------------------------------------ the loss
    def batch_loss(self, xb: torch.Tensor, yb: torch.Tensor, x_adv: torch.Tensor, x_fix: Optional[torch.Tensor],
                   own: Optional[torch.Tensor] = None, n_global: Optional[int] = None):
        """
        L of the module docstring for one batch; returns (loss, logits on the online AEs). Distributed (``own``: the
        mask of this rank's rows, ``n_global``: rows of the global batch): this rank's share of every mean, summed
        over its own rows, normalised by the global batch and × world size, for DDP's gradient average.
        """
        t, n, dev = self.t, len(xb), self.clf.device
        parts = [x_adv, xb] + ([x_fix] if x_fix is not None else [])
        x_all = torch.cat(parts)
        x_nchw = self.layout(self.to_nchw(x_all).to(self.den.device))
        # one pass (one BN batch), train mode; distributed: through the DDP wrapper
        with self.amp():
            x_star = self.den.denoise_nchw(x_nchw, batch_size=len(x_nchw), network=self.ddp_net)
            logits = target_logits(self.clf, self.to_model(x_star).to(dev), skip=self.skip).float()
        x_star = x_star.float()
        y_dev = yb.to(dev)
        mean = _batch_mean(own, n_global)

        def ce(lg: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(lg, y_dev) if own is None else mean(F.cross_entropy(lg, y_dev, reduction="none"))

        loss = t.adversarial_weight * ce(logits[:n])  # Eq. 3 on the online AEs
        loss = loss + t.clean_weight * ce(logits[n : 2 * n])  # Eq. 3 on clean images
        if x_fix is not None:
            loss = loss + t.fixed_weight * ce(logits[2 * n :])  # Algorithm 1's fixed AEs
        if t.trades_beta > 0:  # TRADES-style, to the target's clean prediction or (TRADES) the defended one
            p_clean = self.trades_target(xb, logits[n : 2 * n])
            log_p = F.log_softmax(logits[:n], dim=1)
            kl = (F.kl_div(log_p, p_clean, reduction="batchmean") if own is None else
                  mean(F.kl_div(log_p, p_clean, reduction="none").sum(1)))
            loss = loss + t.trades_beta * kl
        if t.identity_weight > 0:  # keep ID(x) ≈ x on clean inputs
            diff = (x_star[n : 2 * n] - self.to_nchw(xb).to(self.den.device)).abs()
            loss = loss + t.identity_weight * (diff.mean() if own is None else mean(diff.flatten(1).mean(1)))
        return loss, logits[:n]

    def trades_target(self, xb: torch.Tensor, defended_clean_logits: torch.Tensor) -> torch.Tensor:
        """The KL term's reference: the frozen target's clean probabilities, or the defended ones (with gradient)."""
        if self.t.trades_reference == "defended":
            return F.softmax(defended_clean_logits, dim=1)
        with torch.no_grad():
            return F.softmax(target_logits(self.bare, xb.to(self.clf.device), skip=self.skip), dim=1)

    # ------------------------------------------------------------------ the epochs
    def train(self, x: np.ndarray, y_idx: np.ndarray, nb_epochs: int, validation_data,
              resume: Optional[ResumeFile] = None, checkpoint_every: int = 200) -> None:
        t, den = self.t, self.den
        params = [p for net in self.trained for p in net.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=t.learning_rate)
        steps = max(1, nb_epochs * math.ceil(len(x) / t.batch_size))
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=t.learning_rate,
                                                             total_steps=steps, pct_start=0.15)
        x_t, y_t = torch.as_tensor(x), torch.as_tensor(y_idx)
        self.best = BestEpoch()
        trained = self.trained
        modules = [self.bare.model] + [net for net in t.networks() if all(net is not k for k in trained)]
        kept = nn.ModuleList(trained)  # what the best epoch keeps: every trained part (ID, FR, inner restorers)
        # distributed: the ID under DDP (the FR and inner restorers run in the target's hooks, averaged by hand)
        self.ddp_net = ddp.wrap_ddp(den.network) if t.train_denoiser else den.network
        self.kept, self.ema = kept, _weight_average(kept, t.ema_decay)  # ema: None without ema_decay
        self.resume, self.checkpoint_every, self.history_from = resume, checkpoint_every, len(t.history)
        self.started = time.perf_counter()
        with contextlib.ExitStack() as stack:
            if t.channels_last and t.train_denoiser:  # the ID's weights too (ours; converted back at the end)
                den.network.to(memory_format=torch.channels_last)
                stack.callback(lambda: den.network.to(memory_format=torch.contiguous_format))
            for module in modules:
                stack.enter_context(frozen(module))
            at = self.restore_state()  # where a resumed run stopped (None: a fresh run)
            if at is None and validation_data is not None:  # the start is recorded as epoch 0 (and may be kept)
                start = {"epoch": 0, **self.validate(validation_data)}
                t.history.append(start)
                if t.keep_start or not nb_epochs:
                    self.best.update(start["val_score"], kept)
            for epoch in range(at["epoch"] if at else 0, nb_epochs):
                position = at["position"] if at and epoch == at["epoch"] else None
                stats = self.train_epoch(x_t, y_t, epoch, nb_epochs, position)
                for module in trained:
                    ddp.sync_module(module)  # distributed: BN running statistics averaged over the ranks
                if validation_data is not None:
                    with self.averaged_weights(kept):  # the weights that would be kept are the ones scored
                        stats.update(self.validate(validation_data))
                        self.best.update(stats["val_score"], kept)
                t.history.append(stats)
                logger.info("%s epoch %d: %s", _what(t), epoch + 1, stats)
                self.save_state(epoch + 1)
        if self.ema is not None:  # no validation: the averaged weights of the last step
            kept.load_state_dict(self.ema.module.state_dict())
        self.best.finish(kept)  # best epoch's weights (ID and trained FR alike), rank 0's on every rank, eval mode
        if resume is not None:
            resume.remove()
        self.ddp_net = self.ema = self.kept = None  # release the DDP wrapper (its hooks), the EMA copy

    def save_state(self, epoch: int, position: Optional[Dict[str, Any]] = None) -> None:
        """
        Write the resume file (if any): the state after ``epoch`` whole epochs, plus with ``position`` (the epoch's
        batch order, steps done, running sums) the steps done inside epoch ``epoch``.
        """
        if self.resume is None:
            return
        self.resume.save({
            "epoch": epoch, "position": position, "kept": self.kept.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "history": self.t.history[self.history_from:],
            "best": {"score": self.best.score, "state": self.best.state},
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "seconds": self.seconds_before + time.perf_counter() - self.started})

    def restore_state(self) -> Optional[Dict[str, Any]]:
        """Load the resume file's state into this run; where it stopped (``{"epoch", "position"}``), or None."""
        state = self.resume.load() if self.resume is not None else None
        if state is None:
            return None
        self.kept.load_state_dict(state["kept"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.t.history.extend(state["history"])
        self.best.score, self.best.state = state["best"]["score"], state["best"]["state"]
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.seconds_before = float(state["seconds"])
        at = {"epoch": int(state["epoch"]), "position": state["position"]}
        logger.info("adaptive ID: resuming %s at epoch %d, step %d", self.resume.path, at["epoch"] + 1,
                    (at["position"] or {}).get("step", 0))
        return at

    @contextlib.contextmanager
    def averaged_weights(self, kept: nn.Module):
        """Inside: ``kept`` holds the moving average of its weights (``ema_decay``); the raw ones come back after."""
        if self.ema is None:
            yield
            return
        raw = {k: v.detach().clone() for k, v in kept.state_dict().items()}
        kept.load_state_dict(self.ema.module.state_dict())
        try:
            yield
        finally:
            kept.load_state_dict(raw)

    def eps_at(self, progress: float) -> float:
        """ε schedule: linear warm-up over the first ``eps_warmup`` of training, then constant."""
        w = self.t.eps_warmup
        return self.t.eps if w <= 0 or progress >= w else self.t.eps * max(progress / w, 1e-3)

    def _set_mode(self, training: bool) -> None:
        """Train or eval mode for the trained networks (eval while the inner attack crafts)."""
        for net in self.trained:
            net.train(training)

    def batch_draws(self, x_t: torch.Tensor, y_t: torch.Tensor, idx: torch.Tensor):
        """
        The global batch ``idx``: images, labels, one random fixed AE of each image and the inner attack's random
        start, drawn on every rank in the single-process order; returns this rank's rows of each and the mask of its
        own rows (``None`` in a single process).
        """
        t, den = self.t, self.den
        xb, yb = x_t[idx], y_t[idx]
        x_fix = noise = own = None
        if self.fixed is not None:  # one random fixed AE of each image
            pick = torch.randint(len(self.fixed), (len(idx),), generator=self.generator)
            x_fix = self.fixed[pick, idx]
        if not callable(t.attack):
            noise = torch.rand(xb.shape, generator=self.generator)
        if ddp.is_distributed():  # this rank's rows rank::world_size of the global batch
            rows, own = ddp.local_rows(len(idx))
            xb, yb = xb[rows], yb[rows]
            x_fix = x_fix[rows] if x_fix is not None else None
            noise = noise[rows] if noise is not None else None
        x_fix = x_fix.to(den.device) if x_fix is not None else None
        return xb.to(den.device), yb, x_fix, noise, own

    def train_epoch(self, x_t, y_t, epoch: int, nb_epochs: int, position: Optional[Dict[str, Any]] = None
                    ) -> Dict[str, float]:
        """
        One epoch; ``position`` (from a resume file): its batch order, steps already done and running sums. Every
        ``checkpoint_every`` steps the run's state goes to the resume file.
        """
        t, n = self.t, len(x_t)
        nb_batches = math.ceil(n / t.batch_size)
        pos = position or {"order": torch.randperm(n, generator=self.generator), "step": 0, "total": 0,
                           "loss_sum": 0.0, "correct": 0}
        order, done = pos["order"], int(pos["step"])
        total, loss_sum, correct = int(pos["total"]), float(pos["loss_sum"]), int(pos["correct"])
        if not ddp.is_main_process():  # resumed: rank 0 carries the sums over all ranks, summed again at the end
            total, loss_sum, correct = 0, 0.0, 0
        progress = progress_bar(range(done, nb_batches), total=nb_batches, initial=done,
                                desc=f"{_what(t)} epoch {epoch + 1}", leave=False,
                                disable=not t.verbose or not ddp.is_main_process())
        for i in progress:
            idx = order[i * t.batch_size : (i + 1) * t.batch_size]
            xb, yb, x_fix, noise, own = self.batch_draws(x_t, y_t, idx)
            eps = self.eps_at((epoch + i / nb_batches) / max(nb_epochs, 1))
            loss, logits = self.train_step(xb, yb, x_fix, noise, own, len(idx), eps)
            hits = logits.argmax(1).cpu() == yb
            total += len(idx) if own is None else int(own.sum())
            loss_sum += loss.item() * len(idx) / ddp.world_size()  # summed over ranks: the batch loss × its size
            correct += (hits if own is None else hits & own).sum().item()
            progress.set_postfix(loss=f"{loss_sum / max(total, 1):.4f}", adv_acc=f"{correct / max(total, 1):.3f}",
                                 refresh=False)
            if (i + 1) % self.checkpoint_every == 0 and i + 1 < nb_batches:  # the sums over all ranks are saved
                sums = dict(zip(("loss_sum", "correct", "total"), ddp.all_reduce_sum(loss_sum, correct, total)))
                self.save_state(epoch, {"order": order, "step": i + 1, **sums})
        self._set_mode(False)
        loss_sum, correct, total = ddp.all_reduce_sum(loss_sum, correct, total)
        return {"epoch": epoch + 1, "loss": loss_sum / max(total, 1), "train_adv_acc": correct / max(total, 1),
                "n_seen": int(total)}

    def train_step(self, xb, yb, x_fix, noise, own, n_global: int, eps: float) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        One optimizer step on a batch of :meth:`batch_draws`: the inner attack at ``eps`` (ID and FR in eval mode),
        with ``awp_gamma`` the weight perturbation, the loss, the update and the EMA; returns the loss and the logits
        on the online AEs.
        """
        self._set_mode(False)
        batch = (xb, yb, self.inner_attack(xb, yb, eps, noise), x_fix, own, n_global)
        self._set_mode(True)
        saved = self.perturb_weights(batch) if self.t.awp_gamma > 0 else []  # AWP: the loss taken at w + v
        loss, logits = self.batch_loss(*batch[:4], own=own, n_global=n_global)
        self.gradients(loss)
        with torch.no_grad():
            for param, w in saved:
                param.copy_(w)  # ... and the step taken from w
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.kept)
        return loss, logits

    def gradients(self, loss: torch.Tensor) -> None:
        """The trained weights' gradients of ``loss`` (distributed: averaged over the ranks, the FR's by hand)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for net in self.trained:  # distributed: the FR and inner restorers run in the target's hooks, outside DDP
            if net is not self.den.network:
                ddp.average_gradients(net)

    def perturb_weights(self, batch) -> List[Tuple[nn.Parameter, torch.Tensor]]:
        """
        AWP (Wu et al. 2020): add to each trained weight matrix / kernel ``w`` the step
        ``v = awp_gamma · ‖w‖ · g / ‖g‖`` along its gradient ``g`` of this batch's loss; returns ``(parameter, w)``
        pairs, to put ``w`` back after the perturbed weights' gradient (biases and BatchNorm stay unperturbed, as in
        the paper).
        """
        xb, yb, x_adv, x_fix, own, n_global = batch
        self.gradients(self.batch_loss(xb, yb, x_adv, x_fix, own=own, n_global=n_global)[0])
        saved = []
        with torch.no_grad():
            for group in self.optimizer.param_groups:
                for param in group["params"]:
                    if param.dim() > 1 and param.grad is not None and float(param.grad.norm()) > 0:
                        saved.append((param, param.detach().clone()))
                        param.add_(self.t.awp_gamma * param.norm() * param.grad / param.grad.norm())
        return saved

    # ------------------------------------------------------------------ best-epoch choice
    def validate(self, validation_data, steps: int = 20) -> Dict[str, float]:
        """
        Clean accuracy and accuracy under ``steps``-step PGD at ε through the current defence. Distributed: each
        rank takes its rows ``rank::world_size`` of every validation batch (with the random starts every rank draws
        for the whole batch, as one process does) and the hits are summed over the ranks.
        """
        x_val = torch.as_tensor(np.asarray(validation_data[0], dtype=np.float32))
        y_val = torch.as_tensor(class_indices(validation_data[1], self.bare.nb_classes))
        eps, clean, adv = self.t.eps, 0, 0
        for idx in batches(len(x_val), self.t.batch_size):
            xb, yb = x_val[idx], y_val[idx]
            noise = torch.rand(xb.shape, generator=self.generator)
            if ddp.is_distributed():
                rows, _ = ddp.local_rows(len(idx), min_rows=0)
                xb, yb, noise = xb[rows], yb[rows], noise[rows]
                if not len(rows):
                    continue
            xb = xb.to(self.den.device)
            with torch.no_grad():
                clean += (self.logits(xb).argmax(1).cpu() == yb).sum().item()
            x_adv = self.pgd(xb, yb, eps, steps=steps, step=2.5 * eps / steps, noise=noise)
            with torch.no_grad():
                adv += (self.logits(x_adv).argmax(1).cpu() == yb).sum().item()
        clean, adv = ddp.all_reduce_sum(clean, adv)
        n = max(len(x_val), 1)
        return validation_score(clean / n, [adv / n])


def _weight_average(kept: nn.Module, decay: float) -> Optional[torch.optim.swa_utils.AveragedModel]:
    """torch's exponential moving average of ``kept``'s parameters and buffers, or None when ``decay`` is 0."""
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(kept, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _batch_mean(own: Optional[torch.Tensor], n_global: Optional[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """
    The mean over a batch of per-sample values: ``.mean()`` in a single process (``own is None``); distributed, this
    rank's share: the sum over its own rows / ``n_global`` × world size (DDP then averages over the ranks).
    """
    if own is None:
        return lambda v: v.mean()
    scale = ddp.world_size() / max(int(n_global), 1)
    return lambda v: (v * own.to(v.device, v.dtype)).sum() * scale


def _what(trainer) -> str:
    """What the progress lines call the fit: the adaptive ID's, or (no ID trained) the adaptive fit's."""
    return "adaptive ID" if trainer.train_denoiser else "adaptive fit"
