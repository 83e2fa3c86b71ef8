"""
Adaptive training of the ID (NOT in the paper): adversarial examples are crafted online, every batch, through the
whole defended classifier — ID (+ restorers inside the target, + FR) + the frozen target, end to end — and the ID
(and, as chosen, the FR and the inner restorers of :mod:`art_idfr.inner`) is trained to have the target classify them
correctly. Algorithm 1 trains on fixed AEs of the *bare* target, which an attacker who knows the ID
defeats (0–6.5% adaptive white-box in every run); this mode trains against that attacker. The target never changes.

Per batch (``x``, ``y``), with ``f`` the frozen target and ``ID`` the denoiser being trained::

    x_adv = argmax_{|δ|∞ ≤ ε} CE(f(FR∘ID(x + δ)), y)          inner attack: PGD (random start), FGSM-RS, N-FGSM
                                                               (|δ|∞ ≤ 3ε) or ART; with trades_reference="defended"
                                                               KL(f(ID(x)) ‖ f(ID(x + δ))) instead (TRADES)
    L = w_adv · CE(f(ID(x_adv)), y)                            Eq. 3 of the paper, on online AEs
      + β · KL(r(x) ‖ f(ID(x_adv)))                            optional, TRADES-style: r = the target's clean output
                                                               f(x), or the defended one f(ID(x)) (TRADES proper)
      + w_clean · CE(f(ID(x)), y) + λ · mean|ID(x) − x|        clean images: Eq. 3 and the identity term
      + w_fixed · CE(f(ID(x'_A1)), y)                          optional: Algorithm 1's fixed AEs kept in the mix

Entry: :class:`AdaptiveDenoiserTrainer` (ART ``Trainer`` style: ``fit`` then ``get_classifier``); the run itself
(inner attack, loss, epochs) is :mod:`art_idfr.training.adaptive_run`. A long fit given
``checkpoint=PATH`` writes its whole state there every few hundred steps and, cut off, resumes from it
(:mod:`art_idfr.training.resume`).

Under ``torchrun`` (:mod:`art_idfr.training.distributed`, as Algorithms 1 and 2): the fixed AEs are crafted on a
shard of ``x`` per rank and all-gathered; every rank draws the same global batch, fixed-AE picks and random starts
from the shared seed and handles its rows ``rank::world_size`` of it (inner attack and loss), the ID trains under
DDP with each rank's loss scaled so that the averaged gradient is the global batch's; the FR's gradients
(``train_restorer``) are averaged over the ranks by hand (it runs inside the target's forward hook, outside DDP);
BatchNorm running statistics are averaged after every epoch, validation hits summed over the ranks (each takes its
rows of every validation batch, with the single-process random starts), and rank 0's final weights broadcast.
``history`` records ``n_seen``, the samples seen per epoch by all ranks together. An ART attack factory as the
inner attack runs on each rank's rows with ART's global RNG (its random starts are not the single-process ones).
"""
from __future__ import annotations

import logging
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from art.defences.trainer.trainer import Trainer

from art_idfr._names import ADAPTIVE_ATTACKS, TRADES_REFERENCES
from art_idfr._utils import check_image_batch, check_pytorch_classifier, class_indices, cpu_has_native_bf16
from art_idfr.defended import defend
from art_idfr.denoiser import IDFRDenoiser
from art_idfr.inner import InnerRestorer
from art_idfr.restorer import FeatureRestorer
from art_idfr.training import distributed as ddp
from art_idfr.training.adaptive_run import _AdaptiveRun
from art_idfr.training.common import craft
from art_idfr.training.resume import ResumeFile, digest

if TYPE_CHECKING:  # pragma: no cover
    from art.attacks.attack import EvasionAttack
    from art.estimators.classification import PyTorchClassifier

logger = logging.getLogger(__name__)

#: an ART attack built on the defended classifier, e.g. ``lambda clf: ProjectedGradientDescent(clf, eps=8/255)``
AttackFactory = Callable[["PyTorchClassifier"], "EvasionAttack"]

#: Named keyword sets of :class:`AdaptiveDenoiserTrainer`, for :meth:`AdaptiveDenoiserTrainer.from_recipe`:
#:
#: * ``"conservative"`` — the constructor's defaults, the first mix: ε 8/255, Algorithm 1's fixed AEs when ``fit``
#:   gets ``attacks``, the ID's identity term, no TRADES, the ID's batch size and a tenth of its learning rate;
#: * ``"trades_joint"`` — the best found on Fashion-MNIST's validation split (benchmarks/NOTES.md, "Adaptive tuning"
#:   sections; the recipe of ``benchmarks/fashion_mnist_adaptive.py``): PGD-5 at 16/255, TRADES β 6, no identity
#:   term, no fixed AEs, batch 16, Adam 1e-3, two one-cycle epochs, the FR (``restorer``, required) trained along.
#:   Tuned on [0, 1] grey-scale images; on CIFAR-10 CPU an earlier form of it collapsed (NOTES, "cifar10_adaptive").
ADAPTIVE_RECIPES: Dict[str, Dict[str, Any]] = {
    "conservative": {},
    "trades_joint": {"eps": 16 / 255, "max_iter": 5, "trades_beta": 6.0, "identity_weight": 0.0, "fixed_weight": 0.0,
                     "learning_rate": 1e-3, "batch_size": 16, "nb_epochs": 2, "train_restorer": True},
}


#: training-info keys newer than the first resume files, with their defaults (a fingerprint leaves them out there)
_NEWER_THAN_RESUME_FILES = (("trades_reference", "target"), ("adversarial_weight", 1.0), ("train_denoiser", True),
                            ("inner", None), ("train_inner", False), ("autocast", None), ("channels_last", False))


def _from_denoiser(value: Optional[float], denoiser: Optional[IDFRDenoiser], name: str, divisor: float,
                   fallback: float) -> float:
    """``value``, else the denoiser's setting ``name`` / ``divisor``, else (no denoiser) ``fallback``."""
    if value is not None:
        return float(value)
    return getattr(denoiser, name) / divisor if denoiser is not None else fallback


class AdaptiveDenoiserTrainer(Trainer):
    """
    Adversarially train an :class:`IDFRDenoiser` end to end through the frozen target (not in the paper).

    Typical use: fit the ID by Algorithm 1 first (``denoiser.fit(...)``), then fine-tune it here. The defaults are
    the first, conservative mix (Algorithm 1's fixed AEs when ``attacks`` are given, the identity term, no TRADES);
    the best recipe found on Fashion-MNIST's validation split is ``AdaptiveDenoiserTrainer.from_recipe(
    "trades_joint", classifier, denoiser, restorer)`` (:data:`ADAPTIVE_RECIPES`; benchmarks/NOTES.md, "Adaptive
    training of the ID" and the tuning sections after it; the fixed AEs changed no black-box column there).
    Calling :meth:`fit` again continues from the weights reached, with a fresh one-cycle learning-rate schedule.

    :param classifier: The undefended target, an ART ``PyTorchClassifier`` (frozen, left unchanged).
    :param denoiser: The ID to train (in place); ``None``: no ID (then ``inner`` and/or a trained FR are what
        trains, e.g. the restorers inside the target alone).
    :param restorer: A fitted :class:`FeatureRestorer`: the inner attack and the loss then go through it as well
        (the defended classifier is ID+FR). ``None``: ID only.
    :param eps: L∞ budget of the inner attack (in ``clip_values`` units).
    :param attack: ``"pgd"`` (random start, ``max_iter`` steps of ``eps_step``), ``"fgsm_rs"`` (one step of
        1.25·ε from a random start, Wong et al. 2020: cheap, but it overfits catastrophically here — the ID learns
        to defeat the single step and PGD still leaves 0-5%: benchmarks/NOTES.md), ``"n_fgsm"`` (one step of ε from
        a start drawn in the 2ε-ball, not projected back, so |δ|∞ ≤ 3ε: de Jorge et al. 2022, "Make Some Noise",
        single-step without that overfitting in their runs), or a callable building any ART ``EvasionAttack`` on
        the defended classifier (run batch by batch through ART; slower, any attack works).
    :param max_iter: Steps of the inner PGD.
    :param eps_step: PGD step size (default 2.5·ε / ``max_iter``, Madry et al.).
    :param eps_warmup: Fraction of the epochs over which ε rises linearly from 0 to ``eps`` (0 = constant ε).
    :param trades_beta: β of the TRADES-style KL term between a clean reference prediction (``trades_reference``)
        and the defended prediction on ``x_adv`` (0 = off).
    :param trades_reference: The KL term's reference: ``"target"`` (default), the frozen target's prediction on the
        clean image, f(x), a fixed anchor; or ``"defended"``, the defended classifier's own clean prediction
        f(FR∘ID(x)) with the gradient flowing through it, and the inner PGD then maximises that KL instead of the CE
        (standard TRADES, Zhang et al. 2019: with ``adversarial_weight=0`` and ``clean_weight=1`` its loss exactly).
    :param adversarial_weight: Weight of Eq. 3 on the online AEs (1; 0 leaves them to the KL term alone, as TRADES).
    :param clean_weight: Weight of Eq. 3 on the clean images (through the ID).
    :param identity_weight: λ of λ·mean|ID(x) − x| on clean images (default: the denoiser's ``identity_weight``).
    :param fixed_weight: Weight of Eq. 3 on Algorithm 1's fixed AEs when given to :meth:`fit` (0: they are neither
        crafted nor passed through the ID, so they do not enter its BatchNorm batch statistics either).
    :param learning_rate: Adam learning rate (default: a tenth of the denoiser's, for fine-tuning).
    :param nb_epochs: Epochs (default 2).
    :param batch_size: Batch size (default: the denoiser's). Short fine-tunings are bound by the number of optimizer
        steps: on Fashion-MNIST's validation split, batch 32 or 16 beat 128 by 8-16 points of white-box accuracy at
        the same compute (benchmarks/NOTES.md, "Adaptive tuning, fourth session").
    :param train_restorer: Also train the FR's weights on the same loss (needs ``restorer``).
    :param ema_decay: Decay of an exponential moving average of the trained weights (ID, and FR with
        ``train_restorer``; BatchNorm statistics included), updated after every optimizer step (torch's
        ``AveragedModel``); the averaged weights are the ones validated, kept and returned. 0 = off (the raw
        weights); e.g. 0.999 averages over about the last thousand steps. On Fashion-MNIST's validation split it
        moved no column beyond noise in a warm restart (benchmarks/NOTES.md, "sixteenth session").
    :param awp_gamma: Adversarial weight perturbation (Wu et al. 2020, "AWP"), 0 = off: each step first moves every
        weight matrix / kernel of the trained networks by ``awp_gamma`` · its norm along the gradient of the batch's
        loss (one normalised ascent step per layer), takes the loss's gradient *there*, and steps from the
        unperturbed weights: the ID is trained toward a flatter robust loss. One more forward/backward per step;
        5e-3 in the paper.
    :param inner: An :class:`~art_idfr.inner.InnerRestorer` built for ``classifier``'s model (``build(model)``):
        restorers inside the frozen target (low-rank weight deltas or residual adapters, not in the paper); the inner
        attack and the loss go through them, and with ``train_inner`` they train too. The target's own tensors and
        BatchNorm statistics never change.
    :param train_inner: Train ``inner``'s parts (default: whenever ``inner`` is given).
    :param train_denoiser: Train the ID (default ``True``); ``False`` keeps a given ID fixed in front.
    :param autocast: ``"bf16"``: the inner attack and the update's forward passes under bfloat16 autocast (on CPUs
        with AVX-512 BF16 1.5-1.6x as fast per step, accuracy unchanged on CIFAR-10's validation split; validation
        stays in float32); ``None``: float32 throughout. On a CPU without native bfloat16 it is slower than float32,
        and a ``RuntimeWarning`` says so.
    :param channels_last: Images (and the ID's weights, during the fit) in channels-last memory layout: with
        ``autocast="bf16"`` 1.56x (Fashion-MNIST) to 1.9x (CIFAR-10) in all on such CPUs
        (benchmarks/results/adaptive_speed); the target's own tensors are never converted.
    :param keep_start: Whether the starting weights compete in the best-epoch choice (scored as epoch 0 either way).
        ``False`` keeps the best *trained* epoch even when the start scores higher: a stage of an ε curriculum hands
        its training on, though at its small ε trading clean accuracy for robustness need not pay off yet.
    :param seed: Seed of the batch order, random starts and fixed-AE draws.
    :param verbose: Progress bars.
    """

    def __init__(
        self,
        classifier: "PyTorchClassifier",
        denoiser: Optional[IDFRDenoiser],
        restorer: Optional[FeatureRestorer] = None,
        eps: float = 8 / 255,
        attack: Union[str, AttackFactory] = "pgd",
        max_iter: int = 5,
        eps_step: Optional[float] = None,
        eps_warmup: float = 0.0,
        trades_beta: float = 0.0,
        trades_reference: str = "target",
        adversarial_weight: float = 1.0,
        clean_weight: float = 1.0,
        identity_weight: Optional[float] = None,
        fixed_weight: float = 1.0,
        learning_rate: Optional[float] = None,
        nb_epochs: int = 2,
        batch_size: Optional[int] = None,
        train_restorer: bool = False,
        ema_decay: float = 0.0,
        awp_gamma: float = 0.0,
        keep_start: bool = True,
        seed: Optional[int] = 0,
        verbose: bool = False,
        inner: Optional[InnerRestorer] = None,
        train_inner: Optional[bool] = None,
        train_denoiser: bool = True,
        autocast: Optional[str] = None,
        channels_last: bool = False,
    ) -> None:
        check_pytorch_classifier(classifier)
        super().__init__(classifier)
        self.target, self.denoiser, self.restorer = classifier, denoiser, restorer
        self.eps, self.attack, self.max_iter = float(eps), attack, int(max_iter)
        self.eps_step = float(eps_step) if eps_step is not None else 2.5 * self.eps / max(1, self.max_iter)
        self.eps_warmup, self.trades_beta = float(eps_warmup), float(trades_beta)
        self.trades_reference, self.adversarial_weight = trades_reference, float(adversarial_weight)
        self.clean_weight, self.fixed_weight = float(clean_weight), float(fixed_weight)
        self.inner, self.autocast, self.channels_last = inner, autocast, bool(channels_last)
        self.train_inner = inner is not None if train_inner is None else bool(train_inner)
        self.train_denoiser = bool(train_denoiser) and denoiser is not None
        self.identity_weight = _from_denoiser(identity_weight, denoiser, "identity_weight", 1.0, 0.0)
        self.learning_rate = _from_denoiser(learning_rate, denoiser, "learning_rate", 10, 1e-3)
        self.nb_epochs = int(nb_epochs)
        self.batch_size = int(_from_denoiser(batch_size, denoiser, "batch_size", 1, 32))
        self.train_restorer, self.seed, self.verbose = bool(train_restorer), seed, bool(verbose)
        self.ema_decay, self.awp_gamma, self.keep_start = float(ema_decay), float(awp_gamma), bool(keep_start)
        self.recipe: Optional[str] = None  # the ADAPTIVE_RECIPES name when built by from_recipe
        self._check_params()
        self._head_classifier = defend(classifier, None, restorer, inner)
        self._classifier = classifier
        self.history: List[Dict[str, float]] = []
        self.resumed_seconds = 0.0  # fit seconds of the cut-off parts of the last fit, when it resumed a checkpoint

    def _check_params(self) -> None:
        if self.denoiser is not None and not isinstance(self.denoiser, IDFRDenoiser):
            raise TypeError(f"denoiser must be an IDFRDenoiser or None, got {type(self.denoiser).__name__}.")
        if self.inner is not None and not isinstance(self.inner, InnerRestorer):
            raise TypeError(f"inner must be an InnerRestorer or None, got {type(self.inner).__name__}.")
        if self.train_inner and self.inner is None:
            raise ValueError("train_inner=True needs inner (an InnerRestorer built for the target's model).")
        if not (self.train_denoiser or self.train_restorer or self.train_inner):
            raise ValueError("nothing to train: give a denoiser (train_denoiser=True), inner restorers "
                             "(train_inner=True) or a restorer with train_restorer=True.")
        if self.autocast not in (None, "bf16"):
            raise ValueError(f"autocast must be None or 'bf16', got {self.autocast!r}.")
        if self.autocast == "bf16" and self.target.device.type == "cpu" and not cpu_has_native_bf16():
            warnings.warn("autocast='bf16' on a CPU without native bfloat16 (AVX-512 BF16 or AMX): torch emulates "
                          "it, and the fit runs slower than in float32 (benchmarks/results/adaptive_speed). Leave "
                          "autocast=None on this CPU.", RuntimeWarning, stacklevel=3)
        if self.restorer is not None and not isinstance(self.restorer, FeatureRestorer):
            raise TypeError(f"restorer must be a FeatureRestorer or None, got {type(self.restorer).__name__}.")
        if self.restorer is not None and not self.restorer.is_fitted:
            raise ValueError("the restorer must be fitted (Algorithm 2) before adaptive training goes through it.")
        if self.train_restorer and self.restorer is None:
            raise ValueError("train_restorer=True needs a restorer.")
        if not (isinstance(self.attack, str) and self.attack in ADAPTIVE_ATTACKS) and not callable(self.attack):
            raise ValueError(f"attack must be one of {ADAPTIVE_ATTACKS} or a callable building an ART attack on the "
                             f"defended classifier, got {self.attack!r}.")
        clip = self.target.clip_values
        span = (clip[1] - clip[0]) if clip is not None else float("inf")
        if not 0 < self.eps <= span or self.eps_step <= 0:
            raise ValueError(f"eps must lie in (0, {span:g}] and eps_step be positive; got eps={self.eps}, "
                             f"eps_step={self.eps_step}.")
        if self.max_iter < 1 or self.nb_epochs < 0 or self.batch_size < 1 or not 0 <= self.eps_warmup <= 1:
            raise ValueError("max_iter and batch_size must be >= 1, nb_epochs >= 0 and eps_warmup in [0, 1].")
        weights = (self.trades_beta, self.adversarial_weight, self.clean_weight, self.identity_weight, self.fixed_weight)
        if min(weights) < 0:
            raise ValueError("trades_beta, adversarial_weight, clean_weight, identity_weight and fixed_weight must be "
                             "non-negative.")
        if self.trades_reference not in TRADES_REFERENCES:
            raise ValueError(f"trades_reference must be one of {TRADES_REFERENCES}, got {self.trades_reference!r}.")
        if self.adversarial_weight == 0 and self.trades_beta == 0:
            raise ValueError("adversarial_weight=0 needs trades_beta > 0: the online AEs would not enter the loss.")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}.")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in [0, 1) (0 = no weight averaging), got {self.ema_decay}.")
        if not 0 <= self.awp_gamma < 1:
            raise ValueError(f"awp_gamma must lie in [0, 1) (0 = no weight perturbation), got {self.awp_gamma}.")

    @classmethod
    def from_recipe(cls, recipe: str, classifier: "PyTorchClassifier", denoiser: IDFRDenoiser,
                    restorer: Optional[FeatureRestorer] = None, **overrides: Any) -> "AdaptiveDenoiserTrainer":
        """
        A trainer with the keywords ``ADAPTIVE_RECIPES[recipe]``; ``overrides`` (any constructor keyword,
        e.g. ``nb_epochs=3``, ``verbose=True``) take precedence. The recipe's name is recorded in the checkpoint.
        """
        if recipe not in ADAPTIVE_RECIPES:
            raise ValueError(f"Unknown adaptive recipe {recipe!r}. Valid recipes: {', '.join(ADAPTIVE_RECIPES)}.")
        trainer = cls(classifier, denoiser, restorer, **{**ADAPTIVE_RECIPES[recipe], **overrides})
        trainer.recipe = recipe
        return trainer

    # ------------------------------------------------------------------ public API
    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        attacks: Sequence["EvasionAttack"] = (),
        x_fixed: Optional[np.ndarray] = None,
        validation_data: Optional[Tuple[np.ndarray, np.ndarray]] = None,
        nb_epochs: Optional[int] = None,
        checkpoint: Optional[str] = None,
        checkpoint_every: int = 200,
        **kwargs,
    ) -> None:
        """
        Train the ID (and with ``train_restorer`` the FR) adaptively; afterwards :meth:`get_classifier` is the
        defended classifier and the denoiser records how it was trained (``denoiser.training_info``).

        :param x: Clean training images (the denoiser's layout, inside ``clip_values``).
        :param y: Labels (indices or one-hot).
        :param attacks: ART attacks on the bare target whose AEs of ``x`` (crafted once) stay in the mix, as in
            Algorithm 1 (weight ``fixed_weight``).
        :param x_fixed: Precomputed fixed AEs, shape ``(k·len(x), ...)``: k AEs per image, in the order of ``x``.
        :param validation_data: ``(x_val, y_val)`` (never the test split): each epoch scores clean accuracy and
            accuracy under the inner attack through the current defence (20 PGD steps); the best epoch is kept.
        :param nb_epochs: Epochs (default: the constructor's).
        :param checkpoint: Path of a resume file (:mod:`art_idfr.training.resume`): the run's whole state is written
            there every ``checkpoint_every`` optimizer steps and after every epoch, and when the file exists at the
            start the run continues from it — in a single process with a built-in inner attack, to the same weights
            bit for bit as a run never cut off. Only the run that wrote it resumes it (same settings, data and
            starting weights; otherwise ``ValueError``). Deleted when the fit finishes. ``None``: no resume file.
            Under ``torchrun`` rank 0 writes it and every rank reads it (a shared folder): a run cut at an epoch's
            end resumes exactly; one cut inside an epoch, with rank 0's BatchNorm running statistics on every rank.
        :param checkpoint_every: Optimizer steps between two writes of ``checkpoint``.
        """
        from art_idfr.training.common import warn_unused_kwargs

        warn_unused_kwargs(kwargs, "AdaptiveDenoiserTrainer.fit")
        self._check_input(x)
        y_idx = class_indices(y, self.target.nb_classes)
        if len(y_idx) != len(x):
            raise ValueError(f"x has {len(x)} samples but y has {len(y_idx)}.")
        if int(checkpoint_every) < 1:
            raise ValueError(f"checkpoint_every must be >= 1 optimizer step, got {checkpoint_every}.")
        fixed = self._fixed_aes(x, y_idx, attacks, x_fixed) if self.fixed_weight > 0 else None  # 0: not crafted
        nb_epochs = self.nb_epochs if nb_epochs is None else int(nb_epochs)
        x = np.asarray(x, dtype=np.float32)
        resume = None if checkpoint is None else ResumeFile(
            checkpoint, self._fingerprint(x, y_idx, fixed, nb_epochs, validation_data))
        started = time.perf_counter()
        run = _AdaptiveRun(self, fixed)
        run.train(x, y_idx, nb_epochs, validation_data, resume, int(checkpoint_every))
        self.resumed_seconds = run.seconds_before
        info = self.training_info(nb_epochs, len(x), fixed is not None,
                                  time.perf_counter() - started + run.seconds_before)
        if self.train_denoiser:
            self.denoiser.mark_fitted(info)
        if self.train_restorer:
            self.restorer.mark_fitted({**self.restorer.training_info, "adaptive": info})
        if self.train_inner:
            self.inner.mark_fitted(info)
        self._classifier = defend(self.target, self.denoiser, self.restorer, self.inner)

    def networks(self) -> List[torch.nn.Module]:
        """Every network of the defence the runs go through: the ID's, the FR's, the inner restorers'."""
        parts = (self.denoiser, self.restorer, self.inner)
        return [part.network for part in parts if part is not None]

    def trained_networks(self) -> List[torch.nn.Module]:
        """The networks this trainer trains, in the order ID, FR, inner restorers."""
        flags = ((self.denoiser, self.train_denoiser), (self.restorer, self.train_restorer),
                 (self.inner, self.train_inner))
        return [part.network for part, trains in flags if trains]

    def _check_input(self, x: np.ndarray) -> None:
        if self.denoiser is not None:
            self.denoiser.check_input(x)
        else:
            clf = self.target
            check_image_batch(np.asarray(x), tuple(clf.input_shape), clf.channels_first, clf.clip_values)

    def get_classifier(self) -> "PyTorchClassifier":
        """The defended classifier (the undefended target until :meth:`fit` has run)."""
        return self._classifier

    def training_info(self, nb_epochs: int, n: int, with_fixed: bool, seconds: float) -> Dict[str, Any]:
        """What the checkpoint records about this run."""
        attack = self.attack if isinstance(self.attack, str) else getattr(self.attack, "__name__", "art_attack")
        init = self.denoiser.training_info if self.denoiser is not None else None
        inner = None if self.inner is None else {**self.inner.get_config(), "parameters": self.inner.num_parameters(),
                                                 "macs": self.inner.macs()}
        return {"algorithm": "adaptive", "in_paper": False, "init": init or None,
                "recipe": self.recipe, "attack": attack, "eps": self.eps, "eps_step": self.eps_step,
                "max_iter": self.max_iter,
                "eps_warmup": self.eps_warmup, "trades_beta": self.trades_beta,
                "trades_reference": self.trades_reference, "adversarial_weight": self.adversarial_weight,
                "clean_weight": self.clean_weight,
                "identity_weight": self.identity_weight, "fixed_weight": self.fixed_weight if with_fixed else 0.0,
                "learning_rate": self.learning_rate, "nb_epochs": nb_epochs, "batch_size": self.batch_size,
                "n_train": n,
                "through_restorer": self.restorer is not None, "train_restorer": self.train_restorer,
                "ema_decay": self.ema_decay, "awp_gamma": self.awp_gamma, "keep_start": self.keep_start,
                "train_denoiser": self.train_denoiser, "inner": inner, "train_inner": self.train_inner,
                "autocast": self.autocast, "channels_last": self.channels_last, "seconds": round(seconds, 1)}

    def _fingerprint(self, x, y_idx, fixed, nb_epochs: int, validation_data) -> Dict[str, Any]:
        """What a resume file must match to be this run's: settings, seed, data, fixed AEs, validation data, start."""
        info = self.training_info(nb_epochs, len(x), fixed is not None, 0.0)
        info.pop("seconds")
        for key, default in _NEWER_THAN_RESUME_FILES:  # at their defaults they leave a file written before them valid
            if info[key] == default:
                info.pop(key)
        trained = self.trained_networks()
        val = () if validation_data is None else (np.asarray(validation_data[0]), np.asarray(validation_data[1]))
        return {**info, "seed": self.seed, "world_size": ddp.world_size(), "data": digest(x, y_idx),
                "fixed_aes": digest(fixed) if fixed is not None else None, "validation": digest(*val),
                "start_weights": digest(*trained)}

    def _fixed_aes(self, x, y_idx, attacks, x_fixed) -> Optional[torch.Tensor]:
        """Algorithm 1's fixed AEs, (k, n, ...): crafted once on the bare target, plus ``x_fixed``."""
        onehot = np.eye(self.target.nb_classes, dtype=np.float32)[y_idx]
        sets = craft(list(attacks), x, onehot, "crafting fixed AEs", self.verbose)
        if x_fixed is not None:
            self._check_input(x_fixed)
            if len(x_fixed) % len(x):
                raise ValueError(f"x_fixed must hold k AEs per image of x (a multiple of {len(x)}), got "
                                 f"{len(x_fixed)}.")
            sets += list(np.asarray(x_fixed, dtype=np.float32).reshape(-1, *np.shape(x)))
        return torch.as_tensor(np.stack(sets)) if sets else None
