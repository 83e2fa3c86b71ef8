"""
The paper's purification baselines in a run: the opt-in defences ``comdefend``, ``nrp``, ``adp`` and ``soap``
(:mod:`art_idfr.experiments.baselines`; never in a default defence list). :func:`train_baselines` fits each requested
one on the run's training data and caches it in the run folder, ``OUT/baselines/<key>/``: ``<key>.pt`` (the
defence's own ``save``, read back with ``weights_only``) and ``meta.json`` (its settings, the cache key; fit time;
training history; inference passes). A cached fit is reused when its settings match; a fit cut off (a session
limit) continues from its resume file, ``OUT/baselines/<key>/<key>.resume.pt``, written every
:data:`~art_idfr.experiments.baselines.training.CHECKPOINT_EVERY` steps. Under ``torchrun`` rank 0 alone
fits it and the other ranks receive its weights (:func:`~.networks._trained_on_main`).

* ``comdefend``, ``adp``: trained on clean training images, ``baselines.fit_n`` of them (default ``fit_n``;
  stratified), for ``baselines.nb_epochs`` epochs (default: each defence's own ``nb_epochs`` default, its CPU
  preset).
* ``nrp``: the same images and epochs; its feature network is the run's target at its penultimate embedding (the
  paper: an ImageNet VGG-16 at relu3_3), so the cache key holds the target's weights digest.
* ``soap``: a fresh copy of the target architecture with SOAP-RP's rotation head, trained jointly on the whole
  training set for ``baselines.soap_epochs`` epochs (default the target's); purification radius
  ``baselines.soap_eps`` (default 0.1 grey-scale, 8/255 colour), ``baselines.soap_steps`` steps. With
  ``baselines.soap_init="target"`` the joint training starts from a copy of the target's trained weights (a
  fine-tune; the cache key then holds the target's weights digest) instead of a fresh network. The purification
  settings act at test time: a cached fit is reused with other ones.

Every other setting is the library's CPU preset (each module's docstring tabulates it beside the paper's), unless
``baselines.comdefend`` / ``nrp`` / ``adp`` (``--baselines-adp architecture=unet,noise_std=0.1``) give constructor
arguments; they join the cache key.
"""
from __future__ import annotations

import copy
import json
import logging
import os
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from art_idfr._utils import json_clean
from art_idfr.embedding import find_embedding_layer
from art_idfr.experiments.evaluation.config import EvalConfig
from art_idfr.experiments.evaluation.names import BASELINE_DEFENCES
from art_idfr.experiments.evaluation.pipeline.networks import _trained_on_main
from art_idfr.experiments.evaluation.pipeline.prepare import PreparedData
from art_idfr.training import distributed as ddp

logger = logging.getLogger(__name__)

META_FILE = "meta.json"
#: SOAP settings that act at test time only: a cached fit whose settings differ only in these is reused, with them set
SOAP_TEST_TIME = ("purify_eps", "purify_steps")
#: offset of the baselines' seeds from the run's seed (+ their index in BASELINE_DEFENCES)
SEED_OFFSET = 3000


class TargetEmbedding(nn.Module):
    """The target's penultimate embedding (the input of its last ``nn.Linear``) as a module: NRP's feature network."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        captured = []
        with find_embedding_layer(self.model).intercept(lambda h: captured.append(h)):
            self.model(x)
        return captured[-1]


def train_baselines(config: EvalConfig, data: PreparedData, target_model: nn.Module, out_dir: Optional[str] = None,
                    reuse: bool = True, verbose: bool = True) -> Dict[str, Tuple[Any, Dict[str, Any]]]:
    """
    Fit (or reuse from ``out_dir/<key>``) every baseline key of ``config.defences`` (``config`` resolved).

    :return: ``{key: (defence, meta)}``: the fitted ``ComDefend`` / ``NRP`` / ``ADP`` preprocessor or ``SOAPModel``,
        and its metadata (``settings``, ``fit_seconds``, ``fit_n``, ``inference_passes``, ``history``, ...).
    """
    out = {}
    for key in (k for k in config.defences if k in BASELINE_DEFENCES):
        folder = None if out_dir is None else os.path.join(out_dir, key)
        out[key] = _one_baseline(key, config, data, target_model, folder, reuse, verbose)
        logger.info("baseline %s: fitted in %.0f s (%s)", key, out[key][1].get("fit_seconds", 0.0),
                    "reused" if out[key][1].get("reused") else "trained")
    return out


def _one_baseline(key, config, data, target_model, folder, reuse, verbose):
    """One baseline, fitted by rank 0 (or reused), saved by every rank (rank 0 writes)."""
    settings = _settings(key, config, data, target_model)
    box: Dict[str, Any] = {}

    def train():
        box["defence"], meta = _load_or_fit(key, settings, config, data, target_model, folder, reuse, verbose)
        return _module(box["defence"]), meta

    def empty():
        box["defence"] = _build(key, settings, config, data, verbose, target_model)
        return _module(box["defence"])

    _, meta = _trained_on_main(train, empty)
    defence = box["defence"]
    if not ddp.is_main_process():
        defence.mark_fitted(meta.get("history", []), meta.get("training", {}))
    if folder is not None and not meta.get("reused"):
        defence.save(os.path.join(folder, f"{key}.pt"))  # every rank calls it (a barrier inside); rank 0 writes
        if ddp.is_main_process():
            with open(os.path.join(folder, META_FILE), "w") as f:
                json.dump(json_clean(meta), f, indent=2)
    return defence, meta


def _module(defence: Any) -> nn.Module:
    """The module holding a baseline's weights (a preprocessor's network, or the SOAP model itself)."""
    return defence if isinstance(defence, nn.Module) else defence.network


def _settings(key: str, config: EvalConfig, data: PreparedData, target_model: nn.Module) -> Dict[str, Any]:
    """What determines a baseline's fit: its cache key."""
    b, arch = config.baselines, config.target
    s: Dict[str, Any] = {"defence": key, "dataset": data.dataset.name, "input_shape": list(data.input_shape),
                         "train_n": int(len(data.y_train)), "batch_size": config.train.batch_size,
                         "seed": config.seed + SEED_OFFSET + BASELINE_DEFENCES.index(key)}
    if key == "soap":
        grey = data.input_shape[0] == 1
        s |= {"model": arch.model, "width": float(arch.width), "nb_epochs": b.soap_epochs or arch.epochs,
              "purify_eps": b.soap_eps if b.soap_eps is not None else (0.1 if grey else 8 / 255),
              "purify_steps": b.soap_steps}
        if b.soap_init == "target":  # only when set: the caches of fresh fits stay valid
            from art_idfr.training.resume import digest

            s["init"] = {"target": digest(target_model)}
        if b.soap_lr_schedule != "constant":  # likewise
            s["lr_schedule"] = b.soap_lr_schedule
        return s
    s |= {"nb_epochs": b.nb_epochs or _default_epochs(key), "fit_n": b.fit_n or config.fit_n}
    args = b.constructor_args(key)
    if args:
        s["constructor_args"] = args
    if key == "nrp":
        from art_idfr.training.resume import digest

        s["feature_network"] = {"target_embedding": digest(target_model)}
    return s


def _default_epochs(key: str) -> int:
    """The CPU preset's epochs of ComDefend / NRP / ADP: their constructor's default ``nb_epochs``."""
    import inspect

    from art_idfr.experiments.baselines import ADP, NRP, ComDefend

    cls = {"comdefend": ComDefend, "nrp": NRP, "adp": ADP}[key]
    return int(inspect.signature(cls).parameters["nb_epochs"].default)


def _build(key: str, s: Dict[str, Any], config: EvalConfig, data: PreparedData, verbose: bool,
           target_model: Optional[nn.Module] = None):
    """An unfitted baseline for settings ``s`` (SOAP started from the target: a copy of ``target_model``)."""
    from art_idfr.experiments.baselines import ADP, NRP, ComDefend, SOAPModel

    shape = tuple(data.input_shape)
    common = dict(nb_epochs=s["nb_epochs"], batch_size=s["batch_size"], verbose=verbose, seed=s["seed"])
    if key == "soap":
        from art_idfr.experiments.models import make_model, torch_device

        if "init" in s:
            model = copy.deepcopy(target_model)
        else:
            model = make_model(s["model"], data.num_classes, shape, width=s["width"], seed=s["seed"])
        model.to(torch_device(config.device))
        return SOAPModel(model, shape, purify_eps=s["purify_eps"], purify_steps=s["purify_steps"],
                         lr_schedule=s.get("lr_schedule", "constant"), **common)
    cls = {"comdefend": ComDefend, "nrp": NRP, "adp": ADP}[key]
    return cls(shape, device_type=config.device_type, **(common | s.get("constructor_args", {})))


def _load_or_fit(key, s, config, data, target_model, folder, reuse, verbose):
    """``(defence, meta)``: the cached fit in ``folder`` when its settings match, else a new fit (not saved here)."""
    cached = _cached(key, s, config, data, target_model, folder, verbose) if folder is not None and reuse else None
    if cached is not None:
        return cached
    defence = _build(key, s, config, data, verbose, target_model)
    checkpoint = None if folder is None else os.path.join(folder, f"{key}.resume.pt")  # a cut fit resumes
    if key == "soap":
        defence.fit(data.x_train, data.y_train, checkpoint=checkpoint)
        n = len(data.y_train)
    else:
        x = _fit_images(s, config, data)
        defence.fit(x, checkpoint=checkpoint,
                    **({"feature_network": TargetEmbedding(target_model)} if key == "nrp" else {}))
        n = len(x)
    meta = {"role": "baseline", "defence": key, "settings": s, "fit_n": int(n),
            "fit_seconds": defence.training_info.get("fit_seconds"), "inference_passes": defence.inference_passes,
            "history": defence.history, "training": defence.training_info}
    return defence, meta


def _fit_images(s: Dict[str, Any], config: EvalConfig, data: PreparedData):
    """The clean training images of ComDefend / NRP / ADP: a stratified subset of ``fit_n`` (``None``: all)."""
    from art_idfr.experiments.data import stratified_subset_indices

    n = s["fit_n"]
    if n is None or n >= len(data.y_train):
        return data.x_train
    return data.x_train[stratified_subset_indices(data.y_train, n, seed=config.seed + SEED_OFFSET)]


def _cached(key, s, config, data, target_model, folder, verbose):
    """The fit stored in ``folder`` if its settings are ``s`` (``None`` otherwise, or if it cannot be read)."""
    from art_idfr.experiments.baselines import ADP, NRP, ComDefend, SOAPModel

    meta_path, weights = os.path.join(folder, META_FILE), os.path.join(folder, f"{key}.pt")
    try:
        with open(meta_path) as f:
            meta = json.load(f)
        if _fit_settings(key, meta.get("settings") or {}) != _fit_settings(key, json_clean(s)):
            return None
        if key == "soap":
            defence = SOAPModel.load(weights, _build(key, s, config, data, verbose, target_model).model)
            defence.purify_eps, defence.purify_steps = float(s["purify_eps"]), int(s["purify_steps"])
        else:
            defence = {"comdefend": ComDefend, "nrp": NRP, "adp": ADP}[key].load(weights, config.device_type)
    except (FileNotFoundError, ValueError, KeyError, json.JSONDecodeError) as err:
        logger.info("baseline %s: no usable cache in %s (%s)", key, folder, err)
        return None
    logger.info("reusing the %s baseline in %s", key, folder)
    # the wording of the inference cost is the loaded defence's own (an older cache may carry older wording)
    return defence, meta | {"settings": json_clean(s), "reused": True, "inference_passes": defence.inference_passes}


def _fit_settings(key: str, settings: Dict[str, Any]) -> Dict[str, Any]:
    """The settings that decide a baseline's fit (SOAP's test-time ones left out)."""
    return {k: v for k, v in settings.items() if not (key == "soap" and k in SOAP_TEST_TIME)}
