"""
Crash recovery for the evaluation suite: a checkpoint per finished threat model, and partial reports.

An evaluation at paper scale runs for many minutes (on a lent GPU, inside a hard time limit). When
:func:`~art_idfr.experiments.evaluation.suite.evaluate` is given a ``checkpoint_dir``, it saves the records and per-image
outcomes of each threat model as soon as that threat model is finished (``eval_checkpoint.json`` + ``.npz``) and
writes ``results.partial.json`` / ``results.partial.md`` holding every finished threat model, labelled partial. A
run that is stopped (time limit, crash) therefore leaves the numbers it had, and the same command run again skips
the threat models already done.

A checkpoint is reused only when its fingerprint matches: the configuration (all fields but the list of threat
models and of the defences the masking checks attack), the device, the library versions, the evaluation images and their subsets, and the weights of every model
(target, surrogate, ID, FR, Fast AT). Anything else (a retrained model, other images, another GPU) starts afresh.
Loading never executes code: JSON and ``numpy.load(allow_pickle=False)``. A corrupt checkpoint is ignored with a
warning. :func:`~art_idfr.experiments.evaluation.reports.write_reports` removes the checkpoint and the partial reports once the
complete reports are written.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["EvalCheckpoint", "evaluation_fingerprint", "weights_digest", "remove_recovery_files", "CHECKPOINT_FILES",
           "PARTIAL_FILES"]

#: The checkpoint's two files (records and metadata; per-image outcomes).
CHECKPOINT_FILES = {"json": "eval_checkpoint.json", "npz": "eval_checkpoint.npz"}
#: The partial reports written after each finished threat model.
PARTIAL_FILES = {"json": "results.partial.json", "markdown": "results.partial.md"}
FORMAT = "art-idfr-eval-checkpoint/1"

Key = Tuple[str, str, str, float]


def _module_of(obj: Any) -> Optional[nn.Module]:
    if obj is None or isinstance(obj, nn.Module):
        return obj
    for name in ("network", "model"):
        m = getattr(obj, name, None)
        if isinstance(m, nn.Module):
            return m
    raise TypeError(f"cannot fingerprint the weights of a {type(obj).__name__}: no nn.Module found.")


def weights_digest(obj: Any) -> str:
    """SHA-256 of a model's parameters and buffers (an ``nn.Module``, or an object with ``.network``/``.model``)."""
    from art_idfr.training.resume import digest

    module = _module_of(obj)
    return "none" if module is None else digest(module)  # the library's digest: the same bytes, the same hash


def evaluation_fingerprint(config: Dict[str, Any], device: str, arrays: Dict[str, np.ndarray],
                           models: Dict[str, Any], versions: Dict[str, str]) -> str:
    """One hash of everything a checkpointed number depends on (see the module docstring)."""
    h = hashlib.sha256()
    cfg = _without_newer_defaults({k: v for k, v in config.items() if k not in NOT_IN_FINGERPRINT})
    h.update(json.dumps({"config": cfg, "device": device, "versions": versions}, sort_keys=True,
                        default=str).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    for name in sorted(models):
        h.update(f"{name}:{weights_digest(models[name])}".encode())
    return h.hexdigest()


#: configuration fields no checkpointed record depends on: which threat models run, and which defences the
#: gradient-masking checks (run after every threat model, never checkpointed) attack
NOT_IN_FINGERPRINT = frozenset({"threat_models", "sanity_defences"})

#: configuration knobs added after evaluation checkpoints existed, by sub-config (``None``: the whole sub-config): at
#: their defaults they are left out of the fingerprint, so that the checkpoints of earlier runs stay valid
NEWER_THAN_CHECKPOINTS: Dict[str, Optional[Tuple[str, ...]]] = {
    "adaptive": ("train_denoiser", "autocast", "channels_last", "keep_start"), "inner": None, "baselines": None}


def _without_newer_defaults(config: Dict[str, Any]) -> Dict[str, Any]:
    """``config`` (a ``to_dict()``) without the :data:`NEWER_THAN_CHECKPOINTS` knobs that are at their defaults."""
    import dataclasses

    from art_idfr.experiments.evaluation.knobs import SUB_CONFIGS

    out = dict(config)
    for group, names in NEWER_THAN_CHECKPOINTS.items():
        if not isinstance(out.get(group), dict):
            continue
        fields = {f.name: f for f in dataclasses.fields(SUB_CONFIGS[group])}
        sub = {k: v for k, v in out[group].items()
               if not ((names is None or k in names) and k in fields and v == _listed(fields[k].default))}
        if sub:
            out[group] = sub
        else:
            del out[group]
    return out


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _npz_key(key: Key) -> str:
    tm, defence, attack, eps = key
    return f"{tm}|{defence}|{attack}|{float(eps)!r}"


class EvalCheckpoint:
    """
    The finished threat models of one evaluation, kept in ``directory``.

    :param directory: Where ``eval_checkpoint.json`` / ``.npz`` live (the run's output folder).
    :param fingerprint: :func:`evaluation_fingerprint` of this evaluation; a stored checkpoint with another
        fingerprint is ignored (and overwritten at the next save).
    """

    def __init__(self, directory: str, fingerprint: str):
        self.directory = directory
        self.fingerprint = fingerprint
        self.paths = {k: os.path.join(directory, v) for k, v in CHECKPOINT_FILES.items()}
        self.done: Dict[str, Dict[str, Any]] = {}
        self.per_sample: Dict[Key, np.ndarray] = {}
        self._load()

    def _load(self) -> None:
        if not os.path.exists(self.paths["json"]):
            return
        try:
            with open(self.paths["json"], encoding="utf-8") as f:
                doc = json.load(f)
            if doc.get("format") != FORMAT:
                raise ValueError(f"unknown format {doc.get('format')!r}")
            if doc.get("fingerprint") != self.fingerprint:
                logger.info("evaluation checkpoint in %s is from another setup (config, images, device or model "
                            "weights differ): starting afresh.", self.directory)
                return
            with np.load(self.paths["npz"], allow_pickle=False) as z:
                arrays = {name: np.asarray(z[name]) for name in z.files}
            done, per_sample = {}, {}
            for tm, entry in doc["threat_models"].items():
                for name in entry["per_sample"]:
                    t, d, a, e = name.split("|")
                    per_sample[(t, d, a, float(e))] = arrays[name].astype(bool)
                done[tm] = entry
        except Exception as exc:  # a cache: never fatal, never trusted when damaged
            logger.warning("evaluation checkpoint in %s is unreadable (%s): starting afresh.", self.directory, exc)
            return
        self.done, self.per_sample = done, per_sample

    def has(self, threat_model: str) -> bool:
        """Whether ``threat_model`` is finished in this checkpoint."""
        return threat_model in self.done

    def restore(self, threat_model: str) -> Tuple[List[Dict[str, Any]], Dict[Key, np.ndarray], float, str, List[str]]:
        """Records, per-image outcomes, seconds it took, when it finished (ISO time) and the keys of its cells in
        ``OUT/eval_cells`` (none from a checkpoint written before it kept them) of a finished threat model."""
        entry = self.done[threat_model]
        per_sample = {k: v for k, v in self.per_sample.items() if k[0] == threat_model}
        return entry["records"], per_sample, float(entry["seconds"]), entry["finished"], list(entry.get("cells", []))

    def save(self, threat_model: str, records: Iterable[Dict[str, Any]], per_sample: Dict[Key, np.ndarray],
             seconds: float, cells: Iterable[str] = ()) -> None:
        """Add a finished threat model (its attack records, per-image outcomes and the keys of its cells) and rewrite
        the files atomically."""
        mine = {k: np.asarray(v, dtype=bool) for k, v in per_sample.items() if k[0] == threat_model}
        self.per_sample.update(mine)
        self.done[threat_model] = {
            "records": [r for r in records if r["threat_model"] == threat_model and r["attack"] != "clean"],
            "per_sample": sorted(_npz_key(k) for k in mine),
            "seconds": float(seconds),
            "cells": list(cells),
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        os.makedirs(self.directory, exist_ok=True)
        tmp = self.paths["npz"] + ".tmp"
        with open(tmp, "wb") as f:
            np.savez(f, **{_npz_key(k): v for k, v in self.per_sample.items()})
        os.replace(tmp, self.paths["npz"])
        tmp = self.paths["json"] + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"format": FORMAT, "fingerprint": self.fingerprint, "threat_models": self.done}, f)
        os.replace(tmp, self.paths["json"])


def remove_recovery_files(directory: str) -> None:
    """Delete the checkpoint and partial reports in ``directory`` (called once the complete reports exist)."""
    for name in (*CHECKPOINT_FILES.values(), *PARTIAL_FILES.values()):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            os.remove(path)
