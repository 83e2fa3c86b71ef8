"""
Fitting the IDFR (Algorithm 1's ID, then Algorithm 2's FR) for a trained target: :func:`fit_idfr` (the training AEs
crafted on the target and the extra AE sources, epochs chosen on validation images, the fit cached under its
settings) and the IDFR folder it writes and :func:`load_idfr` reads (``denoiser.pt``, ``restorer.pt``,
``idfr.json``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import dataclasses
from typing import Any, Dict, List, Optional

from torch import nn

from art_idfr._utils import json_clean, seeded
from art_idfr.experiments.evaluation.config import EvalConfig
from art_idfr.experiments.evaluation.pipeline.networks import _one_or_list, _source_dir, _source_settings, train_network
from art_idfr.experiments.evaluation.pipeline.prepare import PreparedData
from art_idfr.training import distributed as ddp

logger = logging.getLogger(__name__)

DENOISER_FILE = "denoiser.pt"
RESTORER_FILE = "restorer.pt"
IDFR_META = "idfr.json"


def _knob_settings(sub: Any) -> Dict[str, Any]:
    """
    A sub-config's fields under their flat names (``id_width``, ``fr_lr``, ...), the IDFR cache key's spelling. A field
    marked ``cache_if_set`` (added after caches existed) is recorded only when not at its default, so old caches stay
    valid.
    """
    out = {}
    for f in dataclasses.fields(sub):
        value = getattr(sub, f.name)
        if f.metadata.get("cache_if_set") and value == f.default:
            continue
        out[type(sub).flat_name(f)] = list(value) if isinstance(value, tuple) else value
    return out


def _idfr_settings(config: EvalConfig) -> Dict[str, Any]:
    """The settings that determine an IDFR fit: its cache key, stored in ``idfr.json``."""
    return {
        **_knob_settings(config.id),
        **_knob_settings(config.fr),
        "fit_n": config.fit_n,
        "idfr_attacks": list(config.idfr_attacks),
        "idfr_eps": list(config.idfr_eps or []),
        "attack_iter": config.attack_iter,
        "eps_step": config.eps_step,
        "batch_size": config.train.batch_size,
        "seed": config.seed,
        **({"idfr_source": _one_or_list(_source_settings(config))} if config.idfr_source.model else {}),
    }


def fit_idfr(
    config: EvalConfig,
    data: PreparedData,
    target_model: nn.Module,
    out_dir: Optional[str] = None,
    target_meta: Optional[Dict[str, Any]] = None,
    reuse: bool = True,
    verbose: bool = True,
    source_dir: Optional[str] = None,
):
    """
    Fit the ID then the FR for ``target_model`` with :class:`art_idfr.IDFRTrainer` (AEs from
    ``config.idfr_attacks`` x ``config.idfr_eps`` on the bare target, crafted once and shared), on ``config.fit_n``
    training images, selecting epochs on the validation split. Saves ``denoiser.pt``, ``restorer.pt`` and
    ``idfr.json`` into ``out_dir``; with ``reuse`` an existing fit with the same settings is loaded instead.

    With ``config.idfr_source.model`` set, each extra AE source is trained (role ``idfr_source``, checkpointed in
    ``source_dir``, default ``<out_dir>/../idfr_source``, then ``<source_dir>_2``, ``<source_dir>_3``, ... for
    the next ones) and the same attacks craft AEs on each too.

    ``config`` must be :meth:`EvalConfig.resolved` (``idfr_eps`` set).

    :return: ``(denoiser, restorer, metadata)``.
    """
    from art_idfr import IDFRTrainer
    from art_idfr.experiments.data import stratified_subset_indices

    settings = _idfr_settings(config)
    if out_dir is not None and reuse:
        cached = _cached_idfr(out_dir, config, settings, target_meta)
        if cached is not None:
            return cached
    if not config.idfr_eps:
        raise ValueError("config.idfr_eps is not set: call config.resolved(channels) first.")
    x, y = data.x_train, data.y_train
    if config.fit_n is not None and config.fit_n < len(y):
        idx = stratified_subset_indices(y, config.fit_n, seed=config.seed)
        x, y = x[idx], y[idx]
    sources, source_metas = _ae_sources(config, data, target_model, out_dir, source_dir, reuse, verbose)
    t0 = time.perf_counter()  # the extra AE sources keep their own training time in their model.json
    attacks = _idfr_attacks(config, sources)
    denoiser, restorer = _new_idfr(config, data, verbose)
    trainer = IDFRTrainer(sources[0], attacks, denoiser=denoiser, restorer=restorer)
    with seeded(config.seed):
        trainer.fit(x, y, nb_epochs_id=config.id.nb_epochs, nb_epochs_fr=config.fr.nb_epochs,
                    batch_size=config.train.batch_size, validation_data=(data.x_val, data.y_val),
                    checkpoint=_crafting_resume_path(out_dir, settings, target_meta))
    meta = {
        "settings": settings,
        "target": _target_key(target_meta),
        "fit_n": int(len(y)),
        **({"idfr_source": _one_or_list(source_metas)} if source_metas else {}),
        "id_history": denoiser.history,
        "fr_history": restorer.history,
        "fit_seconds": time.perf_counter() - t0,
        "fit_seconds_covers": "crafting, ID, FR",  # before 2026-12-08 it also covered the extra AE sources' training
    }
    if out_dir is not None:
        _save_idfr(out_dir, denoiser, restorer, meta)
    return denoiser, restorer, meta


def _crafting_resume_path(out_dir: Optional[str], settings: Dict[str, Any],
                          target_meta: Optional[Dict[str, Any]]) -> Optional[str]:
    """Where the fit keeps its crafted AEs (and, beside them, the ID's state after each epoch) until it finishes
    (``IDFRTrainer.fit(checkpoint=...)``), so that a run cut off during the ID or FR epochs crafts nothing again and
    repeats no finished ID epoch; named by the settings and target, so another fit's file is
    never this one's."""
    if out_dir is None:
        return None
    key = json.dumps(json_clean([settings, _target_key(target_meta)]), sort_keys=True, default=str)
    return os.path.join(out_dir, f"crafted_aes_{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt")


def _cached_idfr(out_dir: str, config: EvalConfig, settings: Dict[str, Any], target_meta: Optional[Dict[str, Any]]):
    """The fit saved in ``out_dir`` if it has the same settings and target, else ``None``."""
    try:
        den, res, meta = load_idfr(out_dir, device_type=config.device_type)
    except (FileNotFoundError, ValueError):
        return None
    if meta.get("settings") == json_clean(settings) and meta.get("target") == _target_key(target_meta):
        logger.info("reusing the IDFR fit in %s", out_dir)
        return den, res, meta
    return None


def _ae_sources(config: EvalConfig, data: PreparedData, target_model: nn.Module, out_dir: Optional[str],
                source_dir: Optional[str], reuse: bool, verbose: bool):
    """The ART classifiers the training AEs are crafted on (the target first, then each extra AE source, trained
    here), and the metadata of the extra sources."""
    from art_idfr.experiments.evaluation.defences import wrap_model

    sources = [wrap_model(target_model, data.input_shape, data.num_classes, config.device_type)]
    source_metas = []
    if config.idfr_source.model:
        if source_dir is None and out_dir is None:
            raise ValueError("config.idfr_source_model is set: give fit_idfr an out_dir or a source_dir for it.")
        source_dir = source_dir or os.path.join(os.path.dirname(os.path.abspath(out_dir)), "idfr_source")
        for i in range(len(config.idfr_source.model)):
            source_model, source_meta = train_network(config, data, _source_dir(source_dir, i), role="idfr_source",
                                                      resume=reuse, verbose=verbose, source_index=i)
            sources.append(wrap_model(source_model, data.input_shape, data.num_classes, config.device_type))
            source_metas.append({k: source_meta.get(k) for k in ("model", "width", "seed", "epochs", "val_accuracy")})
    return sources, source_metas


def _idfr_attacks(config: EvalConfig, sources: List[Any]) -> List[Any]:
    """``config.idfr_attacks`` x ``config.idfr_eps`` on every AE source, in that nesting (sources outermost)."""
    from art_idfr.experiments.attacks import make_attack

    return [
        make_attack(name, source, eps, max_iter=config.attack_iter, eps_step=config.eps_step,
                    batch_size=config.attack_batch_size, seed=config.seed, verbose=False)
        for source in sources for eps in config.idfr_eps for name in config.idfr_attacks
    ]


def _new_idfr(config: EvalConfig, data: PreparedData, verbose: bool):
    """An unfitted ``IDFRDenoiser(**config.id)`` and ``FeatureRestorer(**config.fr)`` for this run."""
    from art_idfr import FeatureRestorer, IDFRDenoiser

    run = {"device_type": config.device_type, "verbose": verbose, "seed": config.seed}
    denoiser = IDFRDenoiser(input_shape=data.input_shape, clip_values=(0.0, 1.0), channels_first=True,
                            **config.id.kwargs(), batch_size=config.train.batch_size, **run)
    restorer = FeatureRestorer(**config.fr.kwargs(), **run)
    return denoiser, restorer


def _save_idfr(out_dir: str, denoiser, restorer, meta: Dict[str, Any]) -> None:
    os.makedirs(out_dir, exist_ok=True)
    denoiser.save(os.path.join(out_dir, DENOISER_FILE))  # (distributed: rank 0 writes, every rank calls save)
    restorer.save(os.path.join(out_dir, RESTORER_FILE))
    if ddp.is_main_process():
        with open(os.path.join(out_dir, IDFR_META), "w") as f:
            json.dump(json_clean(meta), f, indent=2)


def _target_key(meta: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    if not meta:
        return None
    return {k: meta.get(k) for k in ("model", "width", "dataset", "seed", "epochs", "test_accuracy")}


def load_idfr(path: str, device_type: str = "gpu"):
    """Load ``denoiser.pt``, ``restorer.pt`` (and ``idfr.json`` if present) from an IDFR folder."""
    from art_idfr import FeatureRestorer, IDFRDenoiser

    den_file, res_file = os.path.join(path, DENOISER_FILE), os.path.join(path, RESTORER_FILE)
    if not os.path.isfile(den_file):
        raise FileNotFoundError(f"{den_file} not found: {path!r} is not an IDFR folder written by `art-idfr fit`.")
    denoiser = IDFRDenoiser.load(den_file, device_type=device_type)
    denoiser.verbose = False
    restorer = FeatureRestorer.load(res_file, device_type=device_type) if os.path.isfile(res_file) else None
    if restorer is not None:
        restorer.verbose = False
    meta: Dict[str, Any] = {}
    if os.path.isfile(os.path.join(path, IDFR_META)):
        with open(os.path.join(path, IDFR_META)) as f:
            meta = json.load(f)
    return denoiser, restorer, meta
