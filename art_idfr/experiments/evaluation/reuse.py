"""
What an :class:`~art_idfr.experiments.evaluation.suite.Evaluation` takes from earlier runs and leaves for later
ones: the resume checkpoint of each finished threat model (:mod:`~art_idfr.experiments.evaluation.resume`, with the
partial reports rewritten after each) and the cache of single attack cells
(:mod:`~art_idfr.experiments.evaluation.cells`). :class:`ReuseMixin` holds these methods of ``Evaluation``; they read
the run's state that ``Evaluation.__init__`` sets (``cfg``, ``data``, ``models``, the evaluation images, the records,
``checkpoint_dir``, ...).
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from art_idfr.experiments.evaluation import sharding
from art_idfr.experiments.evaluation.defences import DefendedClassifier
from art_idfr.experiments.evaluation.names import eps_label
from art_idfr.experiments.evaluation.result import EvaluationResult

logger = logging.getLogger(__name__)


class ReuseMixin:
    """The checkpoint and cell-cache methods of :class:`~art_idfr.experiments.evaluation.suite.Evaluation`."""

    def _open_checkpoint(self):
        """The :class:`~art_idfr.experiments.evaluation.resume.EvalCheckpoint` of this run's fingerprint."""
        import art

        from art_idfr.experiments.evaluation.resume import EvalCheckpoint, evaluation_fingerprint

        fingerprint = evaluation_fingerprint(
            self.cfg.to_dict(), self.device_text,
            {"x_eval": self.x_eval, "y_eval": self.y_eval, "wb_idx": self.wb_idx, "q_idx": self.q_idx},
            dict(self.models),
            {"torch": torch.__version__, "art": art.__version__, "art_idfr": _version(), **sharding.processes()})
        return EvalCheckpoint(self.checkpoint_dir, fingerprint)

    def _open_cell_cache(self, reuse: bool) -> None:
        """The :class:`~art_idfr.experiments.evaluation.cells.CellCache` in ``checkpoint_dir/eval_cells`` (rank 0)."""
        import art

        from art_idfr.experiments.evaluation import cells

        self.reuse_cells = bool(reuse) and self.checkpoint_dir is not None  # the same on every rank
        self.reused_cells: Dict[str, int] = {}
        self.cell_keys: Dict[str, List[str]] = {}  # per kind: the cells this run used, measured or reused
        self.cell_keys_unknown: List[str] = []  # threat models resumed from a checkpoint that predates cell_keys
        self._fingerprints: Dict[str, Optional[str]] = {}
        self.cells = None
        if self.checkpoint_dir is None:  # no output folder: nothing stored, nothing reused
            return
        self.image_digests = {tm: cells.images_digest(self.x_eval[idx], self.y_eval[idx])
                              for tm, idx in self.images.items()}
        if sharding.is_main_process():
            context = cells.run_context(self.cfg.to_dict(), self.data.dataset.name, self.device_text, {
                "torch": torch.__version__, "art": art.__version__, "art_idfr": _version(),
                "numpy": np.__version__, **sharding.processes()})
            self.cells = cells.CellCache(os.path.join(self.checkpoint_dir, cells.FOLDER), context)

    def measure_cell(self, dc: DefendedClassifier, cell: Dict[str, Any], images: str,
                     compute: Callable[[], np.ndarray]) -> np.ndarray:
        """
        Per-image hits of one attack cell on ``dc``: ``cell`` names it (``kind``: threat model or ``masking``,
        attack, eps, seed, settings; for a transfer cell also the source's fingerprint), ``images`` is the threat
        model whose images it attacks. Taken from the cell cache when an earlier run measured exactly this cell, else
        ``compute()``-d (on every rank) and stored.
        """
        from art_idfr.experiments.evaluation.cells import defence_fingerprint

        if dc.key not in self._fingerprints:
            self._fingerprints[dc.key] = defence_fingerprint(dc)
        return self.cached_hits(self._fingerprints[dc.key], cell, images, compute, dc.label, count=True)

    def cached_hits(self, fingerprint: Optional[str], cell: Dict[str, Any], images: str,
                    compute: Callable[[], np.ndarray], label: str, count: bool = False) -> np.ndarray:
        """
        :meth:`measure_cell` for any classifier whose ``fingerprint`` is known (``None``: never cached), e.g. a
        transfer source; ``count``: a reused cell counts in ``metadata["reused_cells"]``.
        """
        if self.checkpoint_dir is None or fingerprint is None:
            return compute()
        full = {**cell, "defence": fingerprint, "images": self.image_digests[images]}
        if self.cells is not None:
            self.cell_keys.setdefault(cell["kind"], []).append(self.cells.key(full))
        if self.reuse_cells:
            n = len(self.images[images])
            found = sharding.from_main(self.cells.get(full, n) if self.cells is not None else None)
            if found is not None:
                if count:
                    self.reused_cells[cell["kind"]] = self.reused_cells.get(cell["kind"], 0) + 1
                return found
        start = time.perf_counter()
        hits = compute()
        if self.cells is not None:
            self.cells.put(full, hits, f"{cell['kind']}: {label}, {cell['attack']} {eps_label(cell['eps'])}",
                           seconds=time.perf_counter() - start)
        return hits

    def _resume(self, tm: str) -> bool:
        """Take ``tm`` from the checkpoint if an earlier run finished it."""
        found = self.ckpt.restore(tm) if self.ckpt is not None and self.ckpt.has(tm) else None
        found = sharding.from_main(found)  # distributed: rank 0's checkpoint decides for every rank
        if found is None:
            return False
        recs, outcomes, seconds, when, keys = found
        self.cell_keys[tm] = list(keys)
        if not keys:
            self.cell_keys_unknown.append(tm)
        self.records.extend(recs)
        self.per_sample.update(outcomes)
        self.timings[tm] = seconds
        self.resumed[tm] = when
        self.finished.append(tm)
        logger.info("%s: taken from the evaluation checkpoint (finished %s)", tm, when)
        return True

    def _done(self, tm: str, seconds: float) -> None:
        """``tm`` is finished: checkpoint it and rewrite the partial reports."""
        self.timings[tm] = seconds
        self.finished.append(tm)
        if self.ckpt is None:
            return
        self.ckpt.save(tm, self.records, self.per_sample, seconds, cells=self.cell_keys.get(tm, ()))
        from art_idfr.experiments.evaluation.reports import write_partial_reports

        partial = EvaluationResult([r for r in self.records if r["threat_model"] in self.finished],
                                   {**self.metadata(), "partial": True, "finished_threat_models": list(self.finished)},
                                   {"passed": None, "checks": {}}, self.cfg)
        write_partial_reports(partial, self.checkpoint_dir)


def _version() -> str:
    try:
        from art_idfr import __version__

        return __version__
    except Exception:  # pragma: no cover
        return "unknown"
