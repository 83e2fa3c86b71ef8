"""
:class:`OnePassSquareAttack`: ART's L-infinity ``SquareAttack`` (Andriushchenko et al., ECCV 2020) with one
estimator pass per iteration instead of three.

ART 1.20's loop predicts, at every iteration, all images (which are still classified correctly?), then the current
points of those (their margin loss), then the new candidates. The current points' margins are the ones measured
when each point was accepted, so for a *deterministic* classifier the first two passes repeat numbers the attack
already had; the Square paper's own code keeps them. This class keeps each image's margin and misclassification from
the pass that produced its current point and predicts only the candidates: the same random draws in the same order
(``np.random``, as ART), the same acceptance rule, the same AEs for a classifier whose outputs do not depend on the
batch an image is predicted in (test), and about a third of the passes while most images survive (the gradient-
masking check's 1,000 queries through a purifier, the query threat model, AutoAttack's Square member). In
`fashion_mnist_cpu` all 55 Square cells with an ART-loop twin gave the same per-image hits, 4.7x faster
(benchmarks/NOTES.md).

A *randomised* classifier (a defence that draws noise per call) gets a fresh draw at each of ART's repeated passes;
caching would keep one lucky draw per point, so use ART's ``SquareAttack`` there (the evaluation does). Only the
L-infinity norm with ART's default margin loss and criterion is implemented here; other settings fall back to ART's
``generate``.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
from tqdm.auto import trange

from art.attacks.evasion import SquareAttack
from art.config import ART_NUMPY_DTYPE
from art.utils import check_and_transform_label_format, get_labels_np_array

__all__ = ["OnePassSquareAttack"]


class OnePassSquareAttack(SquareAttack):
    """ART's ``SquareAttack`` (L-inf, default loss and criterion) with one estimator pass per iteration (see the
    module docstring); same constructor."""

    def __init__(self, estimator, *args, **kwargs) -> None:
        self._own_scores = kwargs.get("loss") is None and kwargs.get("adv_criterion") is None and len(args) < 2
        super().__init__(estimator, *args, **kwargs)

    def _scores(self, x: np.ndarray, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """ART's margin loss (``_get_logits_diff``) and misclassification (``adv_criterion``) from one prediction."""
        y_pred = self.estimator.predict(x, batch_size=self.batch_size)
        correct = np.take_along_axis(y_pred, np.argmax(y, axis=1)[:, None], axis=1)
        second = np.take_along_axis(y_pred, np.argsort(y_pred, axis=1)[:, -2][:, None], axis=1)
        return (correct - second)[:, 0], np.asarray(self.adv_criterion(y_pred, y), dtype=bool)

    def generate(self, x: np.ndarray, y: Optional[np.ndarray] = None, **kwargs) -> np.ndarray:
        """AEs of ``x`` (labels ``y``, one-hot or indices; default the predictions), as ART's ``generate``."""
        if self.norm not in (np.inf, "inf") or not self._own_scores or not self.estimator.channels_first:
            return super().generate(x, y, **kwargs)
        if x.ndim != 4:
            raise ValueError("Unrecognized input dimension. Attack can only be applied to image data.")
        x_adv = x.astype(ART_NUMPY_DTYPE)
        if y is None:
            y = get_labels_np_array(self.estimator.predict(x, batch_size=self.batch_size))
        else:
            y = check_and_transform_label_format(y, nb_classes=self.estimator.nb_classes)
        for _ in trange(self.nb_restarts, desc="SquareAttack - restarts", disable=not self.verbose):
            y_pred = self.estimator.predict(x_adv, batch_size=self.batch_size)
            idx = np.flatnonzero(np.logical_not(self.adv_criterion(y_pred, y)))
            if len(idx) == 0:
                break
            loss, fooled = self._stripes(x, x_adv, y, idx)
            self._iterate(x, x_adv, y, idx, loss, fooled)
        return x_adv

    def _stripes(self, x, x_adv, y, idx) -> Tuple[np.ndarray, np.ndarray]:
        """A restart's start (ART's): vertical stripes of +-eps on the clean images ``x[idx]``, kept where they lower
        the margin; ``x_adv[idx]`` set; returns the margins and misclassification of the points kept."""
        lo, hi = self.estimator.clip_values
        x_robust, y_robust = x[idx], y[idx]
        loss_init, fooled_init = self._scores(x_robust, y_robust)
        size = (len(idx), x.shape[1], 1, x.shape[3])
        x_new = np.clip(x_robust + self.eps * np.random.choice([-1, 1], size=size), lo, hi).astype(ART_NUMPY_DTYPE)
        loss_new, fooled_new = self._scores(x_new, y_robust)
        improved = (loss_new - loss_init) < 0.0
        x_robust[improved] = x_new[improved]
        x_adv[idx] = x_robust
        return np.where(improved, loss_new, loss_init), np.where(improved, fooled_new, fooled_init)

    def _iterate(self, x, x_adv, y, idx, loss, fooled) -> None:
        """ART's square iterations on the images ``idx``, each candidate predicted once; ``x_adv`` updated."""
        lo, hi = self.estimator.clip_values
        channels, height, width = x.shape[1:]
        for i_iter in trange(self.max_iter, desc="SquareAttack - iterations", leave=False, disable=not self.verbose):
            alive = np.logical_not(fooled)
            if not alive.any():
                break
            rows = idx[alive]
            x_robust, x_init = x_adv[rows], x[rows]
            side = max(int(round(math.sqrt(self._get_percentage_of_elements(i_iter) * height * width))), 1)
            top, left = np.random.randint(0, height - side), np.random.randint(0, width - side)
            delta = np.zeros(self.estimator.input_shape)
            delta[:, top: top + side, left: left + side] = np.random.choice([-2 * self.eps, 2 * self.eps],
                                                                             size=[channels, 1, 1])
            x_new = np.minimum(np.maximum(x_robust + delta, x_init - self.eps), x_init + self.eps)
            x_new = np.clip(x_new, lo, hi).astype(ART_NUMPY_DTYPE)
            loss_new, fooled_new = self._scores(x_new, y[rows])
            improved = (loss_new - loss[alive]) < 0.0
            x_robust[improved] = x_new[improved]
            x_adv[rows] = x_robust
            loss[alive] = np.where(improved, loss_new, loss[alive])
            fooled[alive] = improved & fooled_new
