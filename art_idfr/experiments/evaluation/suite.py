"""
The evaluation suite: every defence on the same test images under four threat models, plus sanity checks.

Threat models (each labelled in every record and table):

* ``black-box`` -- AEs crafted on an independently trained surrogate (other seed, optionally other architecture),
  once per (attack, eps), and given to every defended classifier (transfer attack).
* ``gray-box`` -- AEs crafted on the bare target, once per (attack, eps), the defence unknown to the attacker.
* ``white-box`` -- adaptive: the attack runs on each defended classifier itself. For ``id`` / ``idfr`` ART
  differentiates through the defence (exact autograd gradients); for the NumPy baselines ART uses the defence's
  ``estimate_gradient``, the identity (BPDA), averaged over ``eot_samples`` random draws for a randomised defence
  (TotalVarMin: BPDA + EOT); ``fast_at`` is a different model attacked directly.
* ``query`` -- score-based: ART ``SquareAttack`` (L-inf) against each defended classifier's outputs.

The white-box and query attacks run on class-stratified subsets of the evaluation images (``whitebox_n``,
``query_n``); every record carries its own ``n``. All randomness is seeded per cell (seed, threat model, defence,
attack, eps), so a cell's number does not depend on which other cells are run, and the same seed gives the same
numbers on CPU.
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import shlex
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from art_idfr.experiments.evaluation.config import QUERY_ATTACK, EvalConfig, eps_label
from art_idfr.experiments.evaluation.defences import DefendedClassifier, build_defences, wrap_model
from art_idfr.experiments.evaluation.pipeline import PreparedData, seeded

logger = logging.getLogger(__name__)

__all__ = ["EvaluationResult", "evaluate", "ATTACK_LABELS", "RECORD_FIELDS", "THREAT_DESCRIPTIONS"]

#: Display names of the attacks.
ATTACK_LABELS = {"clean": "clean", "fgsm": "FGSM", "cw": "CW", "bim": "BIM", "pgd": "PGD", "autoattack": "AutoAttack",
                 "square": "Square"}

#: Keys of every record (and columns of the CSV), in order.
RECORD_FIELDS = (
    "threat_model",
    "defence",
    "defence_key",
    "attack",
    "eps",
    "eps_label",
    "accuracy",
    "n",
    "n_correct",
    "gradient",
    "source",
    "source_accuracy",
    "attack_params",
    "seed",
    "dataset",
    "model",
    "device",
    "torch_version",
    "art_version",
    "command",
)

THREAT_DESCRIPTIONS = {
    "black-box": "AEs crafted on an independently trained surrogate model and transferred to every defended "
                 "classifier (crafted once per attack and eps).",
    "gray-box": "AEs crafted on the bare (undefended) target, defence unknown to the attacker, and given to every "
                "defended classifier (crafted once per attack and eps).",
    "white-box": "Adaptive: the attack runs on each defended classifier itself. ID and ID+FR are attacked with exact "
                 "gradients through the defence; NumPy defences (marked †) through ART's identity BPDA gradient "
                 "estimate (averaged over random draws, EOT, for a randomised one); Fast AT is its own (retrained) "
                 "model.",
    "query": "Score-based black-box: ART SquareAttack (L-inf) querying each defended classifier's outputs.",
}


@dataclass
class EvaluationResult:
    """The outcome of :func:`evaluate`: records, metadata and sanity checks; :meth:`write` saves the reports."""

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
        from art_idfr.experiments.evaluation.reports import markdown_report

        return markdown_report(self)

    def write(self, out_dir: str) -> Dict[str, str]:
        """Write ``results.json``, ``results.csv``, ``results.md`` and ``accuracy_vs_eps.png``; return the paths."""
        from art_idfr.experiments.evaluation.reports import write_reports

        return write_reports(self, out_dir)

    def accuracy(self, threat_model: str, defence: str, attack: str = "clean", eps: float = 0.0) -> float:
        """Look up one accuracy (``defence`` by key or label; ``eps`` compared to 1e-9)."""
        for r in self.records:
            if (r["threat_model"] == threat_model and defence in (r["defence_key"], r["defence"])
                    and r["attack"] == attack and abs(r["eps"] - eps) < 1e-9):
                return r["accuracy"]
        raise KeyError((threat_model, defence, attack, eps))


# ----------------------------------------------------------------------------------------------------------------------


def _cell_seed(seed: int, *parts: Any) -> int:
    """A seed per cell, from the run seed and the cell's coordinates (order-independent across cells)."""
    key = "|".join(str(p) for p in parts).encode()
    return (int(seed) * 1_000_003 + zlib.crc32(key)) % (2**31 - 1)


def _subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    from art_idfr.experiments.data import stratified_subset_indices

    n = min(int(n), len(y))
    return np.arange(len(y)) if n == len(y) else stratified_subset_indices(y, n, seed=seed)


def _device_description(clf) -> str:
    dev = torch.device(clf.device)
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    cpu = platform.processor() or platform.machine()
    return f"cpu ({torch.get_num_threads()} threads, {os.cpu_count()} cores, {cpu})"


def _command_line() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith(("art-idfr", os.path.join("art_idfr", "experiments", "cli.py"))):
        argv[0] = "art-idfr"
    return " ".join(shlex.quote(a) for a in argv)


def evaluate(
    config: EvalConfig,
    data: PreparedData,
    target_model: nn.Module,
    surrogate_model: Optional[nn.Module] = None,
    denoiser=None,
    restorer=None,
    fast_at_model: Optional[nn.Module] = None,
    model_info: Optional[Dict[str, Any]] = None,
    command: Optional[str] = None,
    verbose: bool = True,
    checkpoint_dir: Optional[str] = None,
) -> EvaluationResult:
    """
    Run the evaluation suite.

    :param config: The run's configuration (resolved here for the data's channel count).
    :param data: :func:`~art_idfr.experiments.evaluation.pipeline.prepare_data` output; the test split is evaluated.
    :param target_model: The trained target network (NCHW images in [0, 1] -> logits).
    :param surrogate_model: Source of the black-box AEs (required for the ``black-box`` threat model).
    :param denoiser: Fitted ID (for ``id`` / ``idfr``); ``restorer``: fitted FR (for ``idfr``).
    :param fast_at_model: The Fast-AT network (for ``fast_at``).
    :param model_info: Free-form metadata about the models (stored under ``metadata["models"]``).
    :param command: Command line to record (default: ``sys.argv``).
    :param verbose: Progress bars.
    :param checkpoint_dir: If given, each finished threat model is checkpointed there and the partial reports
        (``results.partial.json`` / ``.md``) rewritten, and threat models already finished by an earlier run with
        the same configuration, images, device and model weights are taken from the checkpoint instead of re-run
        (:mod:`art_idfr.experiments.evaluation.resume`; ``metadata["resumed"]`` names them).
    :return: The :class:`EvaluationResult`.
    """
    import art

    t_start = time.perf_counter()
    cfg = config.resolved(data.input_shape[0])
    if "black-box" in cfg.threat_models and surrogate_model is None:
        raise ValueError("the black-box threat model needs a surrogate model (an independently trained source).")
    command = command if command is not None else _command_line()
    dev_type = cfg.device_type
    shape, k = data.input_shape, data.num_classes

    # ---- images: one stratified evaluation set, and stratified subsets of it for white-box / query
    eval_idx = _subset(data.y_test, cfg.eval_n, cfg.seed)
    x_eval = np.ascontiguousarray(data.x_test[eval_idx], dtype=np.float32)
    y_eval = data.y_test[eval_idx].astype(np.int64)
    wb_idx = _subset(y_eval, cfg.whitebox_n, cfg.seed + 1)
    q_idx = _subset(y_eval, cfg.query_n, cfg.seed + 2)
    onehot = np.eye(k, dtype=np.float32)[y_eval]
    images = {"black-box": np.arange(len(y_eval)), "gray-box": np.arange(len(y_eval)), "white-box": wb_idx,
              "query": q_idx}

    target = wrap_model(target_model, shape, k, dev_type)
    defended = build_defences(cfg, target, denoiser=denoiser, restorer=restorer, fast_at_model=fast_at_model)
    device_text = _device_description(target)
    base = {
        "seed": cfg.seed,
        "dataset": data.dataset.name,
        "model": f"{cfg.model} (width {cfg.width:g})",
        "device": device_text,
        "torch_version": torch.__version__,
        "art_version": art.__version__,
        "command": command,
    }
    records: List[Dict[str, Any]] = []
    per_sample: Dict[Tuple[str, str, str, float], np.ndarray] = {}
    timings: Dict[str, float] = {}
    resumed: Dict[str, str] = {}
    finished: List[str] = []

    def make_metadata() -> Dict[str, Any]:
        return {
            "tool": "art-idfr evaluation suite",
            "art_idfr_version": _version(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": command,
            "dataset": data.dataset.name,
            "dataset_description": data.dataset.describe(),
            "model": base["model"],
            "device": device_text,
            "torch_version": torch.__version__,
            "art_version": art.__version__,
            "numpy_version": np.__version__,
            "python_version": platform.python_version(),
            "platform": platform.platform(),
            "seed": cfg.seed,
            "preset": cfg.preset_name,
            "n": {tm: int(len(images[tm])) for tm in cfg.threat_models},
            "eval_n": int(len(y_eval)),
            "eps": [float(e) for e in cfg.eps],
            "eps_labels": [eps_label(e) for e in cfg.eps],
            "attacks": list(cfg.attacks),
            "threat_models": list(cfg.threat_models),
            "threat_model_descriptions": {tm: THREAT_DESCRIPTIONS[tm] for tm in cfg.threat_models},
            "defences": [{"key": dc.key, "label": dc.label, "description": dc.description,
                          "white_box_gradient": dc.gradient, "randomised": dc.randomised}
                         for dc in defended.values()],
            "models": model_info or {},
            "timings_seconds": dict(timings),
            **({"resumed": {tm: f"taken from the evaluation checkpoint written {when} by an earlier run with the "
                                "same configuration, images, device and model weights" for tm, when in resumed.items()}}
               if resumed else {}),
        }

    ckpt = None
    if checkpoint_dir is not None:
        from art_idfr.experiments.evaluation.resume import EvalCheckpoint, evaluation_fingerprint

        fingerprint = evaluation_fingerprint(
            cfg.to_dict(), device_text,
            {"x_eval": x_eval, "y_eval": y_eval, "wb_idx": wb_idx, "q_idx": q_idx},
            {"target": target_model, "surrogate": surrogate_model, "denoiser": denoiser, "restorer": restorer,
             "fast_at": fast_at_model},
            {"torch": torch.__version__, "art": art.__version__, "art_idfr": _version()})
        ckpt = EvalCheckpoint(checkpoint_dir, fingerprint)

    def resume(tm: str) -> bool:
        """Take ``tm`` from the checkpoint if an earlier run finished it."""
        if ckpt is None or not ckpt.has(tm):
            return False
        recs, outcomes, seconds, when = ckpt.restore(tm)
        records.extend(recs)
        per_sample.update(outcomes)
        timings[tm] = seconds
        resumed[tm] = when
        finished.append(tm)
        logger.info("%s: taken from the evaluation checkpoint (finished %s)", tm, when)
        return True

    def done(tm: str, seconds: float) -> None:
        """``tm`` is finished: checkpoint it and rewrite the partial reports."""
        timings[tm] = seconds
        finished.append(tm)
        if ckpt is None:
            return
        ckpt.save(tm, records, per_sample, seconds)
        from art_idfr.experiments.evaluation.reports import write_partial_reports

        partial = EvaluationResult([r for r in records if r["threat_model"] in finished],
                                   {**make_metadata(), "partial": True, "finished_threat_models": list(finished)},
                                   {"passed": None, "checks": {}}, cfg)
        write_partial_reports(partial, checkpoint_dir)

    def correct(dc: DefendedClassifier, x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
        with seeded(seed):  # TotalVarMin draws its mask from np.random
            pred = dc.classifier.predict(x, batch_size=cfg.attack_batch_size)
        return np.argmax(pred, axis=1) == y

    def add(tm: str, dc: DefendedClassifier, attack: str, eps: float, hits: np.ndarray, *, gradient: str,
            source: str, source_accuracy: Optional[float] = None, params: Optional[Dict[str, Any]] = None) -> None:
        per_sample[(tm, dc.key, attack, float(eps))] = hits
        records.append({
            "threat_model": tm,
            "defence": dc.label,
            "defence_key": dc.key,
            "attack": attack,
            "eps": float(eps),
            "eps_label": eps_label(eps),
            "accuracy": float(hits.mean()) if len(hits) else float("nan"),
            "n": int(len(hits)),
            "n_correct": int(hits.sum()),
            "gradient": gradient,
            "source": source,
            "source_accuracy": source_accuracy,
            "attack_params": params or {},
            **base,
        })

    def attack_params(name: str, eps: float) -> Dict[str, Any]:
        if name == "fgsm":
            return {"norm": "inf", "eps": eps}
        if name == "autoattack":
            return {"norm": "inf", "eps": eps, "ensemble": "ART AutoAttack default (APGD-CE, APGD-DLR, DeepFool, "
                                                           "Square)"}
        if name == QUERY_ATTACK:
            return {"norm": "inf", "eps": eps, "max_iter": cfg.query_iter, "nb_restarts": 1}
        return {"norm": "inf", "eps": eps, "max_iter": cfg.attack_iter, "eps_step": min(cfg.eps_step, eps),
                **({"loss": "C&W margin"} if name == "cw" else {}), **({"random_init": True} if name == "pgd" else {})}

    def craft(name: str, clf, x: np.ndarray, y1h: np.ndarray, eps: float, seed: int) -> np.ndarray:
        from art_idfr.experiments.attacks import make_attack

        max_iter = cfg.query_iter if name == QUERY_ATTACK else cfg.attack_iter
        atk = make_attack(name, clf, eps, max_iter=max_iter, eps_step=cfg.eps_step,
                          batch_size=cfg.attack_batch_size, seed=seed, verbose=False)
        with seeded(seed):  # numpy defences inside the loop (TotalVarMin) draw from np.random
            return np.asarray(atk.generate(x=x, y=y1h), dtype=np.float32)

    # ---- clean accuracy of every defence on the evaluation set (reused by every threat model)
    t0 = time.perf_counter()
    clean: Dict[str, np.ndarray] = {}
    for key, dc in tqdm(defended.items(), desc="clean accuracy", disable=not verbose):
        clean[key] = correct(dc, x_eval, y_eval, _cell_seed(cfg.seed, "clean", key))
    timings["clean"] = time.perf_counter() - t0
    for tm in cfg.threat_models:
        for key, dc in defended.items():
            add(tm, dc, "clean", 0.0, clean[key][images[tm]], gradient="-", source="-")

    # ---- transfer threat models: AEs crafted once per (attack, eps) and reused for all defences
    sources: Dict[str, Tuple[str, Any]] = {}
    if "black-box" in cfg.threat_models:
        sur = wrap_model(surrogate_model, shape, k, dev_type)
        sur_name = f"surrogate {cfg.surrogate_model} (width {cfg.surrogate_width:g}, " \
                   f"seed {cfg.seed + cfg.surrogate_seed_offset})"
        sources["black-box"] = (sur_name, sur)
    if "gray-box" in cfg.threat_models:
        sources["gray-box"] = ("bare target (undefended)", target)
    for tm, (src_name, src_clf) in sources.items():
        if resume(tm):
            continue
        t0 = time.perf_counter()
        cells = [(a, e) for a in cfg.attacks for e in cfg.eps]
        bar = tqdm(cells, desc=f"{tm}: craft + transfer", disable=not verbose)
        for attack, eps in bar:
            bar.set_postfix_str(f"{ATTACK_LABELS[attack]} {eps_label(eps)}")
            seed = _cell_seed(cfg.seed, tm, attack, eps)
            x_adv = craft(attack, src_clf, x_eval, onehot, eps, seed)
            src_acc = float((np.argmax(src_clf.predict(x_adv, batch_size=cfg.attack_batch_size), 1) == y_eval).mean())
            for key, dc in defended.items():
                hits = correct(dc, x_adv, y_eval, _cell_seed(cfg.seed, tm, key, attack, eps, "eval"))
                add(tm, dc, attack, eps, hits, gradient="transfer", source=src_name, source_accuracy=src_acc,
                    params=attack_params(attack, eps))
        done(tm, time.perf_counter() - t0)

    # ---- adaptive white-box: the attack runs on every defended classifier
    if "white-box" in cfg.threat_models and not resume("white-box"):
        t0 = time.perf_counter()
        x_wb, y_wb, oh_wb = x_eval[wb_idx], y_eval[wb_idx], onehot[wb_idx]
        cells = [(key, a, e) for key in defended for a in cfg.attacks for e in cfg.eps]
        bar = tqdm(cells, desc="white-box (adaptive)", disable=not verbose)
        for key, attack, eps in bar:
            dc = defended[key]
            bar.set_postfix_str(f"{dc.label}: {ATTACK_LABELS[attack]} {eps_label(eps)}")
            seed = _cell_seed(cfg.seed, "white-box", key, attack, eps)
            x_adv = craft(attack, dc.classifier, x_wb, oh_wb, eps, seed)
            hits = correct(dc, x_adv, y_wb, _cell_seed(seed, "eval"))
            add("white-box", dc, attack, eps, hits, gradient=dc.gradient, source="defended classifier itself",
                params=attack_params(attack, eps))
        done("white-box", time.perf_counter() - t0)

    # ---- query-based: SquareAttack on each defended classifier's outputs
    if "query" in cfg.threat_models and not resume("query"):
        t0 = time.perf_counter()
        x_q, y_q, oh_q = x_eval[q_idx], y_eval[q_idx], onehot[q_idx]
        cells = [(key, e) for key in defended for e in cfg.eps]
        bar = tqdm(cells, desc="query (Square)", disable=not verbose)
        for key, eps in bar:
            dc = defended[key]
            bar.set_postfix_str(f"{dc.label}: Square {eps_label(eps)}")
            seed = _cell_seed(cfg.seed, "query", key, eps)
            x_adv = craft(QUERY_ATTACK, dc.classifier, x_q, oh_q, eps, seed)
            hits = correct(dc, x_adv, y_q, _cell_seed(seed, "eval"))
            add("query", dc, QUERY_ATTACK, eps, hits, gradient="none (scores only)",
                source="queries to the defended classifier", params=attack_params(QUERY_ATTACK, eps))
        done("query", time.perf_counter() - t0)

    # ---- sanity checks
    t0 = time.perf_counter()
    sanity = _sanity_checks(cfg, target, defended, x_eval, y_eval, onehot, wb_idx, per_sample, verbose)
    timings["sanity"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start

    metadata = make_metadata()
    result = EvaluationResult(records, metadata, sanity, cfg, per_sample)
    for warning in sanity.get("warnings", []):
        logger.warning(warning)
    return result


def _version() -> str:
    try:
        from art_idfr import __version__

        return __version__
    except Exception:  # pragma: no cover
        return "unknown"


def _sign_test_p(wins: int, losses: int) -> float:
    """One-sided exact sign (McNemar) test: P(X >= wins) for X ~ Binomial(wins + losses, 1/2) (SciPy's binomtest)."""
    from scipy.stats import binomtest

    return 1.0 if wins + losses == 0 else float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)


def compare_whitebox(per_sample, wb_idx, other: str, defences: Dict[str, Tuple[str, str]], failing: bool = True,
                     alpha: float = 0.05) -> Tuple[Dict[str, Any], List[str]]:
    """
    Sanity check 3: for every defence / attack / eps, is the adaptive white-box accuracy above the ``other`` threat
    model's accuracy on the same images? Every such cell is listed as a violation. Because both are measured on the
    same images, each violation also gets a paired one-sided sign test on the images where the two disagree
    (``wins``: right under white-box, wrong under ``other``; ``losses``: the reverse); a violation with p < ``alpha``
    is ``significant``. Status: PASS (no violation), WARN (violations, none significant, or ``failing=False``),
    FAIL (``failing`` and at least one significant violation).

    ``per_sample`` maps ``(threat_model, defence_key, attack, eps)`` to a boolean hit vector (white-box vectors are
    over the white-box images; the others over all evaluation images, indexed by ``wb_idx``); ``defences`` maps
    each defence key to its ``(label, gradient description)``. Returns the check's record and the warning lines.
    """
    comparisons, violations, warnings = [], [], []
    for (tm, key, attack, eps), hits in per_sample.items():
        ref = per_sample.get((other, key, attack, eps))
        if tm != "white-box" or attack == "clean" or ref is None:
            continue
        hits, ref = np.asarray(hits, dtype=bool), np.asarray(ref, dtype=bool)[wb_idx]
        a_wb, a_ref = float(hits.mean()), float(ref.mean())
        label, gradient = defences[key]
        wins, losses = int((hits & ~ref).sum()), int((~hits & ref).sum())
        p = _sign_test_p(wins, losses)
        item = {"defence": label, "defence_key": key, "attack": attack, "eps": eps, "eps_label": eps_label(eps),
                "versus": other, "white_box_accuracy": a_wb, "other_accuracy": a_ref, "n": int(len(hits)),
                "gradient": gradient, "wins": wins, "losses": losses, "p_value": p, "significant": p < alpha}
        comparisons.append(item)
        if a_wb > a_ref:
            violations.append(item)
            warnings.append(
                f"sanity flag: white-box {ATTACK_LABELS[attack]} {eps_label(eps)} on {label} leaves "
                f"{100 * a_wb:.1f}% > {other} {100 * a_ref:.1f}% on the same {len(hits)} images "
                f"({wins} vs {losses} images the two disagree on, one-sided sign test p = {p:.2g}"
                f"{'' if p < alpha else ', within sampling noise'}; gradient: {gradient}): the adaptive attack is "
                "weaker than a transfer attack.")
    n_significant = sum(v["significant"] for v in violations)
    status = ("SKIPPED" if not comparisons else "PASS" if not violations
              else "FAIL" if failing and n_significant else "WARN")
    check = {
        "description": f"for every defence/attack/eps, the adaptive white-box accuracy must not exceed the {other} "
                       "accuracy on the same images; each violation is flagged, and it fails where a paired "
                       f"one-sided sign test puts the excess beyond sampling noise (p < {alpha:g})"
                       + ("" if failing else " (informational: WARN, not FAIL)"),
        "status": status,
        "alpha": alpha,
        "n_comparisons": len(comparisons),
        "n_violations": len(violations),
        "n_significant": n_significant,
        "violations": violations,
    }
    return check, warnings


def _sanity_checks(cfg, target, defended, x_eval, y_eval, onehot, wb_idx, per_sample, verbose) -> Dict[str, Any]:
    """
    The three checks run with every evaluation. Returns ``{"passed", "checks", "warnings"}``; each check has a
    ``status`` (PASS / FAIL / SKIPPED), a description and its numbers.
    """
    from art_idfr.experiments.attacks import make_attack

    checks: Dict[str, Any] = {}
    warnings: List[str] = []
    x_wb, y_wb, oh_wb = x_eval[wb_idx], y_eval[wb_idx], onehot[wb_idx]

    # 1. undefended white-box BIM at a very large eps must drive the accuracy to ~0
    iters = max(cfg.attack_iter, 20)
    step = max(cfg.eps_step, cfg.sanity_eps / 8)
    seed = _cell_seed(cfg.seed, "sanity", "bim", cfg.sanity_eps)
    atk = make_attack("bim", target, cfg.sanity_eps, max_iter=iters, eps_step=step, batch_size=cfg.attack_batch_size,
                      seed=seed, verbose=False)
    with seeded(seed):
        x_adv = atk.generate(x=x_wb, y=oh_wb)
    acc = float((np.argmax(target.predict(x_adv, batch_size=cfg.attack_batch_size), 1) == y_wb).mean())
    ok = acc < 0.05
    checks["undefended_whitebox_large_eps"] = {
        "description": f"white-box BIM at eps={eps_label(cfg.sanity_eps)} ({iters} steps of {step:.4g}) on the "
                       "undefended target must reach accuracy < 5% (otherwise the attack or the gradients are broken)",
        "attack": "bim", "eps": cfg.sanity_eps, "n": int(len(y_wb)), "accuracy": acc, "threshold": 0.05,
        "status": "PASS" if ok else "FAIL",
    }
    if not ok:
        warnings.append(f"sanity check failed: undefended white-box BIM eps={cfg.sanity_eps:g} leaves "
                        f"{100 * acc:.1f}% accuracy (expected < 5%).")

    # 2. the loss gradient through the defended ID / ID+FR classifier must be finite and non-zero
    grads: Dict[str, Any] = {}
    for key in ("idfr", "id"):
        if key not in defended:
            continue
        n = min(16, len(x_wb))
        g = defended[key].classifier.loss_gradient(x_wb[:n], oh_wb[:n])
        finite = bool(np.isfinite(g).all())
        nonzero = float((np.abs(g).reshape(n, -1).max(axis=1) > 0).mean()) if finite else 0.0
        grads[key] = {"n": n, "finite": finite, "fraction_nonzero_samples": nonzero,
                      "mean_abs": float(np.abs(g).mean()) if finite else None,
                      "max_abs": float(np.abs(g).max()) if finite else None,
                      "status": "PASS" if finite and nonzero == 1.0 else "FAIL"}
        if grads[key]["status"] == "FAIL":
            warnings.append(f"sanity check failed: loss gradient through {defended[key].label} is "
                            f"{'not finite' if not finite else 'zero for some samples'}.")
    checks["defended_gradient"] = {
        "description": "loss_gradient of the defended ID+FR (and ID) classifier on white-box images: finite and "
                       "non-zero for every sample (no gradient masking by construction)",
        "status": ("SKIPPED" if not grads else "PASS" if all(v["status"] == "PASS" for v in grads.values())
                   else "FAIL"),
        "per_defence": grads,
    }

    # 3. white-box accuracy must not exceed the black-box accuracy on the same images (each violation flagged;
    #    FAIL only where the excess is beyond sampling noise, by a paired sign test on the images the two disagree
    #    on); the same comparison against gray-box is reported as warnings only (single-step FGSM is not monotone)
    for other, name, failing in (("black-box", "whitebox_not_above_blackbox", True),
                                 ("gray-box", "whitebox_not_above_graybox", False)):
        labels = {k: (d.label, d.gradient) for k, d in defended.items()}
        check, flags = compare_whitebox(per_sample, wb_idx, other, labels, failing=failing)
        checks[name] = check
        warnings.extend(flags)
    return {"passed": all(c["status"] != "FAIL" for c in checks.values()), "checks": checks, "warnings": warnings}
