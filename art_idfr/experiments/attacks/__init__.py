"""
Evasion attacks used in the IDFR experiments, all as ART :class:`~art.attacks.EvasionAttack` objects.

* :class:`CarliniWagnerLInfPGD` -- the epsilon-bounded Carlini & Wagner L-infinity attack ("CW-inf" in the
  robustness literature): projected sign-gradient descent on the C&W margin loss, batched in PyTorch. It runs
  through the estimator's PyTorch preprocessing defences and through any forward hooks of the model, so it is a
  white-box *adaptive* attack on a defended :class:`~art.estimators.classification.PyTorchClassifier`.
* :class:`OnePassSquareAttack` -- ART's L-infinity ``SquareAttack`` with one estimator pass per iteration instead
  of three (the same AEs on a deterministic classifier); the evaluation's query cells, Square check and AutoAttack's
  Square member use it for every deterministic defence.
* :func:`make_attack` -- build any attack of the experiments by name (``fgsm``, ``bim``, ``pgd``, ``cw``,
  ``cw-art``, ``autoattack``, ``square``).

Step size convention
--------------------
The iterative attacks use the step ``min(eps_step, eps)``. The default ``eps_step=0.03`` follows the paper
("20 iterations with a step size of 0.03"). ART itself accepts ``eps_step > eps`` silently: every step then
overshoots and is projected back, so the iterates only jump between corners of the epsilon-box. Capping the step
at ``eps`` keeps the paper's setting for ``eps >= 0.03`` (e.g. 8/255) and gives a sensible attack for smaller
``eps``.

The package holds :mod:`~art_idfr.experiments.attacks.cw` (:class:`CarliniWagnerLInfPGD`, :func:`cw_margin_loss`),
:mod:`~art_idfr.experiments.attacks.square` (:class:`OnePassSquareAttack`) and
:mod:`~art_idfr.experiments.attacks.factory` (:func:`make_attack`); their public names are re-exported here, so
``from art_idfr.experiments.attacks import ...`` works as before the split. Code that builds attacks imports
``make_attack`` from here at call time, so tests can monkeypatch ``art_idfr.experiments.attacks.make_attack``.
"""
from art_idfr._names import ATTACK_NAMES
from art_idfr.experiments.attacks.cw import CarliniWagnerLInfPGD, cw_margin_loss
from art_idfr.experiments.attacks.factory import make_attack
from art_idfr.experiments.attacks.square import OnePassSquareAttack

__all__ = ["CarliniWagnerLInfPGD", "OnePassSquareAttack", "make_attack", "ATTACK_NAMES", "cw_margin_loss"]
