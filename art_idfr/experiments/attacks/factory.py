"""
The attack factory of :mod:`art_idfr.experiments.attacks`: :func:`make_attack` checks its arguments and builds any
L-infinity attack of the experiments by name (ART's FGSM, BIM, PGD, C&W, AutoAttack and Square, and
:class:`~art_idfr.experiments.attacks.CarliniWagnerLInfPGD`), with the step capped at ``eps`` and ``generate`` seeded
for reproducible random starts.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, NamedTuple, Optional

import numpy as np

from art.attacks.attack import EvasionAttack

from art_idfr._names import ATTACK_NAMES
from art_idfr._utils import seeded, skip_numpy_draws
from art_idfr.experiments.attacks.cw import CarliniWagnerLInfPGD
from art_idfr.experiments.attacks.square import OnePassSquareAttack


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
    square      ART ``SquareAttack``              ``norm=inf``, ``eps``, ``max_iter`` queries (default 1000);
                                                  ``one_pass=True``: :class:`OnePassSquareAttack` (same AEs on a
                                                  deterministic classifier, a third of the passes)
    =========== ================================= ===============================================================

    ``cw-art``: ART 1.20's ``CarliniLInfMethod`` has no ``eps`` parameter. It is a minimum-norm attack (its bound
    ``tau`` starts at 1.0 and shrinks while the attack keeps succeeding) and works one sample at a time (about a
    second per image on a small CPU model), so its perturbations can exceed ``eps``; use it only for fidelity checks
    on small subsets, and project or filter its results by ``eps`` yourself.

    ``autoattack``: ART's ensemble (APGD-CE and APGD-DLR with 100 iterations and 5 restarts, DeepFool, Square with
    ``max_iter`` queries, default 5000, and one restart; ART's default has 5 Square restarts); expensive on CPU.
    ``one_pass=True`` makes its Square member an :class:`OnePassSquareAttack` (for a deterministic classifier).
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
    (ART's default: 5000 queries, 5 restarts); ``one_pass=True``: Square as :class:`OnePassSquareAttack`."""
    from art.attacks.evasion import AutoAttack, AutoProjectedGradientDescent, DeepFool

    step = kwargs.pop("eps_step", 2.0 * s.eps)
    square = _square_class(kwargs)
    apgd = dict(norm=np.inf, eps=s.eps, eps_step=step, max_iter=100, targeted=False,
                nb_random_init=int(kwargs.pop("nb_random_init", 5)),
                batch_size=s.batch_size, verbose=s.verbose)
    members = kwargs.pop("attacks", None) or [
        AutoProjectedGradientDescent(estimator, loss_type="cross_entropy", **apgd),
        AutoProjectedGradientDescent(estimator, loss_type="difference_logits_ratio", **apgd),
        DeepFool(estimator, max_iter=100, epsilon=1e-3, nb_grads=10, batch_size=s.batch_size, verbose=s.verbose),
        square(estimator, norm=np.inf, eps=s.eps, max_iter=int(s.max_iter) if s.max_iter is not None else 5000,
               p_init=0.8, nb_restarts=1, batch_size=s.batch_size, verbose=s.verbose),
    ]
    return AutoAttack(estimator, norm=np.inf, eps=s.eps, eps_step=step, attacks=members, batch_size=s.batch_size,
                      **kwargs)


def _square_class(kwargs: Dict[str, Any]) -> type:
    """ART's ``SquareAttack``, or :class:`OnePassSquareAttack` when ``kwargs`` has ``one_pass=True`` (popped)."""
    from art.attacks.evasion import SquareAttack

    return OnePassSquareAttack if kwargs.pop("one_pass", False) else SquareAttack


def _build_square(estimator, s: _AttackSettings, kwargs: Dict[str, Any]) -> EvasionAttack:
    return _square_class(kwargs)(
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
