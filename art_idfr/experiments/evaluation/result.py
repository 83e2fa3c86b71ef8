"""The outcome of an evaluation run (:class:`EvaluationResult`): records, metadata, sanity checks and per-image hits."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

import numpy as np

from art_idfr.experiments.evaluation import reports
from art_idfr.experiments.evaluation.config import EvalConfig

__all__ = ["EvaluationResult"]


@dataclass
class EvaluationResult:
    """The outcome of :func:`~art_idfr.experiments.evaluation.suite.evaluate`: records, metadata and sanity checks;
    :meth:`write` saves the reports."""

    records: List[Dict[str, Any]]
    metadata: Dict[str, Any]
    sanity_checks: Dict[str, Any]
    config: EvalConfig
    per_sample: Dict[Tuple[str, str, str, float], np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> Dict[str, Any]:
        """The JSON document: ``metadata``, ``config``, ``sanity_checks``, ``records``."""
        return {
            "metadata": self.metadata,
            "config": self.config.to_dict(),
            "sanity_checks": self.sanity_checks,
            "records": self.records,
        }

    def markdown(self) -> str:
        """Markdown tables in the paper's layout, one per threat model, and the sanity checks."""
        return reports.markdown_report(self)

    def write(self, out_dir: str) -> Dict[str, str]:
        """Write ``results.json``, ``results.csv``, ``results.md`` and ``accuracy_vs_eps.png``; return the paths."""
        return reports.write_reports(self, out_dir)

    def accuracy(self, threat_model: str, defence: str, attack: str = "clean", eps: float = 0.0) -> float:
        """Look up one accuracy (``defence`` by key or label; ``eps`` compared to 1e-9)."""
        for r in self.records:
            if (r["threat_model"] == threat_model and defence in (r["defence_key"], r["defence"])
                    and r["attack"] == attack and abs(r["eps"] - eps) < 1e-9):
                return r["accuracy"]
        raise KeyError((threat_model, defence, attack, eps))
