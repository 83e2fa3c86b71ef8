"""
Algorithm 2 of the paper: train the hidden lossy feature restorer (FR) on convex combinations (Eq. 4) of penultimate
embeddings of correctly and wrongly classified denoised samples of the same label, minimising Eq. 6.

Entry: :func:`fit_restorer` (what ``FeatureRestorer.fit`` runs). This module never imports :mod:`art_idfr.restorer`
(which imports it) nor :mod:`art_idfr.denoiser`: it works on the ``FeatureRestorer`` and ``IDFRDenoiser`` passed in,
through their attributes and methods (``build``, ``mark_fitted``, ``denoise``, ``gaussian_enhance``, ...).

| Paper: "Adversarial Defense via Input Denoising and Feature Restoring" (IDFR), Sec. 3.3, Algorithm 2, Eq. 4-6.
"""
from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from art_idfr.progress import progress_bar

from art_idfr._utils import (
    check_image_batch,
    check_pytorch_classifier,
    class_indices,
    device_of,
    frozen,
    seed_generator,
)
from art_idfr.embedding import EmbeddingLayer, find_embedding_layer, target_logits
from art_idfr.training import distributed as ddp
from art_idfr.training.common import BestEpoch, batches, craft, validation_score

if TYPE_CHECKING:  # pragma: no cover
    from art.attacks.attack import EvasionAttack
    from art.estimators.classification import PyTorchClassifier

logger = logging.getLogger(__name__)


def fit_restorer(
    restorer: "FeatureRestorer",
    x: np.ndarray,
    y: np.ndarray,
    classifier: "PyTorchClassifier",
    denoiser: Optional["IDFRDenoiser"] = None,
    attacks: Optional[Sequence["EvasionAttack"]] = None,
    nb_epochs: Optional[int] = None,
    batch_size: Optional[int] = None,
    x_adv: Optional[np.ndarray] = None,
    y_adv: Optional[np.ndarray] = None,
    gaussian_copies: bool = True,
    validation_data: Optional[Tuple] = None,
) -> None:
    """Train ``restorer`` in place by Algorithm 2 (arguments as documented on ``FeatureRestorer.fit``)."""
    if classifier is None:
        raise ValueError("FeatureRestorer.fit needs the target: fit(x, y, classifier=..., denoiser=...).")
    check_pytorch_classifier(classifier)
    if denoiser is not None and not denoiser.is_fitted:
        logger.warning("FeatureRestorer.fit: the denoiser is not fitted; embeddings come from an untrained ID.")
    y_idx = class_indices(y, classifier.nb_classes)
    if len(y_idx) != len(x):
        raise ValueError(f"x has {len(x)} samples but y has {len(y_idx)}.")
    _check_images(classifier, x, x_adv, validation_data)
    run = Algorithm2(restorer, classifier, denoiser, list(attacks or []),
                     restorer.batch_size if batch_size is None else int(batch_size))
    x_all, y_all = run.training_inputs(x, y_idx, x_adv, y_adv, gaussian_copies)
    with frozen(classifier.model):
        h_all, correct = run.embed(x_all, y_all)
        if restorer.network is None or restorer.embedding_dim != h_all.shape[1]:
            restorer.build(h_all.shape[1])
        head = run.classification_head(x_all[: run.batch_size])
        val = run.validation_embeddings(validation_data)
        run.train(h_all, torch.as_tensor(y_all), correct, head,
                  restorer.nb_epochs if nb_epochs is None else int(nb_epochs), val)
    restorer.mark_fitted({"algorithm": "algorithm2"})


def _check_images(classifier, x, x_adv, validation_data) -> None:
    """Layout, value range and finiteness of every image array, as the classifier declares them."""
    def check(images, name):
        check_image_batch(images, classifier.input_shape, classifier.channels_first, classifier.clip_values,
                          name=f"FeatureRestorer.fit {name}")

    check(x, "x")
    if x_adv is not None:
        check(x_adv, "x_adv")
    if validation_data is not None:
        check(validation_data[0], "validation x")
        for i, xv in enumerate(validation_data[2] if len(validation_data) > 2 else []):
            check(xv, f"validation AEs [{i}]")


class Algorithm2:
    """One training run of Algorithm 2 for ``restorer`` behind the (fitted) ``denoiser`` and the frozen target."""

    def __init__(self, restorer: "FeatureRestorer", classifier: "PyTorchClassifier",
                 denoiser: Optional["IDFRDenoiser"], attacks: List, batch_size: int) -> None:
        self.fr, self.clf, self.den, self.attacks, self.batch_size = restorer, classifier, denoiser, attacks, batch_size
        self.skip = (type(denoiser),) if denoiser is not None else ()  # the ID is applied once, by us
        self.point: EmbeddingLayer = find_embedding_layer(classifier.model, restorer.layer)
        self.nb_classes = classifier.nb_classes

    def training_inputs(self, x, y_idx, x_adv, y_adv, gaussian_copies: bool) -> Tuple[np.ndarray, np.ndarray]:
        """The inputs whose embeddings the FR learns from: clean, Gaussian-enhanced (x_e) and adversarial."""
        xs, ys = [np.asarray(x, dtype=np.float32)], [y_idx]
        if gaussian_copies and self.den is not None and self.den.gaussian_rounds > 0:
            gen = torch.Generator().manual_seed(self.fr.seed or 0)
            xs.append(self.den.gaussian_enhance(torch.as_tensor(xs[0]), gen).numpy())
            ys.append(np.tile(y_idx, self.den.gaussian_rounds))
        onehot = np.eye(self.nb_classes, dtype=np.float32)[y_idx]
        for adv in craft(self.attacks, xs[0], onehot, "crafting FR training AEs", self.fr.verbose):
            xs.append(adv)
            ys.append(y_idx)
        if x_adv is not None:
            xs.append(np.asarray(x_adv, dtype=np.float32))
            ys.append(class_indices(y_adv, self.nb_classes) if y_adv is not None else
                      np.tile(y_idx, math.ceil(len(x_adv) / len(y_idx)))[: len(x_adv)])
        return np.concatenate(xs), np.concatenate(ys)

    def embed(self, x: np.ndarray, y: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        h = f_enc(ID(x)) for all x, and whether the head classifies each correctly (Def. 1: x̂ vs x̂'). Distributed:
        each rank embeds a contiguous shard, then all-gather (every rank gets all, in order).
        """
        hs, correct = [], []
        lo, hi = ddp.shard_bounds(len(x))
        with torch.no_grad():
            for idx in progress_bar(list(batches(hi - lo, self.batch_size)), desc="FR embeddings",
                            disable=not self.fr.verbose or not ddp.is_main_process(), leave=False):
                idx = idx + lo
                xb = torch.as_tensor(x[idx.numpy()], device=self.clf.device)
                if self.den is not None:
                    xb = self.den.denoise(xb, check=False)  # fit_restorer warned already if the ID is unfitted
                captured: List[torch.Tensor] = []
                with self.point.intercept(lambda h: captured.append(h)):
                    logits = target_logits(self.clf, xb, skip=self.skip)
                hs.append(captured[-1].float().cpu())
                correct.append(logits.argmax(1).cpu() == torch.as_tensor(y[idx.numpy()]))
        return ddp.all_gather_tensor(torch.cat(hs)), ddp.all_gather_tensor(torch.cat(correct))

    def classification_head(self, x_probe: np.ndarray) -> Callable[[torch.Tensor], torch.Tensor]:
        """
        f_cls as a function of the embedding. Fast path: when the hooked module is the last ``nn.Linear`` and its
        output is the model's output, f_cls is that module. Otherwise replay: run the model on probe inputs and
        replace the embedding by the hook (exact when everything after the hook depends only on the embedding).
        """
        point, xb = self.point, torch.as_tensor(x_probe, device=self.clf.device)
        if point.mode == "input":
            outs: List[torch.Tensor] = []
            handle = point.module.register_forward_hook(lambda m, a, o: outs.append(o))
            try:
                with torch.no_grad():
                    logits = target_logits(self.clf, xb, skip=self.skip)
            finally:
                handle.remove()
            if outs and outs[-1].shape == logits.shape and torch.allclose(outs[-1], logits, atol=1e-5):
                module = point.module
                return lambda h: module(h.to(device_of(module)))
        logger.info("FR head: %s is not the model's last operation; replaying the model through the hook", point)

        def replay(h: torch.Tensor) -> torch.Tensor:
            reps = math.ceil(len(h) / len(xb))
            x_in = xb.repeat(reps, *([1] * (xb.ndim - 1)))[: len(h)]
            with point.intercept(lambda _: h):
                return target_logits(self.clf, x_in, skip=self.skip)

        return replay

    def validation_embeddings(self, validation_data) -> List[Tuple[torch.Tensor, np.ndarray]]:
        """Embeddings of the clean validation images, then of their precomputed AEs and AEs from each attack."""
        if validation_data is None:
            return []
        x_val = np.asarray(validation_data[0], dtype=np.float32)
        y_val = class_indices(validation_data[1], self.nb_classes)
        x_sets = [x_val, *(validation_data[2] if len(validation_data) > 2 else [])]
        x_sets += craft(self.attacks, x_val, np.eye(self.nb_classes, dtype=np.float32)[y_val],
                        "crafting FR validation AEs", self.fr.verbose)
        return [(self.embed(xv, y_val)[0], y_val) for xv in x_sets]

    # ------------------------------------------------------------------ the algorithm
    def train(self, h_all, y_all, correct, head, nb_epochs: int, val) -> None:
        fr = self.fr
        gen = seed_generator(fr.seed)
        partners = _partner_pools(y_all, correct)
        optimizer = torch.optim.Adam(fr.network.parameters(), lr=fr.learning_rate)
        steps = max(1, nb_epochs * math.ceil(len(h_all) / self.batch_size))
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=fr.learning_rate, total_steps=steps)
        best = BestEpoch()
        self.distributed, self.ddp_net = ddp.is_distributed(), ddp.wrap_ddp(fr.network)
        for epoch in range(nb_epochs):
            partner = torch.empty(len(h_all), dtype=torch.long)
            for label, pool in partners.items():  # line 2: a same-label partner h_x ∈ x̂ for every h_x̃
                rows = (y_all == label).nonzero().flatten()
                partner[rows] = pool[torch.randint(len(pool), (len(rows),), generator=gen)]
            alpha = torch.rand(len(h_all), 1, generator=gen)  # line 3: α ~ U(0, 1) per pair
            stats = self.train_epoch(h_all, y_all, partner, alpha, head, optimizer, scheduler, gen, epoch)
            ddp.sync_module(fr.network)  # distributed: BN running statistics averaged over the ranks
            if val:
                accs = [self.accuracy(head, h_val, y_val) for h_val, y_val in val]
                stats.update(validation_score(accs[0], accs[1:]))
                best.update(stats["val_score"], fr.network)
            fr.history.append(stats)
            logger.info("FR epoch %d: %s", epoch + 1, stats)
        best.finish(fr.network)
        self.ddp_net = None  # release the DDP wrapper (and its gradient hooks on the network's parameters)

    def train_epoch(self, h_all, y_all, partner, alpha, head, optimizer, scheduler, gen, epoch) -> Dict[str, float]:
        fr = self.fr
        fr.network.train()
        loss_sum, hits, total = 0.0, 0, 0
        for idx in progress_bar(list(batches(len(h_all), self.batch_size, shuffle=True, generator=gen)),
                        desc=f"FR epoch {epoch + 1}", disable=not fr.verbose or not ddp.is_main_process(), leave=False):
            if len(idx) < 2 and fr.batch_norm:
                continue  # BatchNorm cannot train on a single sample
            n_global, own = len(idx), torch.ones(len(idx), dtype=torch.bool)
            if self.distributed:  # this rank's rows rank::world_size of the global batch (padded, masked, for BN)
                rows, own = ddp.local_rows(n_global, min_rows=2 if fr.batch_norm else 1)
                idx = idx[rows]
            a = alpha[idx]
            mix = a * h_all[partner[idx]] + (1 - a) * h_all[idx]  # lines 4-6, Eq. 4
            logits = head((self.ddp_net if self.distributed else fr.network)(mix.to(fr.device)))
            if self.distributed:  # DDP averages over the ranks: together, the global batch's mean loss
                per_sample = F.cross_entropy(logits, y_all[idx].to(logits.device), reduction="none")
                loss = (per_sample * own.to(logits.device)).sum() / n_global * ddp.world_size()
            else:
                loss = F.cross_entropy(logits, y_all[idx].to(logits.device))  # Eq. 6
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"FR training loss became {loss.item()} in epoch {epoch + 1}: lower learning_rate, or check "
                    "the embeddings (a target with NaN/inf activations, or inputs outside its training range).")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * n_global / ddp.world_size()
            hits += ((logits.argmax(1).cpu() == y_all[idx]) & own).sum().item()
            total += int(own.sum())
        fr.network.eval()
        loss_sum, hits, total = ddp.all_reduce_sum(loss_sum, hits, total)
        return {"epoch": epoch + 1, "loss": loss_sum / max(total, 1), "train_mix_acc": hits / max(total, 1),
                "n_seen": int(total)}

    def accuracy(self, head, h_val: torch.Tensor, y_val: np.ndarray) -> float:
        """Accuracy of f_cls(FR(h)) on validation embeddings (distributed: each rank scores a shard, hits summed)."""
        lo, hi = ddp.shard_bounds(len(h_val))
        with torch.no_grad():
            hits = sum(int((head(self.fr.network(h_val[i + lo].to(self.fr.device))).argmax(1).cpu().numpy()
                            == y_val[(i + lo).numpy()]).sum()) for i in batches(hi - lo, self.batch_size))
        return ddp.all_reduce_sum(hits)[0] / max(len(h_val), 1)


def _partner_pools(y_all: torch.Tensor, correct: torch.Tensor) -> Dict[int, torch.Tensor]:
    """For each label: indices of its correctly classified embeddings (x̂), falling back to all of that label."""
    pools = {}
    for label in y_all.unique().tolist():
        same = (y_all == label).nonzero().flatten()
        good = same[correct[same]]
        pools[label] = good if len(good) else same
    return pools
