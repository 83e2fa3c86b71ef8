"""
Algorithm 1 of the paper: train the input denoiser (ID) on adversarial examples of ART attacks plus the clean images
and their Gaussian-enhanced copies, minimising Eq. 3 (cross-entropy of the frozen target on ``ID(·)``).

Entry: :func:`fit_denoiser` (what ``IDFRDenoiser.fit`` runs). The options beyond the paper (feature loss, clean
weight, identity term, augmentation, AE regeneration, best-epoch choice on validation data) are labelled where used.
This module never imports :mod:`art_idfr.denoiser` (which imports it): it works on the ``IDFRDenoiser`` passed in,
through its attributes and methods (``check_input``, ``denoise_nchw``, ``gaussian_enhance``, ``mark_fitted``, ...).

| Paper: "Adversarial Defense via Input Denoising and Feature Restoring" (IDFR), Sec. 3.2, Algorithm 1, Eq. 3.
"""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from art_idfr.progress import progress_bar

from art_idfr._utils import check_pytorch_classifier, class_indices, frozen, random_crop_flip, seed_generator
from art_idfr.embedding import embedding_of, target_logits
from art_idfr.training import distributed as ddp
from art_idfr.training.common import BestEpoch, batches, craft, validation_score

if TYPE_CHECKING:  # pragma: no cover
    from art.attacks.attack import EvasionAttack
    from art.estimators.classification import PyTorchClassifier

    from art_idfr.training.resume import ResumeFile

logger = logging.getLogger(__name__)

EMPTY = (torch.zeros(0), torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))


def fit_denoiser(
    denoiser: "IDFRDenoiser",
    x: np.ndarray,
    y: np.ndarray,
    classifier: "PyTorchClassifier",
    attacks: Sequence["EvasionAttack"] = (),
    nb_epochs: Optional[int] = None,
    batch_size: Optional[int] = None,
    x_adv: Optional[np.ndarray] = None,
    y_adv: Optional[np.ndarray] = None,
    validation_data: Optional[Tuple] = None,
    resume: Optional["ResumeFile"] = None,
) -> None:
    """
    Train ``denoiser`` in place by Algorithm 1 (arguments as documented on ``IDFRDenoiser.fit``); marks it fitted.
    With ``resume`` (not in the paper) the state after every epoch goes to that file, and a fit cut off between
    epochs continues from the last one (same weights as the uncut fit); the caller deletes the file once its whole
    fit is done (``IDFRTrainer``: after the FR, so that a cut in the FR's epochs does not repeat the ID's).
    """
    if classifier is None:
        raise ValueError("IDFRDenoiser.fit needs the target: fit(x, y, classifier=..., attacks=[...]).")
    if y is None:
        raise ValueError("IDFRDenoiser.fit needs labels y.")
    check_pytorch_classifier(classifier)
    denoiser.check_input(x)
    y_idx = class_indices(y, classifier.nb_classes)
    if len(y_idx) != len(x):
        raise ValueError(f"x has {len(x)} samples but y has {len(y_idx)}.")
    run = Algorithm1(denoiser, classifier, list(attacks or []),
                     denoiser.batch_size if batch_size is None else int(batch_size))
    run.train(x, y_idx, denoiser.nb_epochs if nb_epochs is None else int(nb_epochs), x_adv, y_adv, validation_data,
              resume)


class Algorithm1:
    """One training run of Algorithm 1 for ``denoiser`` against the frozen ``classifier``."""

    def __init__(self, denoiser: "IDFRDenoiser", classifier: "PyTorchClassifier", attacks: List, batch_size: int):
        self.den, self.clf, self.attacks, self.batch_size = denoiser, classifier, attacks, batch_size
        self.skip = (type(denoiser),)  # the ID is applied once, by us: bypass any copy inside the classifier
        self.nb_classes = classifier.nb_classes
        self.generator = seed_generator(denoiser.seed)
        self.distributed = ddp.is_distributed()  # torchrun: see art_idfr.training.distributed

    # ------------------------------------------------------------------ the algorithm
    def train(self, x: np.ndarray, y_idx: np.ndarray, nb_epochs: int, x_adv, y_adv, validation_data,
              resume: Optional["ResumeFile"] = None) -> None:
        den = self.den
        x_clean, y_clean = torch.as_tensor(np.asarray(x, dtype=np.float32)), torch.as_tensor(y_idx)
        n = len(x_clean)
        adv = self.craft_training_aes(x, y_idx, x_adv, y_adv)  # lines 1-4
        optimizer = torch.optim.Adam(den.network.parameters(), lr=den.learning_rate)
        steps_per_epoch = math.ceil((n * (1 + den.gaussian_rounds) + len(adv[0])) / self.batch_size)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=den.learning_rate, total_steps=max(1, nb_epochs * steps_per_epoch), pct_start=0.15
        )
        val_sets = self.validation_sets(validation_data)
        self.ddp_net = ddp.wrap_ddp(den.network)
        best = BestEpoch()
        state = resume.load() if resume is not None else None
        first, adv = self.restore_state(state, optimizer, scheduler, best, adv) if state is not None else (0, adv)
        with frozen(self.clf.model):
            for epoch in range(first, nb_epochs):
                if den.regenerate_every and epoch > 0 and epoch % den.regenerate_every == 0 and self.attacks:
                    adv = self.craft_training_aes(x, y_idx, x_adv, y_adv)  # not in the paper: fresh AEs
                train_set = self.epoch_set(adv, x_clean, y_clean)  # line 6
                stats = self.train_epoch(x_clean, *train_set, optimizer, scheduler, epoch)  # lines 7-9
                ddp.sync_module(den.network)  # distributed: BN running statistics averaged over the ranks
                if val_sets:
                    stats.update(self.validation_scores(val_sets))
                    best.update(stats["val_score"], den.network)
                den.history.append(stats)
                logger.info("ID epoch %d: %s", epoch + 1, stats)
                if resume is not None:
                    resume.save(self.state(epoch + 1, optimizer, scheduler, best,
                                           adv if den.regenerate_every and self.attacks else None))
        best.finish(den.network)
        self.ddp_net = None  # release the DDP wrapper (and its gradient hooks on the network's parameters)
        den.mark_fitted({"algorithm": "algorithm1"})

    # ------------------------------------------------------------------ resume (not in the paper)
    def state(self, epochs_done: int, optimizer, scheduler, best: BestEpoch, adv) -> Dict:
        """Everything the next epochs depend on, after ``epochs_done`` epochs (tensors and plain values only)."""
        return {"epochs_done": epochs_done, "network": self.den.network.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "generator": self.generator.get_state(), "history": list(self.den.history),
                "best_score": best.score, "best_state": best.state, "adv": None if adv is None else list(adv)}

    def restore_state(self, state: Dict, optimizer, scheduler, best: BestEpoch, adv):
        """Load a :meth:`state` into this run; returns the epoch to continue with and the training AEs (``adv``
        unless the state holds regenerated ones)."""
        self.den.network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self.den.history[:] = state["history"]
        best.score, best.state = state["best_score"], state["best_state"]
        logger.info("ID: resuming after epoch %d", state["epochs_done"])
        return int(state["epochs_done"]), adv if state["adv"] is None else tuple(state["adv"])

    def craft_training_aes(self, x, y_idx, x_adv, y_adv) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Lines 1-4: ``x' = A(x)`` for every attack A; returns AEs, labels, index of each AE's clean image."""
        xs, ys, refs = [], [], []
        n = len(y_idx)
        onehot = np.eye(self.nb_classes, dtype=np.float32)[y_idx]
        for adv in craft(self.attacks, x, onehot, "crafting ID training AEs", self.den.verbose):  # lines 2-3
            xs.append(torch.as_tensor(adv, dtype=torch.float32))
            ys.append(torch.as_tensor(y_idx))
            refs.append(torch.arange(n))
        if x_adv is not None:  # precomputed AEs (e.g. shared with Algorithm 2 by IDFRTrainer)
            self.den.check_input(x_adv)
            ref = np.arange(len(x_adv)) % n
            ya = y_idx[ref] if y_adv is None else class_indices(y_adv, self.nb_classes)
            xs.append(torch.as_tensor(np.asarray(x_adv, dtype=np.float32)))
            ys.append(torch.as_tensor(ya))
            refs.append(torch.as_tensor(ref))
        if not xs:
            return torch.zeros((0, *x.shape[1:])), EMPTY[1], EMPTY[2]
        return torch.cat(xs), torch.cat(ys), torch.cat(refs)

    def epoch_set(self, adv, x_clean, y_clean):
        """Line 6: the union of {x'} and the clean set with its Gaussian-enhanced copies (redrawn every epoch)."""
        adv_x, adv_y, adv_ref = adv
        n, rounds = len(x_clean), self.den.gaussian_rounds
        train_x = torch.cat([adv_x, x_clean, self.den.gaussian_enhance(x_clean, self.generator)])
        train_y = torch.cat([adv_y, y_clean, y_clean.repeat(rounds)])
        train_ref = torch.cat([adv_ref, torch.arange(n).repeat(1 + rounds)])
        is_clean = torch.zeros(len(train_x), dtype=torch.bool)
        is_clean[len(adv_x) : len(adv_x) + n] = True  # for clean_weight / identity_weight (not in the paper)
        return train_x, train_y, train_ref, is_clean

    # ------------------------------------------------------------------ one epoch
    def train_epoch(self, x_clean, train_x, train_y, train_ref, is_clean, optimizer, scheduler, epoch) -> Dict:
        """Lines 7-9: one pass over the shuffled training set, Adam on the Eq. 3 loss."""
        den, device = self.den, self.clf.device
        den.network.train()
        total, loss_sum, correct = 0, 0.0, 0
        progress = progress_bar(batches(len(train_x), self.batch_size, shuffle=True, generator=self.generator),
                        total=math.ceil(len(train_x) / self.batch_size), desc=f"ID epoch {epoch + 1}",
                        disable=not den.verbose or not ddp.is_main_process(), leave=False)
        for idx in progress:
            # the whole global batch is drawn and augmented on every rank, so the shared generator stays in step
            xb, x_ref = self.batch_inputs(train_x[idx], x_clean[train_ref[idx]] if den.loss != "ce" else None)
            yb, clean_b = train_y[idx].to(device), is_clean[idx].to(device)
            if self.distributed:
                loss, hits, n_own = self.local_step(xb, x_ref, yb, clean_b)
            else:
                x_star = den.denoise_nchw(xb)  # x* = x + r(x), the network in training mode
                loss, logits = self.batch_loss(x_star, xb, x_ref, yb, clean_b)
                hits, n_own = (logits.argmax(1) == yb).sum().item(), len(idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += n_own
            loss_sum += loss.item() * len(idx) / ddp.world_size()  # summed over ranks: the batch loss × its size
            correct += hits
            progress.set_postfix(loss=f"{loss_sum / max(total, 1):.4f}", acc=f"{correct / max(total, 1):.3f}",
                                 refresh=False)
        den.network.eval()
        loss_sum, correct, total = ddp.all_reduce_sum(loss_sum, correct, total)
        return {"epoch": epoch + 1, "loss": loss_sum / max(total, 1), "train_acc": correct / max(total, 1),
                "n_seen": int(total)}

    def local_step(self, xb, x_ref, yb, clean_b):
        """
        Distributed: this rank's rows (``rank::world_size``) of the global batch through the DDP-wrapped U-Net, the
        loss scaled so that DDP's gradient average over the ranks is the global batch's loss; returns it, the hits
        and the number of own rows.
        """
        rows, own = ddp.local_rows(len(xb))
        rows_d, own = rows.to(yb.device), own.to(yb.device)
        xb, yb = xb[rows.to(xb.device)], yb[rows_d]
        x_ref = x_ref[rows] if x_ref is not None else None
        x_star = self.den.denoise_nchw(xb, batch_size=len(xb), network=self.ddp_net)
        loss, logits = self.batch_loss(x_star, xb, x_ref, yb, clean_b[rows_d], own=own, clean_all=clean_b)
        return loss, ((logits.argmax(1) == yb) & own).sum().item(), int(own.sum())

    def batch_inputs(self, xb: torch.Tensor, x_ref: Optional[torch.Tensor]):
        """A training batch (and its clean references) as NCHW, augmented (not in the paper), on the ID's device."""
        den = self.den
        if not den.channels_first:
            xb = xb.permute(0, 3, 1, 2)
            x_ref = x_ref.permute(0, 3, 1, 2) if x_ref is not None else None
        if den.augment != "none":  # the same random crop (and flip) for each input and its reference
            c = xb.shape[1]
            pad = max(1, round(min(xb.shape[2:]) / 8))
            both = xb if x_ref is None else torch.cat([xb, x_ref], dim=1)
            both = random_crop_flip(both, self.generator, pad=pad, flip=den.augment == "crop_flip")
            xb, x_ref = (both, None) if x_ref is None else (both[:, :c], both[:, c:])
        return xb.to(den.device), x_ref

    def batch_loss(self, x_star, xb, x_ref, yb, clean_b, own=None, clean_all=None):
        """
        The weighted Eq. 3 loss of a batch, plus the identity term on its clean images (both options).
        Distributed (``own``: mask of this rank's rows, ``clean_all``: ``is_clean`` of the global batch): this
        rank's share, normalised by the global batch and × world size, for DDP's gradient average.
        """
        den, device = self.den, self.clf.device
        to_layout = (lambda t: t) if den.channels_first else (lambda t: t.permute(0, 2, 3, 1))
        x_ref = to_layout(x_ref).to(device) if x_ref is not None else None
        per_sample, logits = self.per_sample_loss(to_layout(x_star).to(device), x_ref, yb)
        weights = torch.where(clean_b, den.clean_weight, 1.0)  # clean_weight: not in the paper (1 = the paper)
        if own is not None:
            world = ddp.world_size()
            loss = (weights * own * per_sample).sum() / torch.where(clean_all, den.clean_weight, 1.0).sum() * world
            if den.identity_weight > 0 and bool(clean_all.any()):
                per_image = (x_star - xb).abs().flatten(1).mean(1)[(clean_b & own).to(x_star.device)]
                loss = loss + den.identity_weight * per_image.sum() / clean_all.sum().to(x_star.device) * world
            return loss, logits
        loss = (weights * per_sample).sum() / weights.sum()
        if den.identity_weight > 0 and bool(clean_b.any()):
            # not in the paper: keep ID(x) ≈ x on clean inputs, λ·mean|x* − x| over the clean images of the batch
            loss = loss + den.identity_weight * (x_star - xb)[clean_b.to(x_star.device)].abs().mean()
        return loss, logits

    def per_sample_loss(self, x_in, x_ref, yb):
        """Eq. 3 cross-entropy through the frozen target, and/or the feature-guided L1 loss of the authors' code."""
        if self.den.loss == "ce":
            logits = target_logits(self.clf, x_in, skip=self.skip)
            return F.cross_entropy(logits, yb, reduction="none"), logits  # Eq. 3
        h_star, logits = embedding_of(self.clf, x_in, skip=self.skip)
        with torch.no_grad():
            h_ref, _ = embedding_of(self.clf, x_ref, skip=self.skip)
        loss = (h_star - h_ref).abs().flatten(1).mean(1)  # || f_enc(ID(x')) − f_enc(x) ||_1 (HGD, authors' code)
        if self.den.loss == "both":
            loss = loss + F.cross_entropy(logits, yb, reduction="none")
        return loss, logits

    # ------------------------------------------------------------------ best-epoch choice (not in the paper)
    def validation_sets(self, validation_data) -> List[Tuple[np.ndarray, np.ndarray]]:
        """The clean validation images, then precomputed AEs of them, then their AEs from each training attack."""
        if validation_data is None:
            return []
        x_val = np.asarray(validation_data[0], dtype=np.float32)
        self.den.check_input(x_val)
        y_val = class_indices(validation_data[1], self.nb_classes)
        sets = [(x_val, y_val)]
        for adv in validation_data[2] if len(validation_data) > 2 else []:
            self.den.check_input(adv)
            sets.append((np.asarray(adv, dtype=np.float32), y_val))
        onehot = np.eye(self.nb_classes, dtype=np.float32)[y_val]
        crafted = craft(self.attacks, x_val, onehot, "crafting ID validation AEs", self.den.verbose)
        return sets + [(adv, y_val) for adv in crafted]

    def validation_scores(self, val_sets) -> Dict[str, float]:
        accs = [self.accuracy(xv, yv) for xv, yv in val_sets]
        return validation_score(accs[0], accs[1:])

    def accuracy(self, x_val: np.ndarray, y_val: np.ndarray) -> float:
        """Accuracy of target(ID(x)) on ``x_val`` (distributed: each rank scores a shard, hits summed)."""
        correct = 0
        lo, hi = ddp.shard_bounds(len(x_val))
        with torch.no_grad():
            for idx in batches(hi - lo, self.den.batch_size):
                idx = idx.numpy() + lo
                xb = torch.as_tensor(np.asarray(x_val[idx], dtype=np.float32), device=self.den.device)
                x_star = self.den.denoise(xb, check=False)
                logits = target_logits(self.clf, x_star.to(self.clf.device), skip=self.skip)
                correct += (logits.argmax(1).cpu().numpy() == y_val[idx]).sum()
        return ddp.all_reduce_sum(correct)[0] / max(len(x_val), 1)
