"""
The ``idfr_adaptive`` defence's fit (not in the paper): :func:`fit_adaptive` fine-tunes a copy of the Algorithm-1
ID with :class:`art_idfr.training.AdaptiveDenoiserTrainer`, in stages (the first fit, then each warm restart), each
cached under its settings and resumable from its resume file; :func:`load_adaptive_fit` reads the folder back
(``denoiser.pt``, ``adaptive.json``, ``restorer.pt`` when the FR was trained too).

The opt-in ``idfr_inner`` defence (not in the paper) is the same fit with restorers inside the frozen target
(:class:`art_idfr.InnerRestorer` of ``config.inner``, built on the target and trained along):
:func:`fit_inner_adaptive` runs the same stages with them threaded through (``inner.pt`` saved beside
``denoiser.pt``, the inner settings and the target's weights in the cache key; by convention into
``<IDFR folder>/``:data:`INNER_DIR`), :func:`load_inner_adaptive_fit` reads such a folder back.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Dict, Optional

from torch import nn

from art_idfr._utils import json_clean, seeded
from art_idfr.experiments.evaluation.config import EvalConfig
from art_idfr.experiments.evaluation.pipeline.idfr import DENOISER_FILE, RESTORER_FILE, _idfr_attacks, _knob_settings
from art_idfr.experiments.evaluation.pipeline.prepare import PreparedData
from art_idfr.training import distributed as ddp

logger = logging.getLogger(__name__)

#: metadata of an adaptive fit (``fit_adaptive``)
ADAPTIVE_META = "adaptive.json"
#: an adaptive fit in progress writes its resume file ``<this>-<settings digest>.pt`` into its folder
ADAPTIVE_RESUME = "adaptive_resume"
#: the inner restorers of an ``idfr_inner`` fit, beside its ``denoiser.pt``
INNER_FILE = "inner.pt"
#: the ``idfr_inner`` fit's folder inside the IDFR folder (``idfr_adaptive``'s is ``adaptive``)
INNER_DIR = "inner_adaptive"
#: seed of the inner restorers' initialisation: ``seed +`` this (LoRA's ``A`` is random, ``B`` zero)
INNER_SEED_OFFSET = 7500


def fit_adaptive(
    config: EvalConfig,
    data: PreparedData,
    target_model: nn.Module,
    denoiser,
    restorer=None,
    out_dir: Optional[str] = None,
    reuse: bool = True,
    verbose: bool = True,
):
    """
    The ``idfr_adaptive`` defence (not in the paper): a copy of the Algorithm-1 ``denoiser`` fine-tuned by
    :class:`art_idfr.training.AdaptiveDenoiserTrainer` with ``config.adaptive`` — online AEs through the ID (+ the FR,
    when ``restorer`` is given) + the frozen target, Algorithm 1's FGSM/BIM AEs of the bare target in the mix at
    ``config.adaptive.fixed_weight`` (0: none) —
    on ``config.adaptive_fit_n`` training images (default ``fit_n``), the best epoch chosen on validation images.
    Each of ``config.adaptive_restarts`` then continues from the weights reached with a fresh one-cycle run of that
    many epochs (a warm restart), at the budget ``config.adaptive_stage_eps()`` gives it (an ε curriculum with
    ``config.adaptive_curriculum_eps``; the last run trains at ``config.adaptive.eps``, and a run at a curriculum
    budget hands its best trained epoch on, never its start); every run is a cached stage of its own
    (``out_dir/stage<k>``, the last in ``out_dir``). Saves ``denoiser.pt`` + ``adaptive.json`` into ``out_dir``;
    with ``reuse`` a fit with the same settings is loaded instead. ``config`` must be :meth:`EvalConfig.resolved`. Returns ``(denoiser, restorer,
    metadata)``: the restorer is the one given, or with ``config.adaptive.train_restorer`` a copy trained alongside
    (``restorer.pt``).
    """
    den, fr, _, meta = _fit_stages(config, data, target_model, denoiser, restorer, None, out_dir, reuse, verbose)
    return den, fr, meta


def fit_inner_adaptive(
    config: EvalConfig,
    data: PreparedData,
    target_model: nn.Module,
    denoiser,
    restorer=None,
    out_dir: Optional[str] = None,
    reuse: bool = True,
    verbose: bool = True,
):
    """
    The opt-in ``idfr_inner`` defence (not in the paper): :func:`fit_adaptive`'s recipe (``config.adaptive``, its
    stages, caches and resume files) with restorers inside the frozen target — an :class:`art_idfr.InnerRestorer`
    of ``config.inner`` built on ``target_model`` (identity at the start, seeded) — in every forward pass and
    trained along; the copy of the Algorithm-1 ``denoiser`` trains too unless ``config.adaptive.train_denoiser`` is
    false, the FR per ``config.adaptive.train_restorer``. The target's own tensors never change. Saves ``inner.pt``
    beside ``denoiser.pt`` + ``adaptive.json`` in ``out_dir`` (by convention ``<IDFR folder>/``:data:`INNER_DIR`);
    with ``reuse`` a fit with the same settings (inner knobs and the target's weights included) is loaded instead.
    Returns ``(denoiser, restorer, inner, metadata)``; ``metadata["inner"]`` records the inner parts' parameters,
    MACs per image and their fraction of the target's parameters.
    """
    inner = build_inner(config, data, target_model)
    if config.inner.alone:  # the inner restorers alone: no ID in front, no FR
        denoiser = restorer = None
    return _fit_stages(config, data, target_model, denoiser, restorer, inner, out_dir, reuse, verbose)


def build_inner(config: EvalConfig, data: PreparedData, target_model: nn.Module):
    """The unfitted :class:`art_idfr.InnerRestorer` of ``config.inner`` on ``target_model`` (seeded initialisation)."""
    from art_idfr.inner import InnerRestorer

    with seeded(config.seed + INNER_SEED_OFFSET):
        inner = InnerRestorer(data.input_shape, **config.inner.kwargs(), device_type=config.device_type)
        return inner.build(target_model)


def inner_summary(inner, target_model: nn.Module) -> Dict[str, Any]:
    """Size of ``inner``'s parts: kind, places, rank / width, parameters, MACs per image, fraction of the target's."""
    total = sum(p.numel() for p in target_model.parameters())
    params = inner.num_parameters()
    return {"kind": inner.kind, "layers": len(inner.points), **({"rank": inner.rank} if inner.kind == "lora" else
                                                                 {"width": inner.width}),
            **({"ranks": dict(inner.ranks)} if inner.ranks else {}),
            **({"norm_affine": True} if inner.norm_affine else {}),
            "parameters": int(params), "macs": int(inner.macs()), "target_parameters": int(total),
            "fraction_of_target": params / total if total else None}


def _fit_stages(config, data, target_model, denoiser, restorer, inner, out_dir, reuse, verbose):
    """The adaptive runs of :func:`fit_adaptive` (``inner=None``) / :func:`fit_inner_adaptive`: ``(denoiser,
    restorer, inner, metadata)``."""
    epochs = [config.adaptive.nb_epochs, *config.adaptive_restarts]
    budgets = config.adaptive_stage_eps()
    den, fr, metas = denoiser, restorer, []
    for stage, (nb_epochs, eps) in enumerate(zip(epochs, budgets)):
        last = stage == len(epochs) - 1
        folder = out_dir if out_dir is None or last else os.path.join(out_dir, f"stage{stage}")
        den, fr, inner, meta = _adaptive_stage(config, data, target_model, den, fr, folder, reuse, verbose, stage,
                                               nb_epochs, eps, inner)
        metas.append(meta)
    if len(metas) == 1:
        return den, fr, inner, metas[0]
    merged = {**metas[-1], "settings": {**metas[0]["settings"], "adaptive_restarts": list(config.adaptive_restarts),
                                        "adaptive_curriculum_eps": list(config.adaptive_curriculum_eps)},
              "history": [h for m in metas for h in m.get("history", [])],
              "fit_seconds": sum(m.get("fit_seconds", 0.0) for m in metas),
              "stages": [{"nb_epochs": n, "eps": e, "fit_seconds": m.get("fit_seconds")}
                         for n, e, m in zip(epochs, budgets, metas)],
              "stage_meta": metas[-1]}  # the last run's own record: its cache key
    if out_dir is not None and ddp.is_main_process():
        with open(os.path.join(out_dir, ADAPTIVE_META), "w") as f:
            json.dump(json_clean(merged), f, indent=2)
    return den, fr, inner, merged


def _adaptive_stage(config, data, target_model, denoiser, restorer, out_dir, reuse, verbose, stage, nb_epochs, eps,
                    inner=None):
    """One one-cycle adaptive run of ``nb_epochs`` at budget ``eps`` from ``denoiser`` (and ``restorer``, and the
    inner restorers ``inner``); stage 0 is the first fit. Returns ``(denoiser, restorer, inner, metadata)``."""
    import copy

    from art_idfr.experiments.data import stratified_subset_indices
    from art_idfr.experiments.evaluation.defences import wrap_model
    from art_idfr.training.adaptive import AdaptiveDenoiserTrainer

    settings = _adaptive_settings(config, denoiser, restorer, inner, target_model)
    curriculum = eps != config.adaptive.eps  # a curriculum stage: hands its training on, never its start
    if stage:  # a warm restart: keyed by the weights it starts from (in settings) and its own epochs and seed
        settings |= {"adaptive_nb_epochs": nb_epochs, "stage": stage}
    if curriculum:  # (the key of a stage at adaptive_eps is unchanged: earlier caches stay valid)
        settings |= {"adaptive_eps": eps}
    if out_dir is not None and reuse:
        cached = _cached_adaptive(out_dir, config, settings, restorer, target_model if inner is not None else None)
        if cached is not None:
            return cached
    t0 = time.perf_counter()
    n = config.adaptive_fit_n or config.fit_n or len(data.y_train)
    idx = stratified_subset_indices(data.y_train, min(n, len(data.y_train)), seed=config.seed + 1)
    target = wrap_model(target_model, data.input_shape, data.num_classes, config.device_type)
    den = copy.deepcopy(denoiser)
    fr = copy.deepcopy(restorer) if config.adaptive.train_restorer else restorer
    inner = copy.deepcopy(inner)  # the caller's (an earlier stage's) restorers stay as they are
    kwargs = config.adaptive.kwargs() | {"nb_epochs": nb_epochs, "eps": eps}
    kwargs["train_restorer"] = kwargs.get("train_restorer", False) and fr is not None  # (inner restorers alone: none)
    kwargs["batch_size"] = kwargs["batch_size"] or config.train.batch_size
    kwargs["keep_start"] = kwargs.get("keep_start", True) and not curriculum
    trainer = AdaptiveDenoiserTrainer(target, den, restorer=fr, seed=config.seed + stage, verbose=verbose,
                                      inner=inner, **kwargs)
    val = min(len(data.y_val), 500)
    resume = _adaptive_resume_file(out_dir, settings, reuse)
    with seeded(config.seed + 7000 + stage):
        trainer.fit(data.x_train[idx], data.y_train[idx], attacks=_idfr_attacks(config, [target]),
                    validation_data=(data.x_val[:val], data.y_val[:val]), checkpoint=resume)
    meta = {"settings": settings, "fit_n": int(len(idx)), "history": trainer.history,
            "training": _training_record(trainer), "fit_seconds": time.perf_counter() - t0 + trainer.resumed_seconds,
            **({"resumed_seconds": trainer.resumed_seconds} if trainer.resumed_seconds else {}),
            **({"inner": inner_summary(inner, target_model)} if inner is not None else {})}
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        if den is not None:
            den.save(os.path.join(out_dir, DENOISER_FILE))  # (distributed: rank 0 writes, every rank calls save)
        elif ddp.is_main_process() and os.path.isfile(os.path.join(out_dir, DENOISER_FILE)):
            os.remove(os.path.join(out_dir, DENOISER_FILE))  # inner restorers alone: an earlier fit's ID is not ours
        if inner is not None:
            inner.save(os.path.join(out_dir, INNER_FILE))  # (checkpoint.save: rank 0 writes, every rank calls it)
        if fr is not restorer:
            fr.save(os.path.join(out_dir, RESTORER_FILE))
        elif ddp.is_main_process() and os.path.isfile(os.path.join(out_dir, RESTORER_FILE)):
            os.remove(os.path.join(out_dir, RESTORER_FILE))  # an earlier joint fit's FR is not this fit's
        if ddp.is_main_process():
            with open(os.path.join(out_dir, ADAPTIVE_META), "w") as f:
                json.dump(json_clean(meta), f, indent=2)
    return den, fr, inner, meta


def _training_record(trainer) -> Dict[str, Any]:
    """How the fit trained, as the trained component's checkpoint records it: the ID's (as before), else the inner
    restorers', else the FR's adaptive record."""
    if trainer.train_denoiser:
        return trainer.denoiser.training_info
    if trainer.train_inner:
        return trainer.inner.training_info
    return trainer.restorer.training_info.get("adaptive", {})


def _adaptive_resume_file(out_dir: Optional[str], settings: Dict[str, Any], reuse: bool) -> Optional[str]:
    """
    Where an adaptive fit with ``settings`` keeps its resume file in ``out_dir`` (None without a folder): one file per
    setting, so a cut fit resumes only into the same settings. ``reuse=False`` deletes it: a fresh fit.
    """
    from art_idfr.training.resume import digest

    if out_dir is None:
        return None
    key = digest(json.dumps(json_clean(settings), sort_keys=True))[:16]
    path = os.path.join(out_dir, f"{ADAPTIVE_RESUME}-{key}.pt")
    if not reuse and ddp.is_main_process() and os.path.isfile(path):
        os.remove(path)
    ddp.barrier()  # distributed: no rank looks for the file before rank 0 has removed it
    return path


def _adaptive_settings(config: EvalConfig, denoiser, restorer, inner=None, target_model=None) -> Dict[str, Any]:
    """The cache key of an adaptive fit: its knobs, data, and the weights it starts from; with inner restorers, their
    knobs, their starting weights and the target's weights too (without, the key is the one it always was)."""
    from art_idfr.experiments.evaluation.resume import weights_digest

    settings = {**_knob_settings(config.adaptive), "adaptive_fit_n": config.adaptive_fit_n, "fit_n": config.fit_n,
                "idfr_attacks": list(config.idfr_attacks), "idfr_eps": list(config.idfr_eps or []),
                "seed": config.seed, "batch_size": config.train.batch_size,
                "start": weights_digest(denoiser.network) if denoiser is not None else None,
                "restorer": weights_digest(restorer.network) if restorer is not None else None}
    if inner is not None:
        settings["inner"] = {**_knob_settings(config.inner), "start": weights_digest(inner.network),
                             "target": weights_digest(target_model)}
    return settings


def _cached_adaptive(out_dir: str, config: EvalConfig, settings: Dict[str, Any], restorer, target_model=None):
    """The adaptive fit saved in ``out_dir`` if it has the same settings, else ``None``: ``(denoiser, restorer,
    inner, metadata)``, ``inner`` read from ``inner.pt`` for ``target_model`` when given (an ``idfr_inner`` fit)."""
    path, meta_path = os.path.join(out_dir, DENOISER_FILE), os.path.join(out_dir, ADAPTIVE_META)
    if not ((os.path.isfile(path) or settings["start"] is None) and os.path.isfile(meta_path)):
        return None
    if target_model is not None and not os.path.isfile(os.path.join(out_dir, INNER_FILE)):
        return None
    with open(meta_path) as f:
        meta = json.load(f)
    meta = meta.get("stage_meta", meta)  # after warm restarts: the last run's own record
    if meta.get("settings") != json_clean(settings):
        return None
    logger.info("reusing the adaptive fit in %s", out_dir)
    den, fr, inner, _ = _load_fit(out_dir, restorer, config.device_type, target_model)
    return den, fr, inner, meta


def load_adaptive_fit(folder: str, restorer=None, device_type: str = "gpu"):
    """
    ``(denoiser, restorer, metadata)`` of the adaptive fit that :func:`fit_adaptive` saved in ``folder``: the FR is
    the folder's ``restorer.pt`` when the FR was trained jointly (only then is it written), else the ``restorer``
    given (the Algorithm-2 FR the fit ran through, or ``None``).
    """
    den, restorer, _, meta = _load_fit(folder, restorer, device_type)
    return den, restorer, meta


def load_inner_adaptive_fit(folder: str, target_model: nn.Module, restorer=None, device_type: str = "gpu"):
    """
    ``(denoiser, restorer, inner, metadata)`` of the ``idfr_inner`` fit that :func:`fit_inner_adaptive` saved in
    ``folder`` (``inner.pt`` besides what :func:`load_adaptive_fit` reads), the inner restorers checked against
    ``target_model`` (``ValueError`` when they were fitted for another target).
    """
    return _load_fit(folder, restorer, device_type, target_model)


def _load_fit(folder: str, restorer=None, device_type: str = "gpu", target_model=None):
    """:func:`load_adaptive_fit`, and with ``target_model`` the inner restorers (``inner.pt``) too."""
    from art_idfr import FeatureRestorer, IDFRDenoiser

    den_file, fr_file = os.path.join(folder, DENOISER_FILE), os.path.join(folder, RESTORER_FILE)
    alone = target_model is not None and os.path.isfile(os.path.join(folder, INNER_FILE))  # may lack an ID
    if not os.path.isfile(den_file) and not alone:
        what = "an idfr_inner fit" if target_model is not None else "an adaptive fit (`art-idfr fit --adaptive`)"
        raise FileNotFoundError(f"{den_file} not found: {folder!r} is not {what}.")
    inner = None
    if target_model is not None:
        from art_idfr.inner import InnerRestorer

        inner_file = os.path.join(folder, INNER_FILE)
        if not os.path.isfile(inner_file):
            raise FileNotFoundError(f"{inner_file} not found: {folder!r} is an adaptive fit without inner "
                                    "restorers, not an idfr_inner fit.")
        inner = InnerRestorer.load(inner_file, device_type=device_type)
        inner.check_model(target_model)
    den = IDFRDenoiser.load(den_file, device_type=device_type) if os.path.isfile(den_file) else None
    if den is not None:
        den.verbose = False
    elif not inner.training_info.get("through_restorer", True):  # inner restorers fitted alone: no FR either
        restorer = None
    if os.path.isfile(fr_file):
        restorer = FeatureRestorer.load(fr_file, device_type=device_type)
        restorer.verbose = False
    meta: Dict[str, Any] = {}
    if os.path.isfile(os.path.join(folder, ADAPTIVE_META)):
        with open(os.path.join(folder, ADAPTIVE_META)) as f:
            meta = json.load(f)
    return den, restorer, inner, meta
