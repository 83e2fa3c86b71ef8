"""
The defences compared by the evaluation suite, each as its own ART ``PyTorchClassifier`` around the same target.

ART cannot mix NumPy and PyTorch preprocessing defences in one classifier (``NotImplementedError``, ART #1888), and
each baseline must be evaluated alone anyway, so every defence gets its own classifier:

=================== ============================================================ ===================================
key                 classifier                                                   white-box gradient
=================== ============================================================ ===================================
none                the bare target                                              exact
id                  :func:`art_idfr.defend` (target, ID)                         exact, through the ID (autograd)
idfr                :func:`art_idfr.defend` (target, ID, FR)                     exact, through ID and FR
idfr_adaptive       :func:`art_idfr.defend` (adaptive ID, FR; not in paper)      exact, through ID and FR
idfr_inner (opt-in) :func:`art_idfr.defend` (adaptive ID, FR, ``inner=``          exact, through ID, the inner parts
                    restorers inside the frozen target; not in paper)            and FR
feature_squeezing   ART ``FeatureSqueezing(bit_depth)``                          BPDA (identity), ART default
jpeg25/50/75        ART ``JpegCompression(quality, channels_first=True)``        BPDA (identity), ART default
tvm                 ART ``TotalVarMin`` (channels-first adapter)                 BPDA (identity) + EOT (randomised)
spatial_smoothing   ART ``SpatialSmoothing(window, channels_first=True)``        BPDA (identity), ART default
fast_at             a retrained copy of the target (``AdversarialTrainerFBF``)   exact (a different model)
comdefend (opt-in)  :class:`~art_idfr.experiments.baselines.ComDefend`           BPDA straight-through on the code's
                                                                                 binarisation, autograd elsewhere
nrp (opt-in)        :class:`~art_idfr.experiments.baselines.NRP`                 exact, through the purifier
adp (opt-in)        :class:`~art_idfr.experiments.baselines.ADP` (randomised)    exact per draw + EOT (eot_samples)
soap (opt-in)       :class:`~art_idfr.experiments.baselines.SOAPModel` (the      BPDA identity through the
                    target architecture retrained with a rotation head)          purification, autograd elsewhere
=================== ============================================================ ===================================

``idfr_inner`` is opt-in too (never in a default defence list): the adaptive recipe with an
:class:`art_idfr.InnerRestorer` trained along (:func:`~art_idfr.experiments.evaluation.pipeline.fit_inner_adaptive`),
passed in as ``inner``. The four other opt-in keys are the paper's purification baselines (:mod:`art_idfr.experiments.baselines`), trained by the
run (:func:`~art_idfr.experiments.evaluation.pipeline.baselines.train_baselines`) and passed in as ``baselines``;
they are never in a default defence list.

Notes on ART 1.20's NumPy defences (read off their source):

* ``JpegCompression`` requires ``clip_values=(0, 1)`` or ``(0, 255)`` (minimum exactly 0); for ``(0, 1)`` it
  multiplies by 255 and casts to ``uint8`` (truncation, not rounding), compresses each image with PIL (mode ``L`` per
  channel for grey-scale, ``RGB`` for 3 channels) and divides by 255. ``channels_first`` defaults to ``False``: on
  NCHW data it must be ``True``, otherwise the last image axis is taken for channels and the result is garbage
  without any error.
* ``SpatialSmoothing`` also defaults to ``channels_first=False``.
* ``TotalVarMin`` has no ``channels_first`` argument and assumes NHWC (it loops over ``x.shape[2]`` of each image
  as channels); :class:`ChannelsFirstTotalVarMin` transposes around it. Its random pixel mask is drawn from
  ``np.random``: seed it for reproducible predictions.
* ``FeatureSqueezing`` is element-wise and layout-agnostic, but under NumPy 2 it returns ``float64`` for
  ``float32`` input (``np.rint(2**bit_depth - 1)`` is a float64 NumPy scalar, which NEP 50 no longer treats as
  "weak"), and ``PyTorchClassifier.predict`` then fails with "expected scalar type Double but found Float".
  :class:`Float32FeatureSqueezing` casts the output back to the input dtype.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from art.defences.preprocessor import FeatureSqueezing, JpegCompression, SpatialSmoothing, TotalVarMin
from art.estimators.classification import PyTorchClassifier
from torch import nn

from art_idfr.experiments.evaluation.config import EvalConfig
from art_idfr.experiments.evaluation.names import BASELINE_DEFENCES

logger = logging.getLogger(__name__)

__all__ = [
    "DefendedClassifier",
    "EOTPyTorchClassifier",
    "ChannelsFirstTotalVarMin",
    "Float32FeatureSqueezing",
    "wrap_model",
    "build_defences",
    "defence_label",
    "GRADIENT_EXACT",
    "GRADIENT_BPDA",
]

GRADIENT_EXACT = "exact"
GRADIENT_THROUGH = "exact (autograd through the defence)"
GRADIENT_BPDA = "BPDA identity (ART estimate_gradient)"
#: white-box gradients of the opt-in baselines (ADP's: GRADIENT_THROUGH + EOT, see _baseline_defence)
BASELINE_GRADIENTS = {
    "comdefend": "BPDA straight-through on ComDefend's binarisation (autograd elsewhere)",
    "nrp": GRADIENT_THROUGH,
    "soap": "BPDA identity through SOAP's purification (autograd through the classifier)",
}


def gradient_bpda_eot(samples: int) -> str:
    """How the white-box attack differentiates a randomised NumPy defence."""
    return GRADIENT_BPDA if samples <= 1 else f"{GRADIENT_BPDA} + EOT over {samples} random draws"


#: the attacks (of :data:`~art_idfr.experiments.attacks.ATTACK_NAMES`) that run Square on the defended classifier
SQUARE_ATTACKS = ("square", "autoattack")


@dataclass
class DefendedClassifier:
    """
    One column of the comparison: a defence key, its display label, the ART classifier, and how an adaptive attacker
    gets gradients through it.
    """

    key: str
    label: str
    classifier: PyTorchClassifier
    gradient: str
    description: str = ""
    randomised: bool = False
    #: the models and defence components it is built from (their weights identify it for the cell cache,
    #: :mod:`~art_idfr.experiments.evaluation.cells`; empty: never cached)
    components: Tuple[Any, ...] = ()

    def square_settings(self, attack: str) -> Dict[str, Any]:
        """The extra setting of ``attack`` against this defence when it runs Square (``square``, and AutoAttack's
        Square member): one estimator pass per iteration (:class:`~art_idfr.experiments.attacks.OnePassSquareAttack`,
        the same AEs as ART's) unless the defence is randomised (ART's ``SquareAttack`` then draws again at every
        repeated pass, as ART's users get it)."""
        return {"one_pass": True} if attack in SQUARE_ATTACKS and not self.randomised else {}


class EOTPyTorchClassifier(PyTorchClassifier):
    """
    A ``PyTorchClassifier`` whose ``loss_gradient`` and ``class_gradient`` are averaged over ``eot_samples`` calls:
    Expectation over Transformation (Athalye et al. 2018) for a randomised preprocessing defence such as
    TotalVarMin, whose random pixel mask is redrawn on every call. ``predict`` is unchanged (one draw, as deployed).
    Any ART gradient attack run on it (FGSM, BIM, PGD) gets the averaged gradient; the CW-eps attack of
    :mod:`art_idfr.experiments.attacks` reads ``eot_samples`` and averages its loss over as many forward passes.
    """

    def __init__(self, *args, eot_samples: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(eot_samples, bool) or not isinstance(eot_samples, int) or eot_samples < 1:
            raise ValueError(f"`eot_samples` must be a positive int, got {eot_samples!r}.")
        self.eot_samples = eot_samples

    def _expectation(self, gradient, *args, **kwargs) -> np.ndarray:
        draws = [gradient(*args, **kwargs) for _ in range(self.eot_samples)]
        if isinstance(draws[0], torch.Tensor):  # ART's PyTorch attacks pass tensors (all defences PyTorch: ADP)
            return torch.stack(draws).mean(dim=0)
        return np.mean(draws, axis=0)

    def loss_gradient(self, x, y, training_mode: bool = False, **kwargs):  # type: ignore[override]
        return self._expectation(super().loss_gradient, x, y, training_mode=training_mode, **kwargs)

    def class_gradient(self, x, label=None, training_mode: bool = False, **kwargs):  # type: ignore[override]
        return self._expectation(super().class_gradient, x, label=label, training_mode=training_mode, **kwargs)


class Float32FeatureSqueezing(FeatureSqueezing):
    """ART ``FeatureSqueezing`` returning the input's dtype (ART 1.20 + NumPy 2 return float64; see module notes)."""

    def __call__(self, x: np.ndarray, y=None):
        out, y = super().__call__(x, y)
        return np.asarray(out, dtype=x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32), y


class ChannelsFirstTotalVarMin(TotalVarMin):
    """
    ART ``TotalVarMin`` for channels-first (NCHW) data: ART 1.20's implementation assumes NHWC and has no
    ``channels_first`` flag. The gradient estimate stays ART's identity (BPDA).

    ``n_jobs`` > 1 spreads ART's per-image solver (one small SciPy L-BFGS-B problem per image and channel, which
    never uses a second core) over that many worker processes. The random pixel masks are drawn in this process,
    from ``np.random`` in ART's order, and each image is solved by ART's own ``_minimize``, so the output is
    identical to ``n_jobs=1``.
    """

    params = TotalVarMin.params + ["channels_first", "n_jobs"]

    def __init__(self, *args, channels_first: bool = True, n_jobs: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.channels_first = bool(channels_first)
        self.n_jobs = int(n_jobs)
        if self.n_jobs < 1:
            raise ValueError(f"n_jobs must be >= 1, got {n_jobs!r}.")

    def __call__(self, x: np.ndarray, y=None):
        if x.ndim != 4:
            return super().__call__(x, y)
        nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if self.channels_first else x
        out = self._minimize_batch(nhwc) if self.n_jobs > 1 and len(x) >= 2 * self.n_jobs else \
            super().__call__(nhwc)[0]
        return (np.ascontiguousarray(out.transpose(0, 3, 1, 2)) if self.channels_first else out), y

    def _minimize_batch(self, x: np.ndarray) -> np.ndarray:
        """ART's ``TotalVarMin.__call__`` for an NHWC batch, with the images solved in ``n_jobs`` processes."""
        masks = np.stack([(np.random.rand(*x_i.shape) < self.prob).astype("int") for x_i in x])  # as ART draws
        args = (self.norm, self.lamb, self.solver, self.max_iter)
        pool = _tvm_pool(self.n_jobs)
        out = None
        if pool is not None:
            from concurrent.futures.process import BrokenProcessPool

            try:
                futures = [pool.submit(_tvm_minimize_chunk, x[idx], masks[idx], *args)
                           for idx in np.array_split(np.arange(len(x)), self.n_jobs)]
                out = np.concatenate([f.result() for f in futures])
            except BrokenProcessPool as err:  # pragma: no cover - a worker died (e.g. out of memory)
                logger.warning("TotalVarMin worker processes failed (%s); solving in this process.", err)
                _TVM_POOLS[self.n_jobs] = None
        if out is None:  # same masks, same solver: the same result, one process
            out = _tvm_minimize_chunk(x, masks, *args)
        out = out.astype(np.float32, copy=False)
        if self.clip_values is not None:
            np.clip(out, self.clip_values[0], self.clip_values[1], out=out)
        return out


_TVM_POOLS: Dict[int, Optional[object]] = {}


def _tvm_pool(n_jobs: int):
    """
    One lazily started pool of ``n_jobs`` forked worker processes, shut down at exit; ``None`` where forking is not
    the safe choice (not Linux). Fork, not spawn: spawn re-imports the caller's ``__main__``, which breaks scripts
    without an ``if __name__ == "__main__":`` guard; the workers only run NumPy/SciPy, never torch.
    """
    if n_jobs not in _TVM_POOLS:
        import multiprocessing
        import sys

        if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
            logger.info("TotalVarMin n_jobs=%d: no fork on %s, solving in one process.", n_jobs, sys.platform)
            _TVM_POOLS[n_jobs] = None
        else:
            import atexit
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(max_workers=n_jobs, mp_context=multiprocessing.get_context("fork"),
                                       initializer=_tvm_worker_init)
            atexit.register(pool.shutdown, wait=False, cancel_futures=True)
            _TVM_POOLS[n_jobs] = pool
    return _TVM_POOLS[n_jobs]


_WORKER_LIMITS: list = []  # in a worker process: its threadpoolctl limit, kept alive


def _tvm_worker_init() -> None:
    from threadpoolctl import threadpool_limits

    _WORKER_LIMITS.append(threadpool_limits(limits=1))  # one BLAS thread per worker: the problems are tiny


def _tvm_minimize_chunk(x: np.ndarray, masks: np.ndarray, norm: int, lamb: float, solver: str,
                        max_iter: int) -> np.ndarray:
    """ART's ``TotalVarMin._minimize`` on each NHWC image of ``x`` with its mask (runs in a worker process)."""
    tvm = TotalVarMin(norm=norm, lamb=lamb, solver=solver, max_iter=max_iter)
    out = x.copy()
    for i in range(len(x)):
        out[i] = tvm._minimize(x[i], masks[i])
    return out


def wrap_model(
    model: nn.Module,
    input_shape: Tuple[int, int, int],
    nb_classes: int,
    device_type: str = "gpu",
    preprocessing_defences: Optional[Sequence] = None,
    optimizer: Optional[torch.optim.Optimizer] = None,
    eot_samples: int = 1,
) -> PyTorchClassifier:
    """
    An ART ``PyTorchClassifier`` for a model taking NCHW images in [0, 1] (clip values (0, 1), CE loss); with
    ``eot_samples`` > 1 an :class:`EOTPyTorchClassifier` (gradients averaged over that many calls).
    """
    model.eval()
    extra = {"eot_samples": int(eot_samples)} if eot_samples != 1 else {}
    return (EOTPyTorchClassifier if extra else PyTorchClassifier)(
        model=model,
        loss=nn.CrossEntropyLoss(),
        optimizer=optimizer,
        input_shape=tuple(input_shape),
        nb_classes=int(nb_classes),
        clip_values=(0.0, 1.0),
        channels_first=True,
        preprocessing_defences=list(preprocessing_defences) if preprocessing_defences else None,
        device_type=device_type,
        **extra,
    )


def defence_label(key: str, config: EvalConfig) -> str:
    """Row label of a defence in the report tables."""
    if key.startswith("jpeg"):
        return f"JPEG q={int(key[4:])}"
    return {
        "none": "none",
        "id": "ID",
        "idfr": "ID+FR",
        "idfr_adaptive": "ID+FR adaptive (not in paper)",
        "idfr_inner": "ID+FR+inner adaptive (not in paper)",
        "feature_squeezing": f"FeatureSqueezing ({config.fs_bit_depth}-bit)",
        "tvm": f"TotalVarMin (λ={config.tvm_lamb:g})",
        "spatial_smoothing": f"SpatialSmoothing ({config.smoothing_window}x{config.smoothing_window})",
        "fast_at": f"Fast AT (FBF, eps={_eps_text(config.fast_at_eps)})",
        "comdefend": "ComDefend",
        "nrp": "NRP",
        "adp": f"ADP (EOT {int(config.eot_samples)})",
        "soap": "SOAP-RP",
    }[key]


def _eps_text(eps: Optional[float]) -> str:
    from art_idfr.experiments.evaluation.config import eps_label

    return "?" if eps is None else eps_label(eps)


def adaptive_description(restorer) -> str:
    """The report's description of the ``idfr_adaptive`` defence: how its ID and the FR behind it were trained."""
    desc = "IDFRDenoiser adaptively trained end to end (AdaptiveDenoiserTrainer, not in the paper)"
    if restorer is None:
        return desc
    if "adaptive" in restorer.training_info:  # AdaptiveDenoiserTrainer(train_restorer=True) records it there
        return desc + " + FeatureRestorer hook, trained jointly with the ID"
    return desc + " + FeatureRestorer hook (Algorithm 2, kept frozen)"


def inner_description(denoiser, restorer, inner) -> str:
    """The report's description of the ``idfr_inner`` defence: its inner restorers (kind, rank / width, parameters)
    and how the ID and the FR around them were trained."""
    size = f"rank {inner.rank}" if inner.kind == "lora" else f"width {inner.width:g}"
    desc = (f"InnerRestorer inside the frozen target ({inner.kind}, {size}, {len(inner.points)} places, "
            f"{inner.num_parameters():,} parameters), adaptively trained end to end (AdaptiveDenoiserTrainer, not "
            "in the paper)")
    if denoiser is not None:
        trained = denoiser.training_info.get("algorithm") == "adaptive"
        desc += " + IDFRDenoiser" + (", trained jointly" if trained else " (Algorithm 1, kept frozen)")
    if restorer is not None:
        desc += " + FeatureRestorer hook" + (", trained jointly" if "adaptive" in restorer.training_info
                                             else " (Algorithm 2, kept frozen)")
    return desc


def inner_label(denoiser, restorer) -> str:
    """Row label of ``idfr_inner`` for the parts it has (``ID+FR+inner adaptive (not in paper)`` with both)."""
    parts = [p for p, c in (("ID", denoiser), ("FR", restorer)) if c is not None]
    return "+".join([*parts, "inner"]) + " adaptive (not in paper)"


def build_defences(
    config: EvalConfig,
    target: PyTorchClassifier,
    denoiser=None,
    restorer=None,
    fast_at_model: Optional[nn.Module] = None,
    adaptive: Tuple[Any, Any] = (None, None),
    baselines: Optional[Dict[str, Any]] = None,
    inner: Tuple[Any, Any, Any] = (None, None, None),
) -> Dict[str, DefendedClassifier]:
    """
    One :class:`DefendedClassifier` per key of ``config.defences`` (config must be :meth:`EvalConfig.resolved`).

    :param target: The undefended target classifier.
    :param denoiser: Fitted :class:`~art_idfr.IDFRDenoiser` (needed for ``id`` / ``idfr``).
    :param restorer: Fitted :class:`~art_idfr.FeatureRestorer` (needed for ``idfr``).
    :param fast_at_model: The adversarially trained copy of the target (needed for ``fast_at``).
    :param adaptive: ``(denoiser, restorer)`` of the ``idfr_adaptive`` defence: the adaptively trained ID (not in the
        paper) and the FR behind it (``None``: ID only).
    :param baselines: ``{key: fitted defence}`` of the opt-in baselines ``comdefend`` / ``nrp`` / ``adp`` (their
        preprocessors) and ``soap`` (its ``SOAPModel``), from
        :func:`~art_idfr.experiments.evaluation.pipeline.baselines.train_baselines`.
    :param inner: ``(denoiser, restorer, inner restorers)`` of the opt-in ``idfr_inner`` defence (not in the paper):
        the :class:`~art_idfr.InnerRestorer` fitted inside this target's model, with the ID in front and the FR
        behind it (either may be ``None``), from
        :func:`~art_idfr.experiments.evaluation.pipeline.adaptive.fit_inner_adaptive`.
    :raises ValueError: a requested defence lacks its component.
    """
    from art_idfr.defended import defend

    shape, classes, dev = target.input_shape, target.nb_classes, target.device_type
    out: Dict[str, DefendedClassifier] = {}
    for key in config.defences:
        label = defence_label(key, config)
        if key == "none":
            out[key] = DefendedClassifier(key, label, target, GRADIENT_EXACT, "undefended target",
                                          components=(target.model,))
        elif key in ("id", "idfr"):
            if denoiser is None or (key == "idfr" and restorer is None):
                raise ValueError(
                    f"defence {key!r} needs a fitted IDFRDenoiser{' and FeatureRestorer' if key == 'idfr' else ''}; "
                    "fit them first (art-idfr fit) or leave the defence out."
                )
            parts = (denoiser, restorer) if key == "idfr" else (denoiser,)
            clf = defend(target, *parts)
            desc = "IDFRDenoiser as ART preprocessing defence" + (" + FeatureRestorer hook" if key == "idfr" else "")
            out[key] = DefendedClassifier(key, label, clf, GRADIENT_THROUGH, desc, components=(target.model, *parts))
        elif key == "idfr_adaptive":
            if adaptive[0] is None:
                raise ValueError("defence 'idfr_adaptive' needs the adaptively trained IDFRDenoiser (fit_adaptive / "
                                 "AdaptiveDenoiserTrainer); fit it first or leave the defence out.")
            clf = defend(target, denoiser=adaptive[0], restorer=adaptive[1])
            label = label if adaptive[1] is not None else "ID adaptive (not in paper)"
            out[key] = DefendedClassifier(key, label, clf, GRADIENT_THROUGH, adaptive_description(adaptive[1]),
                                          components=(target.model, *(c for c in adaptive if c is not None)))
        elif key == "idfr_inner":
            den, fr, parts = inner
            if parts is None:
                raise ValueError("defence 'idfr_inner' needs the restorers fitted inside the target (InnerRestorer, "
                                 "pipeline.fit_inner_adaptive); fit them first or leave the defence out.")
            clf = defend(target, den, fr, inner=parts)  # ValueError if they were fitted for another target
            out[key] = DefendedClassifier(key, inner_label(den, fr), clf, GRADIENT_THROUGH,
                                          inner_description(den, fr, parts),
                                          components=(target.model, *(c for c in inner if c is not None)))
        elif key == "fast_at":
            if fast_at_model is None:
                raise ValueError("defence 'fast_at' needs the adversarially trained model; train it or leave it out.")
            clf = wrap_model(fast_at_model, shape, classes, dev)
            out[key] = DefendedClassifier(key, label, clf, GRADIENT_EXACT,
                                          f"AdversarialTrainerFBFPyTorch, eps={_eps_text(config.fast_at_eps)}, "
                                          f"{config.fast_at_epochs} epochs", components=(fast_at_model,))
        elif key in BASELINE_DEFENCES:
            out[key] = _baseline_defence(key, label, config, target, (baselines or {}).get(key))
        else:
            pre, desc, rnd = _numpy_defence(key, config)
            eot = int(config.eot_samples) if rnd else 1
            clf = wrap_model(target.model, shape, classes, dev, preprocessing_defences=[pre], eot_samples=eot)
            out[key] = DefendedClassifier(key, label, clf, gradient_bpda_eot(eot), desc, randomised=rnd,
                                          components=(target.model, pre))
    return out


def _baseline_defence(key: str, label: str, config: EvalConfig, target: PyTorchClassifier,
                      defence: Any) -> DefendedClassifier:
    """One of the paper's purification baselines: its ART classifier, white-box gradient and description."""
    if defence is None:
        raise ValueError(f"defence {key!r} needs its fitted baseline (pipeline.train_baselines); train it or leave "
                         "it out.")
    shape, classes, dev = target.input_shape, target.nb_classes, target.device_type
    desc = {"comdefend": "ComDefend (Jia et al. 2019): ComCNN -> binary code -> RecCNN, trained on clean images",
            "nrp": "NRP (Naseer et al. 2020): purifier trained by self-supervised perturbations of the target's "
                   "embedding (no GAN term)",
            "adp": "ADP (Yoon et al. 2021): Gaussian noise, then deterministic score steps (DSM score network); "
                   "randomised, one draw per prediction",
            "soap": "SOAP-RP (Shi et al. 2021): the target architecture retrained with a rotation head; test-time "
                    "PGD on the rotation loss, then classification"}[key]
    desc += f"; {defence.inference_passes}"  # (its fit time is in the run's metadata: it would break the cell cache)
    if key == "soap":  # an estimator of its own: the retrained network, purifying in eval mode
        clf = wrap_model(defence, shape, classes, dev)
        return DefendedClassifier(key, label, clf, BASELINE_GRADIENTS[key], desc, components=(defence,))
    eot = int(config.eot_samples) if key == "adp" else 1
    clf = wrap_model(target.model, shape, classes, dev, preprocessing_defences=[defence], eot_samples=eot)
    gradient = f"{GRADIENT_THROUGH} + EOT over {eot} random draws" if key == "adp" else BASELINE_GRADIENTS[key]
    return DefendedClassifier(key, label, clf, gradient, desc, randomised=key == "adp",
                              components=(target.model, defence))


def _numpy_defence(key: str, config: EvalConfig):
    clip = (0.0, 1.0)
    if key == "feature_squeezing":
        return (Float32FeatureSqueezing(clip_values=clip, bit_depth=int(config.fs_bit_depth)),
                f"ART FeatureSqueezing(bit_depth={config.fs_bit_depth}), output cast to float32", False)
    if key.startswith("jpeg"):
        q = int(key[4:])
        return (JpegCompression(clip_values=clip, quality=q, channels_first=True),
                f"ART JpegCompression(quality={q}, channels_first=True)", False)
    if key == "tvm":
        return (ChannelsFirstTotalVarMin(prob=config.tvm_prob, lamb=config.tvm_lamb, max_iter=config.tvm_max_iter,
                                         clip_values=clip, channels_first=True, n_jobs=torch.get_num_threads()),
                f"ART TotalVarMin(prob={config.tvm_prob}, lamb={config.tvm_lamb}, max_iter={config.tvm_max_iter}), "
                "NCHW adapter", True)
    if key == "spatial_smoothing":
        w = int(config.smoothing_window)
        return (SpatialSmoothing(window_size=w, channels_first=True, clip_values=clip),
                f"ART SpatialSmoothing(window_size={w}, channels_first=True)", False)
    raise ValueError(f"not a NumPy defence: {key!r}")  # pragma: no cover
