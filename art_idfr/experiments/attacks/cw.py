"""
The eps-bounded Carlini & Wagner L-infinity attack of :mod:`art_idfr.experiments.attacks`:
:class:`CarliniWagnerLInfPGD`, projected sign-gradient descent on the C&W margin loss (:func:`cw_margin_loss`), batched
in PyTorch through the estimator's preprocessing defences (exactly, or by BPDA for numpy ones) and the model's forward
hooks, so it is a white-box adaptive attack on a defended ``PyTorchClassifier``.
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Tuple

import numpy as np
import torch

from art.attacks.attack import EvasionAttack
from art.estimators.classification.classifier import ClassGradientsMixin
from art.estimators.estimator import BaseEstimator

logger = logging.getLogger(__name__)


def cw_margin_loss(logits: torch.Tensor, labels: torch.Tensor, confidence: float = 0.0, targeted: bool = False):
    """
    Carlini & Wagner margin loss per sample (to be *minimised* by the attacker).

    Untargeted: ``max(Z_y - max_{j != y} Z_j, -confidence)``; targeted (``labels`` = targets ``t``):
    ``max(max_{j != t} Z_j - Z_t, -confidence)``.

    :param logits: Logits ``(N, K)``.
    :param labels: Integer labels ``(N,)`` (true labels, or targets if ``targeted``).
    :param confidence: The margin ``kappa >= 0``.
    :param targeted: Targeted variant.
    :return: Loss ``(N,)``.
    """
    onehot = torch.nn.functional.one_hot(labels, logits.shape[1]).bool()
    z_label = logits.gather(1, labels[:, None]).squeeze(1)
    z_other = logits.masked_fill(onehot, float("-inf")).amax(dim=1)
    margin = z_other - z_label if targeted else z_label - z_other
    return torch.clamp(margin, min=-confidence)


class _NumpyPreprocessingBPDA(torch.autograd.Function):
    """Run an estimator's (numpy) preprocessing forward; backward through its ``estimate_gradient`` (BPDA)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, estimator: Any) -> torch.Tensor:  # type: ignore[override]
        x_np = x.detach().cpu().numpy()
        ctx.estimator, ctx.x_np = estimator, x_np
        out, _ = estimator._apply_preprocessing(x_np, y=None, fit=False)
        return torch.as_tensor(np.asarray(out, dtype=np.float32), device=x.device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        # ART's PyTorch preprocessors compute their gradient estimates with autograd: re-enable it here
        with torch.enable_grad():
            g = ctx.estimator._apply_preprocessing_gradient(ctx.x_np, grad.detach().cpu().numpy())
        return torch.as_tensor(np.asarray(g), dtype=grad.dtype, device=grad.device), None


class CarliniWagnerLInfPGD(EvasionAttack):
    """
    Epsilon-bounded Carlini & Wagner L-infinity attack, implemented as PGD on the C&W margin loss.

    Starting from ``x`` (or a uniform random point of the epsilon-ball if ``random_init``), each of the ``max_iter``
    iterations takes a sign-gradient step of size ``min(eps_step, eps)`` that decreases the margin loss
    :func:`cw_margin_loss` and projects back onto ``{x' : |x' - x|_inf <= eps} ∩ [clip_min, clip_max]``.
    For every sample the iterate with the lowest loss seen (the final one included) is returned. Because the loss
    is clipped at ``-confidence``, a sample stops moving once it is misclassified with margin ``confidence``.

    For a :class:`~art.estimators.classification.PyTorchClassifier` the whole attack runs batched in PyTorch on the
    estimator's device: the logits are ``estimator.model(x_pp)`` where ``x_pp`` comes from the estimator's own
    preprocessing chain (ART ``PreprocessorPyTorch`` defences are differentiated exactly; numpy defences through
    their ``estimate_gradient``, i.e. BPDA), so preprocessing defences and forward hooks on the model are attacked
    white-box. Other classifiers fall back to ``predict`` / ``class_gradient`` in numpy.

    | Paper link (C&W loss): https://arxiv.org/abs/1608.04644
    | Paper link (PGD): https://arxiv.org/abs/1706.06083
    """

    attack_params = EvasionAttack.attack_params + [
        "eps",
        "eps_step",
        "max_iter",
        "confidence",
        "targeted",
        "random_init",
        "batch_size",
        "seed",
        "verbose",
    ]
    _estimator_requirements = (BaseEstimator, ClassGradientsMixin)

    def __init__(
        self,
        estimator,
        eps: float = 8 / 255,
        eps_step: float = 0.03,
        max_iter: int = 20,
        confidence: float = 0.0,
        targeted: bool = False,
        random_init: bool = False,
        batch_size: int = 128,
        seed: Optional[int] = None,
        verbose: bool = True,
    ) -> None:
        """
        Create a :class:`CarliniWagnerLInfPGD` instance.

        :param estimator: A trained classifier (ideally an ART ``PyTorchClassifier``) returning logits.
        :param eps: Maximum L-infinity perturbation (in input units, e.g. 8/255 for images in [0, 1]).
        :param eps_step: Step size; the step actually taken is ``min(eps_step, eps)``.
        :param max_iter: Number of gradient steps (0 returns ``x`` or its random start).
        :param confidence: Margin ``kappa >= 0`` of the C&W loss.
        :param targeted: If True, ``y`` holds target classes and the attack pushes towards them.
        :param random_init: Start from a uniformly random point of the epsilon-ball.
        :param batch_size: Number of samples attacked together.
        :param seed: Seed of the random start (``None``: torch's global RNG).
        :param verbose: Show a progress bar over batches.
        """
        super().__init__(estimator=estimator)
        self.eps = eps
        self.eps_step = eps_step
        self.max_iter = max_iter
        self.confidence = confidence
        self._targeted = targeted
        self.random_init = random_init
        self.batch_size = batch_size
        self.seed = seed
        self.verbose = verbose
        self._check_params()

    @property
    def step_size(self) -> float:
        """The step actually used: ``min(eps_step, eps)``."""
        return float(min(self.eps_step, self.eps))

    # ------------------------------------------------------------------------------------------------------------------

    def generate(self, x: np.ndarray, y: Optional[np.ndarray] = None, **kwargs) -> np.ndarray:
        """
        Generate adversarial examples.

        :param x: Inputs ``(N, ...)`` (e.g. images in ``[0, 1]``).
        :param y: True labels (untargeted) or target labels (targeted), as integer indices ``(N,)`` or one-hot
                  ``(N, K)``. If ``None`` (untargeted only) the estimator's predictions are used, which avoids label
                  leaking.
        :return: Adversarial examples, ``float32``, same shape as ``x``, with ``|x_adv - x|_inf <= eps`` and within
                 the estimator's ``clip_values``.
        """
        self._check_params()
        from art_idfr.progress import progress_bar

        x = np.asarray(x, dtype=np.float32)
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(f"`x` must be a non-empty batch of samples, got shape {x.shape}.")
        labels = self._labels(x, y)
        x_adv = np.empty_like(x)
        use_torch = self._is_pytorch()
        n_batches = int(np.ceil(len(x) / self.batch_size))
        generator = None
        if self.random_init and self.seed is not None:
            generator = torch.Generator().manual_seed(int(self.seed))
        for b in progress_bar(range(n_batches), desc="CW-Linf PGD", disable=not self.verbose):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            if use_torch:
                x_adv[sl] = self._attack_batch_torch(x[sl], labels[sl], generator)
            else:
                x_adv[sl] = self._attack_batch_numpy(x[sl], labels[sl], generator)
        return x_adv

    # ------------------------------------------------------------------------------------------------------------------

    def _is_pytorch(self) -> bool:
        from art.estimators.pytorch import PyTorchEstimator

        return isinstance(self.estimator, PyTorchEstimator) and isinstance(
            getattr(self.estimator, "model", None), torch.nn.Module
        )

    def _labels(self, x: np.ndarray, y: Optional[np.ndarray]) -> np.ndarray:
        nb_classes = self.estimator.nb_classes
        if y is None:
            if self.targeted:
                raise ValueError("Target labels `y` need to be provided for a targeted attack.")
            return np.argmax(self.estimator.predict(x, batch_size=self.batch_size), axis=1).astype(np.int64)
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == nb_classes:
            y = np.argmax(y, axis=1)
        elif y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(
                f"`y` must be {len(x)} integer labels or one-hot rows of width {nb_classes}, got shape {y.shape}."
            )
        if not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0 or y.max() >= nb_classes:
            raise ValueError(f"Labels must be integers in [0, {nb_classes - 1}].")
        return y.astype(np.int64)

    def _bounds(self, xb: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        lower, upper = xb - self.eps, xb + self.eps
        clip = self.estimator.clip_values
        if clip is not None:
            cmin = torch.as_tensor(np.asarray(clip[0], dtype=np.float32), device=xb.device)
            cmax = torch.as_tensor(np.asarray(clip[1], dtype=np.float32), device=xb.device)
            lower, upper = torch.maximum(lower, cmin), torch.minimum(upper, cmax)
            # if x itself lies outside clip_values, keep it feasible (never move further than eps)
            lower, upper = torch.minimum(lower, xb), torch.maximum(upper, xb)
        return lower, upper

    def _start(self, xb: torch.Tensor, lower, upper, generator) -> torch.Tensor:
        if not self.random_init:
            return xb.clone()
        noise = torch.rand(xb.shape, generator=generator, dtype=xb.dtype) if generator is not None else None
        if noise is None:
            noise = torch.rand(xb.shape, dtype=xb.dtype)
        noise = (2.0 * noise - 1.0).to(xb.device) * self.eps
        return torch.minimum(torch.maximum(xb + noise, lower), upper)

    def _logits(self, x_t: torch.Tensor) -> torch.Tensor:
        est = self.estimator
        if getattr(est, "all_framework_preprocessing", True):
            x_pp, _ = est._apply_preprocessing(x_t, y=None, fit=False, no_grad=False)
        else:
            x_pp = _NumpyPreprocessingBPDA.apply(x_t, est)
        out = est.model(x_pp)
        if isinstance(out, (list, tuple)):
            out = out[-1]
        return out

    def _attack_batch_torch(self, x_np: np.ndarray, y_np: np.ndarray, generator) -> np.ndarray:
        device = getattr(self.estimator, "device", torch.device("cpu"))
        model = self.estimator.model
        model.eval()
        xb = torch.as_tensor(x_np, device=device)
        yb = torch.as_tensor(y_np, device=device)
        lower, upper = self._bounds(xb)
        x_adv = self._start(xb, lower, upper, generator)
        best = x_adv.clone()
        best_loss = torch.full((len(xb),), float("inf"), device=device)
        step = self.step_size
        eot = int(getattr(self.estimator, "eot_samples", 1) or 1)  # randomised defence: average over draws (EOT)
        for it in range(self.max_iter + 1):
            x_var = x_adv.detach().requires_grad_(True)
            loss = sum(cw_margin_loss(self._logits(x_var), yb, self.confidence, self.targeted)
                       for _ in range(eot)) / eot
            with torch.no_grad():
                improved = loss.detach() < best_loss
                best_loss = torch.where(improved, loss.detach(), best_loss)
                best[improved] = x_adv[improved]
            if it == self.max_iter:  # the last pass only evaluates the final iterate
                break
            (grad,) = torch.autograd.grad(loss.sum(), x_var)
            with torch.no_grad():
                x_adv = x_adv - step * grad.sign()
                x_adv = torch.minimum(torch.maximum(x_adv, lower), upper)
        return best.detach().cpu().numpy().astype(np.float32)

    def _attack_batch_numpy(self, x_np: np.ndarray, y_np: np.ndarray, generator) -> np.ndarray:
        est = self.estimator
        xb = torch.as_tensor(x_np)
        lower, upper = (t.numpy() for t in self._bounds(xb))
        x_adv = self._start(xb, torch.as_tensor(lower), torch.as_tensor(upper), generator).numpy()
        best, best_loss = x_adv.copy(), np.full(len(x_np), np.inf)
        rows = np.arange(len(x_np))
        for it in range(self.max_iter + 1):
            logits = est.predict(x_adv, batch_size=self.batch_size)
            loss = cw_margin_loss(torch.as_tensor(logits), torch.as_tensor(y_np), self.confidence, self.targeted)
            loss = loss.numpy()
            improved = loss < best_loss
            best_loss[improved], best[improved] = loss[improved], x_adv[improved]
            if it == self.max_iter:
                break
            other = logits.copy()
            other[rows, y_np] = -np.inf
            j = other.argmax(axis=1)
            g_label = est.class_gradient(x_adv, label=y_np).reshape(x_adv.shape)
            g_other = est.class_gradient(x_adv, label=j).reshape(x_adv.shape)
            grad = g_other - g_label if self.targeted else g_label - g_other
            grad[loss <= -self.confidence] = 0.0  # clipped loss: no gradient
            x_adv = np.clip(x_adv - self.step_size * np.sign(grad), lower, upper).astype(np.float32)
        return best.astype(np.float32)

    # ------------------------------------------------------------------------------------------------------------------

    def _check_params(self) -> None:
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float, np.floating)) or not self.eps > 0:
            raise ValueError(f"`eps` must be a positive number, got {self.eps!r}.")
        if (
            isinstance(self.eps_step, bool)
            or not isinstance(self.eps_step, (int, float, np.floating))
            or not self.eps_step > 0
        ):
            raise ValueError(f"`eps_step` must be a positive number, got {self.eps_step!r}.")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 0:
            raise ValueError(f"`max_iter` must be a non-negative int, got {self.max_iter!r}.")
        if not isinstance(self.confidence, (int, float, np.floating)) or self.confidence < 0:
            raise ValueError(f"`confidence` must be a non-negative number, got {self.confidence!r}.")
        if not isinstance(self.targeted, bool):
            raise ValueError(f"`targeted` must be a bool, got {self.targeted!r}.")
        if not isinstance(self.random_init, bool):
            raise ValueError(f"`random_init` must be a bool, got {self.random_init!r}.")
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, (int, np.integer))
            or self.batch_size < 1
        ):
            raise ValueError(f"`batch_size` must be a positive int, got {self.batch_size!r}.")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer))):
            raise ValueError(f"`seed` must be an int or None, got {self.seed!r}.")
        if not isinstance(self.verbose, bool):
            raise ValueError(f"`verbose` must be a bool, got {self.verbose!r}.")
