"""
Reuse of single attack cells across evaluation runs.

A cell is one attack at one budget on one defended classifier and one image set: a white-box cell, a query cell, a
transfer cell (black- or gray-box: AEs crafted on a source model, scored on one defence) or one attack of the
gradient-masking checks. All randomness is seeded per cell (``seeds.cell_seed``), so a cell's per-image hits
depend only on what goes into it; a rerun that changes one defence (say, a new adaptive ID) measures every other
defence's cells again to the same bits. :class:`CellCache` keeps each finished cell's hits in
``OUT/eval_cells/`` and gives them back only when everything the cell depends on is identical:

* the cell: threat model (or ``masking``), attack, budget, seed and attack settings; for a transfer cell also the
  source (its name and weights digest, :func:`source_fingerprint`), whose own hits on the AEs are a cell too;
* its images (a digest of the pixels and labels);
* the defended classifier: its key, label, description, gradient mode, and the weights digest and settings (not
  ``verbose``) of every model and component it is built from (:func:`defence_fingerprint`);
* the run: the evaluation settings (every configuration field except the model-training ones, which reach a cell
  only through the weights, and the lists of defences / attacks / budgets / threat models, which are per cell), the
  dataset, the device, the torch / ART / art-idfr / NumPy versions and the number of processes.

A defence without known components (``DefendedClassifier.components`` empty) is never cached. A transfer threat
model crafts its AEs once per (attack, budget) for all defences, and only when some defence's cell (or the source's)
is not in the cache: a rerun that adds or changes one defence crafts them again (the same AEs: the crafting is
seeded), one that changes nothing crafts nothing. Files are plain JSON (format ``art-idfr-eval-cell/1``; hits as a
``0``/``1`` string); one that is damaged or does not match its name is ignored with a warning and measured again.
Reusing a cell changes no number (the same command computes the same hits); the reports say how many cells were
taken from the cache (``metadata["reused_cells"]``) and which cells the run used (``metadata["cell_keys"]``: the
folder also keeps the cells of earlier configurations, e.g. of a baseline fitted again). Each file also keeps the
seconds its cell took to measure (the attack, not the crafting of shared transfer AEs); :func:`cell_seconds` sums them
per threat model and defence, over every session of a run that was cut and resumed, for the cells of one run's
``cell_keys`` or for all.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from typing import Any, Dict, Iterable, Optional, Tuple

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["CellCache", "cell_seconds", "defence_fingerprint", "images_digest", "run_context", "source_fingerprint",
           "FOLDER", "FORMAT"]

FOLDER = "eval_cells"
FORMAT = "art-idfr-eval-cell/1"
#: configuration fields that do not enter a cell: model training (it reaches a cell through the weights digest; the
#: baselines' test-time settings through their components' ``params``) and
#: the per-run lists (each cell names its own defence, attack and budget; images are digested)
NOT_IN_CELLS = frozenset({
    "train", "target", "surrogate", "idfr_source", "id", "fr", "fit_n", "idfr_attacks", "idfr_eps", "adaptive",
    "inner", "adaptive_fit_n", "adaptive_curriculum_eps", "fast_at", "train_size", "val_n", "data_root", "download",
    "preset_name", "defences", "threat_models", "attacks", "eps", "autoattack_defences", "eval_n", "whitebox_n",
    "query_n", "baselines", "sanity_defences",
})


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def images_digest(x: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 of a cell's images and labels (dtype, shape and bytes)."""
    h = hashlib.sha256()
    for a in (np.ascontiguousarray(x), np.ascontiguousarray(y)):
        h.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def _component(obj: Any) -> Dict[str, Any]:
    """Weights digest, type and ART ``params`` of one model or defence component."""
    from torch import nn

    from art_idfr.experiments.evaluation.resume import weights_digest

    has_weights = isinstance(obj, nn.Module) or any(isinstance(getattr(obj, a, None), nn.Module)
                                                    for a in ("network", "model"))
    params = {p: getattr(obj, p, None) for p in getattr(obj, "params", [])}
    if "verbose" in params:  # progress output changes no number: a fresh fit (verbose) and its reload key alike
        params["verbose"] = False
    return {"type": type(obj).__name__, "weights": weights_digest(obj) if has_weights else None, "params": params}


def defence_fingerprint(dc) -> Optional[str]:
    """Digest of a ``DefendedClassifier`` (see the module docstring); ``None`` when its components are unknown."""
    components = getattr(dc, "components", ())  # a stand-in without it (e.g. an older DefendedClassifier): no cache
    if not components:
        return None
    return _sha({"key": dc.key, "label": dc.label, "description": dc.description, "gradient": dc.gradient,
                 "randomised": dc.randomised, "classifier": type(dc.classifier).__name__,
                 "components": [_component(c) for c in components]})


def source_fingerprint(name: str, clf: Any) -> str:
    """Digest of a transfer source: its name and the weights of its model (an ART classifier's ``.model``)."""
    from art_idfr.experiments.evaluation.resume import weights_digest

    return _sha({"source": name, "weights": weights_digest(clf)})


def run_context(config_dict: Dict[str, Any], dataset: str, device: str, versions: Dict[str, Any]) -> Dict[str, Any]:
    """What every cell of a run shares (see the module docstring)."""
    settings = {k: v for k, v in config_dict.items() if k not in NOT_IN_CELLS}
    return {"settings": settings, "dataset": dataset, "device": device, "versions": versions}


class CellCache:
    """
    Finished cells of earlier runs in ``directory`` (``OUT/eval_cells``), for one run's ``context``
    (:func:`run_context`).
    """

    def __init__(self, directory: str, context: Dict[str, Any]):
        self.directory = directory
        self.context = _sha(context)

    def key(self, cell: Dict[str, Any]) -> str:
        """The file name stem of ``cell`` (a dict of everything the cell depends on beyond the run's context)."""
        return _sha({"context": self.context, "cell": cell})

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, key + ".json")

    def get(self, cell: Dict[str, Any], n: int) -> Optional[np.ndarray]:
        """The stored per-image hits of ``cell`` (``n`` images), or ``None``."""
        key = self.key(cell)
        path = self._path(key)
        if not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
            hits = doc.get("hits") if isinstance(doc, dict) else None
            if doc.get("format") != FORMAT or doc.get("key") != key:
                raise ValueError(f"format {doc.get('format')!r} or key does not match the file name")
            if not isinstance(hits, str) or len(hits) != n or set(hits) - {"0", "1"}:
                raise ValueError(f"hits are not a 0/1 string of length {n}")
        except (OSError, ValueError, AttributeError) as exc:  # a cache: never fatal, never trusted when damaged
            logger.warning("evaluation cell %s is unreadable (%s): measuring it again.", path, exc)
            return None
        return np.frombuffer(hits.encode(), dtype=np.uint8) == ord("1")

    def put(self, cell: Dict[str, Any], hits: np.ndarray, summary: str, seconds: Optional[float] = None) -> None:
        """Store ``cell``'s per-image hits (``summary``: a readable name of the cell, ``kind: defence label, attack
        eps``, for whoever opens the file and for :func:`cell_seconds`; ``seconds``: the time it took)."""
        key = self.key(cell)
        os.makedirs(self.directory, exist_ok=True)
        doc = {"format": FORMAT, "key": key, "cell": summary, "n": int(len(hits)),
               "hits": "".join("1" if h else "0" for h in np.asarray(hits, dtype=bool))}
        if seconds is not None:
            doc["seconds"] = round(float(seconds), 3)
        tmp = self._path(key) + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(tmp, self._path(key))


_SUMMARY = re.compile(r"^(?P<kind>[^:]+): (?P<defence>.+), (?P<attack>\S+) (?P<eps>\S+)$")


def cell_seconds(directory: str, keys: Optional[Iterable[str]] = None) -> Dict[Tuple[str, str], Dict[str, float]]:
    """
    Measuring time of the cells stored in ``directory`` (``OUT/eval_cells``), per ``(kind, defence label)``:
    ``{"seconds": total, "cells": how many, "timed": how many carry a time}`` (files written before cells kept their
    time count in ``cells`` only). ``keys``: only these cells (a run's ``metadata["cell_keys"]``); default all.
    Unreadable files are skipped.
    """
    wanted = None if keys is None else {f"{k}.json" for k in keys}
    out: Dict[Tuple[str, str], Dict[str, float]] = {}
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else ():
        if not name.endswith(".json") or (wanted is not None and name not in wanted):
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                doc = json.load(f)
            match = _SUMMARY.match(doc["cell"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if match is None:
            continue
        row = out.setdefault((match["kind"], match["defence"]), {"seconds": 0.0, "cells": 0, "timed": 0})
        row["cells"] += 1
        if isinstance(doc.get("seconds"), (int, float)):
            row["seconds"] += float(doc["seconds"])
            row["timed"] += 1
    return out
