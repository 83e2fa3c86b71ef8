"""
Adaptive training of the ID (NOT in the paper): adversarial examples are crafted online, every batch, through the
whole defended classifier — ID (+ FR) + the frozen target, end to end — and the ID is trained to have the target
classify them correctly. Algorithm 1 trains on fixed AEs of the *bare* target, which an attacker who knows the ID
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

Entry: :class:`AdaptiveDenoiserTrainer` (ART ``Trainer`` style: ``fit`` then ``get_classifier``). A long fit given
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

import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from art.defences.trainer.trainer import Trainer
from art_idfr.progress import progress_bar

from art_idfr._names import ADAPTIVE_ATTACKS, TRADES_REFERENCES
from art_idfr._utils import check_pytorch_classifier, class_indices, frozen, seed_generator
from art_idfr.defended import clone_classifier, defend
from art_idfr.denoiser import IDFRDenoiser
from art_idfr.embedding import target_logits
from art_idfr.restorer import FeatureRestorer
from art_idfr.training import distributed as ddp
from art_idfr.training.common import BestEpoch, batches, craft, validation_score
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
    :param denoiser: The ID to train (in place).
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
    :param keep_start: Whether the starting weights compete in the best-epoch choice (scored as epoch 0 either way).
        ``False`` keeps the best *trained* epoch even when the start scores higher: a stage of an ε curriculum hands
        its training on, though at its small ε trading clean accuracy for robustness need not pay off yet.
    :param seed: Seed of the batch order, random starts and fixed-AE draws.
    :param verbose: Progress bars.
    """

    def __init__(
        self,
        classifier: "PyTorchClassifier",
        denoiser: IDFRDenoiser,
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
    ) -> None:
        check_pytorch_classifier(classifier)
        super().__init__(classifier)
        self.target, self.denoiser, self.restorer = classifier, denoiser, restorer
        self.eps, self.attack, self.max_iter = float(eps), attack, int(max_iter)
        self.eps_step = float(eps_step) if eps_step is not None else 2.5 * self.eps / max(1, self.max_iter)
        self.eps_warmup, self.trades_beta = float(eps_warmup), float(trades_beta)
        self.trades_reference, self.adversarial_weight = trades_reference, float(adversarial_weight)
        self.clean_weight, self.fixed_weight = float(clean_weight), float(fixed_weight)
        self.identity_weight = denoiser.identity_weight if identity_weight is None else float(identity_weight)
        self.learning_rate = denoiser.learning_rate / 10 if learning_rate is None else float(learning_rate)
        self.nb_epochs = int(nb_epochs)
        self.batch_size = denoiser.batch_size if batch_size is None else int(batch_size)
        self.train_restorer, self.seed, self.verbose = bool(train_restorer), seed, bool(verbose)
        self.ema_decay, self.awp_gamma, self.keep_start = float(ema_decay), float(awp_gamma), bool(keep_start)
        self.recipe: Optional[str] = None  # the ADAPTIVE_RECIPES name when built by from_recipe
        self._check_params()
        self._head_classifier = defend(classifier, None, restorer) if restorer is not None else classifier
        self._classifier = classifier
        self.history: List[Dict[str, float]] = []
        self.resumed_seconds = 0.0  # fit seconds of the cut-off parts of the last fit, when it resumed a checkpoint

    def _check_params(self) -> None:
        if not isinstance(self.denoiser, IDFRDenoiser):
            raise TypeError(f"denoiser must be an IDFRDenoiser, got {type(self.denoiser).__name__}.")
        if self.restorer is not None and not isinstance(self.restorer, FeatureRestorer):
            raise TypeError(f"restorer must be a FeatureRestorer or None, got {type(self.restorer).__name__}.")
        if self.restorer is not None and not self.restorer.is_fitted:
            raise ValueError("the restorer must be fitted (Algorithm 2) before adaptive training goes through it.")
        if self.train_restorer and self.restorer is None:
            raise ValueError("train_restorer=True needs a restorer.")
        if not (isinstance(self.attack, str) and self.attack in ADAPTIVE_ATTACKS) and not callable(self.attack):
            raise ValueError(f"attack must be one of {ADAPTIVE_ATTACKS} or a callable building an ART attack on the "
                             f"defended classifier, got {self.attack!r}.")
        clip = self.denoiser.clip_values
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
        self.denoiser.check_input(x)
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
        self.denoiser.mark_fitted(info)
        if self.train_restorer:
            self.restorer.mark_fitted({**self.restorer.training_info, "adaptive": info})
        self._classifier = defend(self.target, self.denoiser, self.restorer)

    def get_classifier(self) -> "PyTorchClassifier":
        """The defended classifier (the undefended target until :meth:`fit` has run)."""
        return self._classifier

    def training_info(self, nb_epochs: int, n: int, with_fixed: bool, seconds: float) -> Dict[str, Any]:
        """What the checkpoint records about this run."""
        attack = self.attack if isinstance(self.attack, str) else getattr(self.attack, "__name__", "art_attack")
        return {"algorithm": "adaptive", "in_paper": False, "init": self.denoiser.training_info or None,
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
                "seconds": round(seconds, 1)}

    def _fingerprint(self, x, y_idx, fixed, nb_epochs: int, validation_data) -> Dict[str, Any]:
        """What a resume file must match to be this run's: settings, seed, data, fixed AEs, validation data, start."""
        info = self.training_info(nb_epochs, len(x), fixed is not None, 0.0)
        info.pop("seconds")
        for key, default in (("trades_reference", "target"), ("adversarial_weight", 1.0)):  # newer than resume files:
            if info[key] == default:  # at their defaults they leave a file written before them valid
                info.pop(key)
        trained = [self.denoiser.network] + ([self.restorer.network] if self.train_restorer else [])
        val = () if validation_data is None else (np.asarray(validation_data[0]), np.asarray(validation_data[1]))
        return {**info, "seed": self.seed, "world_size": ddp.world_size(), "data": digest(x, y_idx),
                "fixed_aes": digest(fixed) if fixed is not None else None, "validation": digest(*val),
                "start_weights": digest(*trained)}

    def _fixed_aes(self, x, y_idx, attacks, x_fixed) -> Optional[torch.Tensor]:
        """Algorithm 1's fixed AEs, (k, n, ...): crafted once on the bare target, plus ``x_fixed``."""
        onehot = np.eye(self.target.nb_classes, dtype=np.float32)[y_idx]
        sets = craft(list(attacks), x, onehot, "crafting fixed AEs", self.verbose)
        if x_fixed is not None:
            self.denoiser.check_input(x_fixed)
            if len(x_fixed) % len(x):
                raise ValueError(f"x_fixed must hold k AEs per image of x (a multiple of {len(x)}), got "
                                 f"{len(x_fixed)}.")
            sets += list(np.asarray(x_fixed, dtype=np.float32).reshape(-1, *np.shape(x)))
        return torch.as_tensor(np.stack(sets)) if sets else None


class _AdaptiveRun:
    """One adaptive training run: the inner attack, the loss, the epochs, the best-epoch choice."""

    def __init__(self, trainer: AdaptiveDenoiserTrainer, fixed: Optional[torch.Tensor]) -> None:
        self.t, self.den, self.fixed = trainer, trainer.denoiser, fixed
        self.clf = trainer._head_classifier  # the target, with the FR hooked in when there is one
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
        x_star = self.den.denoise_nchw(self.to_nchw(x).to(self.den.device), fused=fused)
        return target_logits(self.clf, self.to_model(x_star).to(self.clf.device), skip=self.skip)

    def inner_attack(self, x: torch.Tensor, y: torch.Tensor, eps: float,
                     noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The AEs of this batch through the current defence (ID weights frozen in eval mode while crafting)."""
        t = self.t
        if callable(t.attack):
            return self._art_attack(x, y, eps)
        ref = self.clean_reference(x) if t.trades_beta > 0 and t.trades_reference == "defended" else None
        if t.attack == "fgsm_rs":
            return self.pgd(x, y, eps, steps=1, step=1.25 * eps, noise=noise, reference=ref)
        if t.attack == "n_fgsm":  # de Jorge et al. 2022: noise of radius 2ε, step ε, no projection to the ε-ball
            return self.pgd(x, y, 3 * eps, steps=1, step=eps, noise=noise, start=2 * eps, reference=ref)
        return self.pgd(x, y, eps, steps=t.max_iter, step=t.eps_step * eps / t.eps, noise=noise, reference=ref)

    def clean_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The defended classifier's class probabilities on the clean batch (TRADES' inner reference), no gradient."""
        with torch.no_grad():
            return F.softmax(self.logits(x), dim=1)

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
            logits = self.logits(x_adv)
            loss = (F.cross_entropy(logits, y.to(self.clf.device)) if reference is None else
                    F.kl_div(F.log_softmax(logits, dim=1), reference, reduction="batchmean"))
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = x_adv.detach() + step * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(lo, hi)
        return x_adv.detach()

    def _art_attack(self, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
        own = list(self.bare.preprocessing_defences or [])
        attack = self.t.attack(clone_classifier(self.clf, preprocessing_defences=[self.den, *own]))
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
        x_nchw = self.to_nchw(x_all).to(self.den.device)
        # one pass (one BN batch), train mode; distributed: through the DDP wrapper
        x_star = self.den.denoise_nchw(x_nchw, batch_size=len(x_nchw), network=self.ddp_net)
        logits = target_logits(self.clf, self.to_model(x_star).to(dev), skip=self.skip)
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
        params = list(den.network.parameters()) + (list(t.restorer.network.parameters()) if t.train_restorer else [])
        self.optimizer = torch.optim.Adam(params, lr=t.learning_rate)
        steps = max(1, nb_epochs * math.ceil(len(x) / t.batch_size))
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=t.learning_rate,
                                                             total_steps=steps, pct_start=0.15)
        x_t, y_t = torch.as_tensor(x), torch.as_tensor(y_idx)
        self.best = BestEpoch()
        modules = [self.bare.model] + ([] if t.train_restorer or t.restorer is None else [t.restorer.network])
        trained = [den.network] + ([t.restorer.network] if t.train_restorer else [])
        kept = nn.ModuleList(trained)  # what the best epoch keeps: the ID, and the FR when it is trained with it
        self.ddp_net = ddp.wrap_ddp(den.network)  # distributed: DDP; single process: the U-Net itself
        self.kept, self.ema = kept, _weight_average(kept, t.ema_decay)  # ema: None without ema_decay
        self.resume, self.checkpoint_every, self.history_from = resume, checkpoint_every, len(t.history)
        self.started = time.perf_counter()
        with contextlib.ExitStack() as stack:
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
                logger.info("adaptive ID epoch %d: %s", epoch + 1, stats)
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
        self.den.network.train(training)
        if self.t.train_restorer:
            self.t.restorer.network.train(training)

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
                                desc=f"adaptive ID epoch {epoch + 1}", leave=False,
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
        if self.t.train_restorer:  # distributed: the FR runs in the target's forward hook, outside DDP
            ddp.average_gradients(self.t.restorer.network)

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
