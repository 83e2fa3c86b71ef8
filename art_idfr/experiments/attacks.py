"""
Evasion attacks used in the IDFR experiments, all as ART :class:`~art.attacks.EvasionAttack` objects.

* :class:`CarliniWagnerLInfPGD` -- the epsilon-bounded Carlini & Wagner L-infinity attack ("CW-inf" in the
  robustness literature): projected sign-gradient descent on the C&W margin loss, batched in PyTorch. It runs
  through the estimator's PyTorch preprocessing defences and through any forward hooks of the model, so it is a
  white-box *adaptive* attack on a defended :class:`~art.estimators.classification.PyTorchClassifier`.
* :func:`make_attack` -- build any attack of the experiments by name (``fgsm``, ``bim``, ``pgd``, ``cw``,
  ``cw-art``, ``autoattack``, ``square``).

Step size convention
--------------------
The iterative attacks use the step ``min(eps_step, eps)``. The default ``eps_step=0.03`` follows the paper
("20 iterations with a step size of 0.03"). ART itself accepts ``eps_step > eps`` silently: every step then
overshoots and is projected back, so the iterates only jump between corners of the epsilon-box. Capping the step
at ``eps`` keeps the paper's setting for ``eps >= 0.03`` (e.g. 8/255) and gives a sensible attack for smaller
``eps``.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import numpy as np
import torch

from art.attacks.attack import EvasionAttack
from art.estimators.classification.classifier import ClassGradientsMixin
from art.estimators.estimator import BaseEstimator

from art_idfr._names import ATTACK_NAMES  # noqa: F401  (re-exported)
from art_idfr._utils import seeded, skip_numpy_draws

logger = logging.getLogger(__name__)

__all__ = ["CarliniWagnerLInfPGD", "make_attack", "ATTACK_NAMES", "cw_margin_loss"]


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


# ----------------------------------------------------------------------------------------------------------------------
# factory
# ----------------------------------------------------------------------------------------------------------------------


def _seed_generate(attack: EvasionAttack, seed: Optional[int], rng_skip: int = 0) -> EvasionAttack:
    """
    Make ``attack.generate`` reproducible: run it with numpy's and torch's global RNGs seeded with ``seed`` (numpy's
    then advanced by ``rng_skip`` doubles) and restore both states afterwards (ART's random starts / square sampling
    use ``np.random``).
    """
    if seed is None:
        return attack
    original = attack.generate

    @functools.wraps(original)
    def generate(x: np.ndarray, y: Optional[np.ndarray] = None, **kwargs) -> np.ndarray:
        with seeded(seed):
            skip_numpy_draws(rng_skip)
            return original(x, y, **kwargs)

    attack.generate = generate  # type: ignore[method-assign]
    return attack


def make_attack(
    name: str,
    estimator,
    eps: float,
    *,
    max_iter: Optional[int] = None,
    eps_step: float = 0.03,
    batch_size: int = 128,
    seed: Optional[int] = 0,
    verbose: bool = False,
    rng_skip: int = 0,
    **kwargs,
) -> EvasionAttack:
    """
    Build an L-infinity evasion attack by name.

    =========== ================================= ===============================================================
    name        class                             settings
    =========== ================================= ===============================================================
    fgsm        ART ``FastGradientMethod``        ``norm=inf``, one step of size ``eps``
    bim         ART ``BasicIterativeMethod``      ``max_iter`` (20) steps of ``min(eps_step, eps)``
    pgd         ART ``ProjectedGradientDescent``  as ``bim`` plus a random start (``num_random_init=1``)
    cw          :class:`CarliniWagnerLInfPGD`     ``max_iter`` (20) steps of ``min(eps_step, eps)`` on C&W loss
    cw-art      ART ``CarliniLInfMethod``         ``max_iter`` (20); **no eps bound** (see below)
    autoattack  ART ``AutoAttack``                ``norm=inf``, ``eps``; APGD initial step ``2 * eps``
    square      ART ``SquareAttack``              ``norm=inf``, ``eps``, ``max_iter`` queries (default 1000)
    =========== ================================= ===============================================================

    ``cw-art``: ART 1.20's ``CarliniLInfMethod`` has no ``eps`` parameter. It is a minimum-norm attack (its bound
    ``tau`` starts at 1.0 and shrinks while the attack keeps succeeding) and works one sample at a time (about a
    second per image on a small CPU model), so its perturbations can exceed ``eps``; use it only for fidelity checks
    on small subsets, and project or filter its results by ``eps`` yourself.

    ``autoattack``: ART's ensemble (APGD-CE and APGD-DLR with 100 iterations and 5 restarts, DeepFool, Square with
    ``max_iter`` queries, default 5000, and one restart; ART's default has 5 Square restarts); expensive on CPU.
    ``eps_step`` is ignored; pass ``attacks=[...]`` to use your own list. ART imports the ``multiprocess`` package when it runs.

    :param name: One of :data:`ATTACK_NAMES`.
    :param estimator: The ART classifier to attack.
    :param eps: L-infinity budget in ``(0, 1]`` (pixels in ``[0, 1]``).
    :param max_iter: Iterations (``None``: 20, or 1000 queries for ``square``, 5000 for AutoAttack's Square member;
        ignored by ``fgsm``).
    :param eps_step: Step size of the iterative attacks; capped at ``eps``.
    :param batch_size: Batch size.
    :param seed: Seed applied around every ``generate`` call (numpy and torch global RNGs are seeded and restored
                 afterwards), so random starts and random searches are reproducible. ``None`` disables it.
    :param verbose: Progress bars (where the ART class supports them).
    :param rng_skip: Numpy doubles to skip after seeding (ART attacks; ``cw`` seeds its own generator): a shard of a
        seeded run over more images then starts from the draws of its first image (distributed evaluation).
    :param kwargs: Extra keyword arguments for the attack class (e.g. ``targeted=True``, ``confidence=...``).
    :return: The attack.
    """
    settings = _check_attack_args(name, eps, max_iter, eps_step, batch_size, seed, verbose)
    attack = _ATTACK_BUILDERS[settings.name](estimator, settings, kwargs)
    return attack if settings.name in _SEEDED_BY_ITSELF else _seed_generate(attack, seed, rng_skip)


class _AttackSettings(NamedTuple):
    """:func:`make_attack`'s checked arguments, as every attack builder gets them."""

    name: str  #: lower-case attack name
    eps: float
    eps_step: float  #: as given
    step: float  #: ``min(eps_step, eps)``, the step of the iterative attacks
    iters: int  #: ``max_iter``, default 20
    max_iter: Optional[int]  #: as given (``None``: the attack's own default)
    batch_size: int
    seed: Optional[int]
    verbose: bool


def _check_attack_args(name, eps, max_iter, eps_step, batch_size, seed, verbose) -> _AttackSettings:
    """Check :func:`make_attack`'s arguments; return them with defaults filled in."""
    if not isinstance(name, str) or name.lower() not in ATTACK_NAMES:
        raise ValueError(f"Unknown attack {name!r}. Valid names: {', '.join(ATTACK_NAMES)}.")
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)) or not 0.0 < eps <= 1.0:
        raise ValueError(f"`eps` must be a number in (0, 1] (pixel scale [0, 1]), got {eps!r}.")
    eps = float(eps)
    if isinstance(eps_step, bool) or not isinstance(eps_step, (int, float, np.floating)) or not eps_step > 0:
        raise ValueError(f"`eps_step` must be a positive number, got {eps_step!r}.")
    if max_iter is not None and (
        isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1
    ):
        raise ValueError(f"`max_iter` must be a positive int or None, got {max_iter!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}.")
    return _AttackSettings(name=name.lower(), eps=eps, eps_step=eps_step, step=float(min(eps_step, eps)),
                           iters=int(max_iter) if max_iter is not None else 20, max_iter=max_iter,
                           batch_size=batch_size, seed=seed, verbose=verbose)


# one builder per attack: (estimator, settings, extra keyword arguments) -> the attack, not yet seeded


def _build_cw(estimator, s: _AttackSettings, kwargs: Dict[str, Any]) -> EvasionAttack:
    return CarliniWagnerLInfPGD(
        estimator,
        eps=s.eps,
        eps_step=float(s.eps_step),
        max_iter=s.iters,
        batch_size=int(s.batch_size),
        seed=s.seed,
        verbose=s.verbose,
        **kwargs,
    )


def _build_fgsm(estimator, s: _AttackSettings, kwargs: Dict[str, Any]) -> EvasionAttack:
    from art.attacks.evasion import FastGradientMethod

    return FastGradientMethod(estimator, norm=np.inf, eps=s.eps, eps_step=s.eps, batch_size=s.batch_size, **kwargs)


def _build_bim(estimator, s: _AttackSettings, kwargs: Dict[str, Any]) -> EvasionAttack:
    from art.attacks.evasion import BasicIterativeMethod

    return BasicIterativeMethod(
        estimator, eps=s.eps, eps_step=s.step, max_iter=s.iters, batch_size=s.batch_size, verbose=s.verbose, **kwargs
    )


def _build_pgd(estimator, s: _AttackSettings, kwargs: Dict[str, Any]) -> EvasionAttack:
    from art.attacks.evasion import ProjectedGradientDescent

    kwargs.setdefault("num_random_init", 1)
    return ProjectedGradientDescent(
        estimator,
        norm=np.inf,
        eps=s.eps,
        eps_step=s.step,
        max_iter=s.iters,
        batch_size=s.batch_size,
        verbose=s.verbose,
        **kwargs,
    )


def _build_cw_art(estimator, s: _AttackSettings, kwargs: Dict[str, Any]) -> EvasionAttack:
    from art.attacks.evasion import CarliniLInfMethod

    return CarliniLInfMethod(estimator, max_iter=s.iters, batch_size=s.batch_size, verbose=s.verbose, **kwargs)


def _build_autoattack(estimator, s: _AttackSettings, kwargs: Dict[str, Any]) -> EvasionAttack:
    """ART's ``AutoAttack`` with its default ensemble (APGD-CE and APGD-DLR, 100 steps and 5 restarts each; DeepFool;
    Square), built here so that ``verbose`` reaches every member and Square gets ``max_iter`` queries and one restart
    (ART's default: 5000 queries, 5 restarts)."""
    from art.attacks.evasion import AutoAttack, AutoProjectedGradientDescent, DeepFool, SquareAttack

    step = kwargs.pop("eps_step", 2.0 * s.eps)
    apgd = dict(norm=np.inf, eps=s.eps, eps_step=step, max_iter=100, targeted=False,
                nb_random_init=int(kwargs.pop("nb_random_init", 5)),
                batch_size=s.batch_size, verbose=s.verbose)
    members = kwargs.pop("attacks", None) or [
        AutoProjectedGradientDescent(estimator, loss_type="cross_entropy", **apgd),
        AutoProjectedGradientDescent(estimator, loss_type="difference_logits_ratio", **apgd),
        DeepFool(estimator, max_iter=100, epsilon=1e-3, nb_grads=10, batch_size=s.batch_size, verbose=s.verbose),
        SquareAttack(estimator, norm=np.inf, eps=s.eps, max_iter=int(s.max_iter) if s.max_iter is not None else 5000,
                     p_init=0.8, nb_restarts=1, batch_size=s.batch_size, verbose=s.verbose),
    ]
    return AutoAttack(estimator, norm=np.inf, eps=s.eps, eps_step=step, attacks=members, batch_size=s.batch_size,
                      **kwargs)


def _build_square(estimator, s: _AttackSettings, kwargs: Dict[str, Any]) -> EvasionAttack:
    from art.attacks.evasion import SquareAttack

    return SquareAttack(
        estimator,
        norm=np.inf,
        eps=s.eps,
        max_iter=int(s.max_iter) if s.max_iter is not None else 1000,
        batch_size=s.batch_size,
        verbose=s.verbose,
        **kwargs,
    )


#: The builder of each attack of :data:`ATTACK_NAMES`.
_ATTACK_BUILDERS: Dict[str, Callable[[Any, _AttackSettings, Dict[str, Any]], EvasionAttack]] = {
    "fgsm": _build_fgsm,
    "bim": _build_bim,
    "pgd": _build_pgd,
    "cw": _build_cw,
    "cw-art": _build_cw_art,
    "autoattack": _build_autoattack,
    "square": _build_square,
}

#: Attacks that take ``seed`` themselves (the others get :func:`_seed_generate`).
_SEEDED_BY_ITSELF = ("cw",)
