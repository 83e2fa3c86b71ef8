"""
The steps before an evaluation: data, target and surrogate training (checkpointed, resumable), IDFR fitting, Fast AT
training, and saving / loading each of them.

Folder layouts written here (all weights with ``torch.save(state_dict)``, read back with
``torch.load(weights_only=True)``):

* model folder (target, surrogate, Fast AT): ``model.pt`` (state dict), ``model.json`` (architecture, dataset, seed,
  accuracies, training settings), ``checkpoints/epoch_NNNN.pt`` (per-epoch, used to resume).
* IDFR folder: ``denoiser.pt`` (:meth:`IDFRDenoiser.save`), ``restorer.pt`` (:meth:`FeatureRestorer.save`),
  ``idfr.json`` (settings, the target it was fitted for, accuracies).

Under ``torchrun`` (:mod:`art_idfr.training.distributed`): a model trained here (target, surrogate, extra AE
source, Fast AT) is trained by rank 0 alone, exactly as in a single process, while the other ranks wait (up to the
process group's timeout) and then receive its weights and metadata by broadcast (:func:`_trained_on_main`); the ID
and FR are fitted by all ranks together (Algorithms 1 and 2 under DDP, see ``IDFRDenoiser.fit``), and so is the
adaptive ID. Files are written by rank 0 only; every rank must see the same folders (one machine or a shared file
system), since each reads a cached fit or model itself.
"""
from __future__ import annotations

import json
import logging
import os
import time
import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from art_idfr._utils import json_clean, seeded
from art_idfr.experiments.evaluation.config import EvalConfig
from art_idfr.training import distributed as ddp

logger = logging.getLogger(__name__)

__all__ = [
    "PreparedData",
    "prepare_data",
    "data_settings",
    "seeded",
    "limit_threads",
    "train_network",
    "save_model_dir",
    "load_model_dir",
    "fit_idfr",
    "load_idfr",
    "train_fast_at",
    "fit_adaptive",
    "load_adaptive_fit",
    "make_fbf_trainer",
]

MODEL_FILE = "model.pt"
MODEL_META = "model.json"
DENOISER_FILE = "denoiser.pt"
RESTORER_FILE = "restorer.pt"
IDFR_META = "idfr.json"
#: metadata of an adaptive fit (``fit_adaptive``)
ADAPTIVE_META = "adaptive.json"
#: an adaptive fit in progress writes its resume file ``<this>-<settings digest>.pt`` into its folder
ADAPTIVE_RESUME = "adaptive_resume"


_THREAD_LIMITS: list = []


def limit_threads(n: int) -> None:
    """
    Use ``n`` threads in torch and one in the BLAS pools of NumPy and SciPy (via ``threadpoolctl``), for the rest of
    the process. The NumPy/SciPy work here is many tiny arrays (ART's ``TotalVarMin`` solves one small L-BFGS-B
    problem per image), where BLAS threads only add overhead: the MNIST-5k demo's TotalVarMin cells took ~10% longer
    with two BLAS threads than with one on 2 idle cores, and on 2 busy cores oversubscribed pools made ``TotalVarMin``
    25x and a 28x28 U-Net forward 70x slower.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}.")
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        _THREAD_LIMITS.append(threadpool_limits(limits=1, user_api="blas"))
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn, a dependency
        logger.warning("threadpoolctl is not installed: NumPy/SciPy BLAS threads are not limited.")


@dataclass
class PreparedData:
    """The dataset plus the train / validation split used by every training step of a run."""

    dataset: Any
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return int(self.dataset.num_classes)

    @property
    def x_test(self) -> np.ndarray:
        return self.dataset.x_test

    @property
    def y_test(self) -> np.ndarray:
        return self.dataset.y_test


def prepare_data(config: EvalConfig, verbose: bool = True) -> PreparedData:
    """
    Load ``config.dataset`` (errors from :func:`art_idfr.experiments.data.load_dataset` propagate: unknown name, missing files,
    no ``train/`` and ``test/`` folders) and split ``config.val_n`` validation images off the training set.
    """
    from art_idfr.experiments.data import load_dataset, train_val_split

    later = bool(config.download) and not ddp.is_main_process()  # distributed: rank 0 downloads, then the others
    if later:
        ddp.barrier()
    ds = load_dataset(config.dataset, root=config.data_root, train_size=config.train_size,
                      test_size=config.test_size, seed=config.seed, download=config.download, verbose=verbose,
                      image_size=config.image_size)
    if config.download and ddp.is_main_process():
        ddp.barrier()
    if config.val_n >= len(ds.y_train):
        raise ValueError(f"val_n={config.val_n} leaves no training images ({len(ds.y_train)} in {ds.name}).")
    x_tr, y_tr, x_val, y_val = train_val_split(ds.x_train, ds.y_train, val_size=config.val_n, seed=config.seed)
    return PreparedData(ds, x_tr, y_tr, x_val, y_val)


def data_settings(config: EvalConfig) -> Dict[str, Any]:
    """The config fields that determine the data split (stored with every model, reused by ``fit`` / ``evaluate``)."""
    return {"dataset": config.dataset, "data_root": config.data_root, "train_size": config.train_size,
            "test_size": config.test_size, "val_n": config.val_n, "seed": config.seed,
            "image_size": config.image_size}


# ----------------------------------------------------------------------------------------------------------------------
# target / surrogate
# ----------------------------------------------------------------------------------------------------------------------


def _source_settings(config: EvalConfig) -> List[Dict[str, Any]]:
    """Model, width, epochs and seed of each extra AE source (``config.idfr_source_model``; [] = target only)."""
    src = config.idfr_source
    models = src.model or ()
    widths = src.width or (float(config.target.width),)
    widths = widths * len(models) if len(widths) == 1 else widths
    return [{"model": m, "width": float(w), "epochs": src.epochs, "seed": config.seed + src.seed_offset + 1000 * i}
            for i, (m, w) in enumerate(zip(models, widths))]


def _one_or_list(items: List[Any]) -> Any:
    """Record one extra AE source as a dict, as before several were possible (old caches stay valid); several as a
    list."""
    return items[0] if len(items) == 1 else items


def _source_dir(out_dir: str, index: int) -> str:
    """Folder of extra AE source ``index``: ``idfr_source`` for the first (as before several were possible),
    ``idfr_source_2``, ``idfr_source_3``, ... next to it."""
    return out_dir if index == 0 else f"{out_dir}_{index + 1}"


def _role_settings(config: EvalConfig, role: str, source_index: int = 0) -> Dict[str, Any]:
    target, surrogate = config.target, config.surrogate
    if role == "target":
        return {"model": target.model, "width": float(target.width), "epochs": target.epochs, "seed": config.seed,
                "weights": target.weights}
    if role == "surrogate":
        return {"model": surrogate.model or target.model,
                "width": float(surrogate.width if surrogate.width is not None else target.width),
                "epochs": surrogate.epochs, "seed": config.seed + surrogate.seed_offset, "weights": surrogate.weights}
    if role == "idfr_source":
        sources = _source_settings(config)
        if not sources:
            raise ValueError("role 'idfr_source' needs config.idfr_source_model.")
        if not 0 <= source_index < len(sources):
            raise ValueError(f"source_index {source_index} is out of range: config.idfr_source_model has "
                             f"{len(sources)} model(s).")
        return sources[source_index]
    raise ValueError(f"Unknown role {role!r}; use 'target', 'surrogate' or 'idfr_source'.")


def train_network(
    config: EvalConfig,
    data: PreparedData,
    out_dir: str,
    role: str = "target",
    resume: bool = True,
    verbose: bool = True,
    source_index: int = 0,
) -> Tuple[nn.Module, Dict[str, Any]]:
    """
    Train the target (or the black-box surrogate: other seed, optionally other architecture / width; or extra AE
    source ``source_index`` of ``config.idfr_source_model``: role ``idfr_source``) with
    :func:`art_idfr.experiments.models.train_model`, checkpointing every epoch into ``out_dir/checkpoints`` and resuming from
    there; then write ``model.pt`` + ``model.json``. A finished run in ``out_dir`` is reloaded, not retrained.
    With a weights file (``config.target.weights`` / ``config.surrogate.weights``) the model starts from it, and
    0 epochs keep it as it is (a pretrained ImageNet model, say): it is only evaluated and saved.

    :return: ``(model in eval mode, metadata)``.
    """
    s = _role_settings(config, role, source_index)
    return _trained_on_main(
        lambda: _train_network(config, data, out_dir, role, resume, verbose, source_index, s),
        lambda: _empty_model(s["model"], data, s["width"], config.device, s["seed"], s.get("weights")))


def _trained_on_main(train, empty):
    """
    ``train()`` -> ``(model, meta)``. Distributed: rank 0 alone trains (as a single process would); the other ranks
    wait for it at the broadcast of its metadata (up to the process group's timeout; torchrun stops them if rank 0
    fails) and receive its weights into ``empty()``, a model of the same architecture on their device.
    """
    if not ddp.is_distributed():
        return train()
    model, meta = train() if ddp.is_main_process() else (empty(), None)
    meta = ddp.broadcast_object(meta)
    ddp.sync_module(model, average_buffers=False)
    return model.eval(), meta


def _empty_model(name: str, data: PreparedData, width: float, device: str, seed: int,
                 weights: Optional[str] = None) -> nn.Module:
    """A model of architecture ``name`` for ``data`` on ``device``, built as rank 0 builds it, to receive weights."""
    from art_idfr.experiments.models import make_model, torch_device

    model = make_model(name, data.num_classes, data.input_shape, width=width, seed=seed, weights=weights)
    return model.to(torch_device(device))


def _train_network(config, data, out_dir, role, resume, verbose, source_index, s):
    """:func:`train_network` in one process (``s``: the role's settings)."""
    from art_idfr.experiments.models import accuracy, make_model, torch_device, train_model

    model = make_model(s["model"], data.num_classes, data.input_shape, width=s["width"], seed=s["seed"],
                       weights=s.get("weights"))
    t0 = time.perf_counter()
    history: Dict[str, List[float]] = {}
    if s["epochs"] > 0:
        history = train_model(
            model, data.x_train, data.y_train, epochs=s["epochs"], **config.train.kwargs(), device=config.device,
            seed=s["seed"], checkpoint_dir=os.path.join(out_dir, "checkpoints"), resume=resume, x_val=data.x_val,
            y_val=data.y_val, verbose=verbose,
        )
    else:
        model.to(torch_device(config.device))
    meta = {
        "role": role,
        **({"source_index": source_index} if role == "idfr_source" and source_index else {}),
        "model": s["model"],
        "width": s["width"],
        "num_classes": data.num_classes,
        "input_shape": list(data.input_shape),
        "dataset": data.dataset.name,
        "seed": s["seed"],
        "epochs": s["epochs"],
        "batch_size": config.train.batch_size,
        "optimizer": config.train.optimizer,
        "lr": config.train.lr,
        "augment": config.train.augment,
        "train_n": int(len(data.y_train)),
        "val_n": int(len(data.y_val)),
        "data": data_settings(config),
        "val_accuracy": accuracy(model, data.x_val, data.y_val),
        "test_accuracy": accuracy(model, data.x_test, data.y_test),
        "history": history,
        "train_seconds": time.perf_counter() - t0,
        **({"weights": _weights_record(s["weights"])} if s.get("weights") else {}),
    }
    save_model_dir(model, meta, out_dir)
    return model, meta


def _weights_record(path: str) -> Dict[str, Any]:
    """Where a model's starting weights came from: the file and its SHA-256."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"path": os.path.abspath(path), "sha256": h.hexdigest()}


def save_model_dir(model: nn.Module, meta: Dict[str, Any], out_dir: str) -> None:
    """``model.pt`` (``torch.save(state_dict)``) and ``model.json`` into ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = os.path.join(out_dir, MODEL_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, os.path.join(out_dir, MODEL_FILE))
    with open(os.path.join(out_dir, MODEL_META), "w") as f:
        json.dump(json_clean(meta), f, indent=2)


def load_model_dir(path: str, device: str = "auto") -> Tuple[nn.Module, Dict[str, Any]]:
    """
    Rebuild a model saved by :func:`train_network` / :func:`save_model_dir` (``torch.load(weights_only=True)``).

    :param path: The model folder (or its ``model.pt``).
    :raises FileNotFoundError: no ``model.pt`` / ``model.json`` there.
    :raises ValueError: the weights do not fit the stored architecture.
    """
    from art_idfr.experiments.models import make_model, torch_device

    folder = os.path.dirname(path) if path.endswith(".pt") else path
    weights, meta_file = os.path.join(folder, MODEL_FILE), os.path.join(folder, MODEL_META)
    for f in (weights, meta_file):
        if not os.path.isfile(f):
            raise FileNotFoundError(
                f"{f} not found: {folder!r} is not a model folder written by `art-idfr train-target`."
            )
    with open(meta_file) as f:
        meta = json.load(f)
    model = make_model(meta["model"], int(meta["num_classes"]), tuple(meta["input_shape"]), width=float(meta["width"]))
    state = torch.load(weights, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{weights}: weights do not match {meta['model']} (width {meta['width']}): {err}") from err
    model.to(torch_device(device)).eval()
    return model, meta


# ----------------------------------------------------------------------------------------------------------------------
# IDFR
# ----------------------------------------------------------------------------------------------------------------------


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
    t0 = time.perf_counter()
    x, y = data.x_train, data.y_train
    if config.fit_n is not None and config.fit_n < len(y):
        idx = stratified_subset_indices(y, config.fit_n, seed=config.seed)
        x, y = x[idx], y[idx]
    sources, source_metas = _ae_sources(config, data, target_model, out_dir, source_dir, reuse, verbose)
    attacks = _idfr_attacks(config, sources)
    denoiser, restorer = _new_idfr(config, data, verbose)
    trainer = IDFRTrainer(sources[0], attacks, denoiser=denoiser, restorer=restorer)
    with seeded(config.seed):
        trainer.fit(x, y, nb_epochs_id=config.id.nb_epochs, nb_epochs_fr=config.fr.nb_epochs,
                    batch_size=config.train.batch_size, validation_data=(data.x_val, data.y_val))
    meta = {
        "settings": settings,
        "target": _target_key(target_meta),
        "fit_n": int(len(y)),
        **({"idfr_source": _one_or_list(source_metas)} if source_metas else {}),
        "id_history": denoiser.history,
        "fr_history": restorer.history,
        "fit_seconds": time.perf_counter() - t0,
    }
    if out_dir is not None:
        _save_idfr(out_dir, denoiser, restorer, meta)
    return denoiser, restorer, meta


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
    epochs = [config.adaptive.nb_epochs, *config.adaptive_restarts]
    budgets = config.adaptive_stage_eps()
    den, fr, metas = denoiser, restorer, []
    for stage, (nb_epochs, eps) in enumerate(zip(epochs, budgets)):
        last = stage == len(epochs) - 1
        folder = out_dir if out_dir is None or last else os.path.join(out_dir, f"stage{stage}")
        den, fr, meta = _adaptive_stage(config, data, target_model, den, fr, folder, reuse, verbose, stage, nb_epochs,
                                        eps)
        metas.append(meta)
    if len(metas) == 1:
        return den, fr, metas[0]
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
    return den, fr, merged


def _adaptive_stage(config, data, target_model, denoiser, restorer, out_dir, reuse, verbose, stage, nb_epochs, eps):
    """One one-cycle adaptive run of ``nb_epochs`` at budget ``eps`` from ``denoiser`` (and ``restorer``); stage 0 is
    the first fit."""
    import copy

    from art_idfr.experiments.data import stratified_subset_indices
    from art_idfr.experiments.evaluation.defences import wrap_model
    from art_idfr.training.adaptive import AdaptiveDenoiserTrainer

    settings = _adaptive_settings(config, denoiser, restorer)
    curriculum = eps != config.adaptive.eps  # a curriculum stage: hands its training on, never its start
    if stage:  # a warm restart: keyed by the weights it starts from (in settings) and its own epochs and seed
        settings |= {"adaptive_nb_epochs": nb_epochs, "stage": stage}
    if curriculum:  # (the key of a stage at adaptive_eps is unchanged: earlier caches stay valid)
        settings |= {"adaptive_eps": eps}
    if out_dir is not None and reuse:
        cached = _cached_adaptive(out_dir, config, settings, restorer)
        if cached is not None:
            return cached
    t0 = time.perf_counter()
    n = config.adaptive_fit_n or config.fit_n or len(data.y_train)
    idx = stratified_subset_indices(data.y_train, min(n, len(data.y_train)), seed=config.seed + 1)
    target = wrap_model(target_model, data.input_shape, data.num_classes, config.device_type)
    den = copy.deepcopy(denoiser)
    fr = copy.deepcopy(restorer) if config.adaptive.train_restorer else restorer
    kwargs = config.adaptive.kwargs() | {"nb_epochs": nb_epochs, "eps": eps}
    kwargs["batch_size"] = kwargs["batch_size"] or config.train.batch_size
    trainer = AdaptiveDenoiserTrainer(target, den, restorer=fr, seed=config.seed + stage, verbose=verbose,
                                      keep_start=not curriculum, **kwargs)
    val = min(len(data.y_val), 500)
    resume = _adaptive_resume_file(out_dir, settings, reuse)
    with seeded(config.seed + 7000 + stage):
        trainer.fit(data.x_train[idx], data.y_train[idx], attacks=_idfr_attacks(config, [target]),
                    validation_data=(data.x_val[:val], data.y_val[:val]), checkpoint=resume)
    meta = {"settings": settings, "fit_n": int(len(idx)), "history": trainer.history,
            "training": den.training_info, "fit_seconds": time.perf_counter() - t0 + trainer.resumed_seconds,
            **({"resumed_seconds": trainer.resumed_seconds} if trainer.resumed_seconds else {})}
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        den.save(os.path.join(out_dir, DENOISER_FILE))  # (distributed: rank 0 writes, every rank calls save)
        if fr is not restorer:
            fr.save(os.path.join(out_dir, RESTORER_FILE))
        elif ddp.is_main_process() and os.path.isfile(os.path.join(out_dir, RESTORER_FILE)):
            os.remove(os.path.join(out_dir, RESTORER_FILE))  # an earlier joint fit's FR is not this fit's
        if ddp.is_main_process():
            with open(os.path.join(out_dir, ADAPTIVE_META), "w") as f:
                json.dump(json_clean(meta), f, indent=2)
    return den, fr, meta


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


def _adaptive_settings(config: EvalConfig, denoiser, restorer) -> Dict[str, Any]:
    """The cache key of an adaptive fit: its knobs, data, and the weights it starts from."""
    from art_idfr.experiments.evaluation.resume import weights_digest

    return {**_knob_settings(config.adaptive), "adaptive_fit_n": config.adaptive_fit_n, "fit_n": config.fit_n,
            "idfr_attacks": list(config.idfr_attacks), "idfr_eps": list(config.idfr_eps or []),
            "seed": config.seed, "batch_size": config.train.batch_size, "start": weights_digest(denoiser.network),
            "restorer": weights_digest(restorer.network) if restorer is not None else None}


def _cached_adaptive(out_dir: str, config: EvalConfig, settings: Dict[str, Any], restorer):
    """The adaptive fit saved in ``out_dir`` if it has the same settings, else ``None``."""
    path, meta_path = os.path.join(out_dir, DENOISER_FILE), os.path.join(out_dir, ADAPTIVE_META)
    if not (os.path.isfile(path) and os.path.isfile(meta_path)):
        return None
    with open(meta_path) as f:
        meta = json.load(f)
    meta = meta.get("stage_meta", meta)  # after warm restarts: the last run's own record
    if meta.get("settings") != json_clean(settings):
        return None
    logger.info("reusing the adaptive ID fit in %s", out_dir)
    den, fr, _ = load_adaptive_fit(out_dir, restorer, device_type=config.device_type)
    return den, fr, meta


def load_adaptive_fit(folder: str, restorer=None, device_type: str = "gpu"):
    """
    ``(denoiser, restorer, metadata)`` of the adaptive fit that :func:`fit_adaptive` saved in ``folder``: the FR is
    the folder's ``restorer.pt`` when the FR was trained jointly (only then is it written), else the ``restorer``
    given (the Algorithm-2 FR the fit ran through, or ``None``).
    """
    from art_idfr import FeatureRestorer, IDFRDenoiser

    den_file, fr_file = os.path.join(folder, DENOISER_FILE), os.path.join(folder, RESTORER_FILE)
    if not os.path.isfile(den_file):
        raise FileNotFoundError(f"{den_file} not found: {folder!r} is not an adaptive fit (`art-idfr fit --adaptive`).")
    den = IDFRDenoiser.load(den_file, device_type=device_type)
    den.verbose = False
    if os.path.isfile(fr_file):
        restorer = FeatureRestorer.load(fr_file, device_type=device_type)
        restorer.verbose = False
    meta: Dict[str, Any] = {}
    if os.path.isfile(os.path.join(folder, ADAPTIVE_META)):
        with open(os.path.join(folder, ADAPTIVE_META)) as f:
            meta = json.load(f)
    return den, restorer, meta


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


# ----------------------------------------------------------------------------------------------------------------------
# Fast AT
# ----------------------------------------------------------------------------------------------------------------------


def _fbf_class():
    from art.defences.trainer import AdversarialTrainerFBFPyTorch

    class _Fixed(AdversarialTrainerFBFPyTorch):
        """
        ART's ``AdversarialTrainerFBFPyTorch`` with one fix: ART 1.20 computes the FGSM step with
        ``classifier.loss_gradient``, which leaves the model in *eval* mode, and then takes the training step in that
        mode, so BatchNorm layers never use batch statistics nor update their running averages. This subclass puts
        the model back in train mode for the weight update (and in eval mode for the attack step). Everything else
        (random start, 1.25·eps step, cyclic LR peaking at 0.21, grad-norm clip 0.5) is ART's.
        """

        def _batch_process(self, x_batch, y_batch, l_r):
            wrapper = self._classifier._model  # ART's ModelWrapper around the user's model
            grad_fn = self._classifier.loss_gradient

            def loss_gradient(*args, **kwargs):
                out = grad_fn(*args, **kwargs)  # ART: eval mode for the attack step
                wrapper.train(True)  # ... and train mode for the weight update that follows
                return out

            self._classifier.loss_gradient = loss_gradient  # type: ignore[method-assign]
            try:
                return super()._batch_process(x_batch, y_batch, l_r)
            finally:
                del self._classifier.loss_gradient
                wrapper.eval()

    return _Fixed


def make_fbf_trainer(classifier, eps: float, use_amp: bool = False):
    """ART's Fast-AT trainer (``AdversarialTrainerFBFPyTorch``) with the BatchNorm train-mode fix (see
    :func:`_fbf_class`)."""
    return _fbf_class()(classifier, eps=eps, use_amp=use_amp)


def train_fast_at(
    config: EvalConfig,
    data: PreparedData,
    out_dir: Optional[str] = None,
    reuse: bool = True,
    verbose: bool = True,
) -> Tuple[nn.Module, Dict[str, Any]]:
    """
    "Fast AT" baseline: a fresh copy of the target architecture trained from scratch with ART's
    ``AdversarialTrainerFBFPyTorch`` (Wong et al. 2020; SGD momentum 0.9, weight decay 5e-4, ART's cyclic LR) at
    ``config.fast_at.eps`` for ``config.fast_at.nb_epochs`` epochs. Saved as a model folder in ``out_dir`` (reused when
    the settings match). Distributed: rank 0 alone reuses or trains it (:func:`_trained_on_main`).
    """
    arch = config.target
    return _trained_on_main(lambda: _train_fast_at(config, data, out_dir, reuse),
                            lambda: _empty_model(arch.model, data, arch.width, config.device, config.seed + 2000))


def _train_fast_at(config: EvalConfig, data: PreparedData, out_dir: Optional[str], reuse: bool):
    """:func:`train_fast_at` in one process."""
    from art_idfr.experiments.evaluation.defences import wrap_model
    from art_idfr.experiments.models import accuracy, make_model

    fast_at, arch = config.fast_at, config.target
    settings = {"model": arch.model, "width": float(arch.width), "fast_at_eps": fast_at.eps,
                "fast_at_epochs": fast_at.nb_epochs, "batch_size": config.train.batch_size, "seed": config.seed,
                "dataset": data.dataset.name, "train_n": int(len(data.y_train))}
    if out_dir is not None and reuse:
        try:
            model, meta = load_model_dir(out_dir, device=config.device)
            if meta.get("settings") == json_clean(settings):
                logger.info("reusing the Fast AT model in %s", out_dir)
                return model, meta
        except (FileNotFoundError, ValueError, KeyError):
            pass
    if fast_at.eps is None:
        raise ValueError("config.fast_at.eps is not set: call config.resolved(channels) first.")
    t0 = time.perf_counter()
    seed = config.seed + 2000
    model = make_model(arch.model, data.num_classes, data.input_shape, width=arch.width, seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, weight_decay=5e-4)
    clf = wrap_model(model, data.input_shape, data.num_classes, config.device_type, optimizer=opt)
    trainer = make_fbf_trainer(clf, eps=float(fast_at.eps))
    onehot = np.eye(data.num_classes, dtype=np.float32)[data.y_train]
    with seeded(seed):
        trainer.fit(data.x_train, onehot, nb_epochs=fast_at.nb_epochs, batch_size=config.train.batch_size)
    model.eval()
    meta = {
        "role": "fast_at",
        "model": arch.model,
        "width": float(arch.width),
        "num_classes": data.num_classes,
        "input_shape": list(data.input_shape),
        "dataset": data.dataset.name,
        "seed": seed,
        "settings": settings,
        "trainer": "art.defences.trainer.AdversarialTrainerFBFPyTorch (BatchNorm train-mode fix)",
        "val_accuracy": accuracy(model, data.x_val, data.y_val),
        "test_accuracy": accuracy(model, data.x_test, data.y_test),
        "train_seconds": time.perf_counter() - t0,
    }
    if out_dir is not None:
        save_model_dir(model, meta, out_dir)
    return model, meta


