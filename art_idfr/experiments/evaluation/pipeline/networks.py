"""
The trained networks of a run other than the IDFR: the target, the black-box surrogate and the extra AE sources
(:func:`train_network`: per-epoch checkpoints, resumable, trained by rank 0 alone under ``torchrun`` through
:func:`_trained_on_main`), and the model folder they are saved in (:func:`save_model_dir` / :func:`load_model_dir`:
``model.pt`` + ``model.json``).
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from art_idfr._utils import json_clean
from art_idfr.experiments.evaluation.config import EvalConfig
from art_idfr.experiments.evaluation.pipeline.prepare import PreparedData, data_settings
from art_idfr.training import distributed as ddp

MODEL_FILE = "model.pt"
MODEL_META = "model.json"


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
