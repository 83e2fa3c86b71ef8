"""
The sanity checks run with every evaluation (:func:`_sanity_checks`): undefended white-box BIM at a very large eps
must reach ~0% (check 1), the loss gradient through the defended ID / ID+FR must be finite and non-zero (check 2),
and the adaptive white-box accuracy must not exceed the black-box (FAIL) or gray-box (warning) accuracy on the same
images, with a paired sign test per violation (check 3, :func:`compare_whitebox`).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

from art_idfr._utils import seeded
from art_idfr.experiments.evaluation import sharding
from art_idfr.experiments.evaluation.labels import ATTACK_LABELS
from art_idfr.experiments.evaluation.names import eps_label
from art_idfr.experiments.evaluation.seeds import cell_seed as _cell_seed

__all__ = ["compare_whitebox"]


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
    each defence key to its ``(label, gradient description)``. Returns the check's record and the warning lines,
    in ``defences``' order, then attack, then eps (the same for a run resumed from its checkpoint).
    """
    comparisons, violations, warnings = [], [], []
    order = {key: i for i, key in enumerate(defences)}
    cells = [(cell[1:], hits) for cell, hits in per_sample.items() if cell[0] == "white-box"]
    for (key, attack, eps), hits in sorted(cells, key=lambda c: (order[c[0][0]], c[0][1], c[0][2])):
        ref = per_sample.get((other, key, attack, eps))
        if attack == "clean" or ref is None:
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


#: steps of :func:`_sanity_checks` on a progress bar (the large-eps BIM, the gradients)
SANITY_STEPS = 2


def _sanity_checks(cfg, target, defended, x_eval, y_eval, onehot, wb_idx, per_sample, verbose,
                   bar=None) -> Dict[str, Any]:
    """
    The three checks run with every evaluation. Returns ``{"passed", "checks", "warnings"}``; each check has a
    ``status`` (PASS / FAIL / SKIPPED), a description and its numbers. ``bar`` (a progress bar, optional) advances
    by one for each of checks 1 and 2 (:data:`SANITY_STEPS`).
    """
    warnings: List[str] = []
    x_wb, oh_wb = x_eval[wb_idx], onehot[wb_idx]
    if bar is not None:
        bar.set_postfix_str(f"undefended: BIM {eps_label(cfg.sanity_eps)}", refresh=False)
    checks: Dict[str, Any] = {
        "undefended_whitebox_large_eps": _check_large_eps(cfg, target, x_wb, y_eval[wb_idx], oh_wb, warnings)}
    if bar is not None:
        bar.update(1)
        bar.set_postfix_str("gradients through ID / ID+FR", refresh=False)
    checks["defended_gradient"] = _check_gradients(defended, x_wb, oh_wb, warnings)
    if bar is not None:
        bar.update(1)
    # 3. white-box accuracy must not exceed the black-box accuracy on the same images (each violation flagged;
    #    FAIL only where the excess is beyond sampling noise, by a paired sign test on the images the two disagree
    #    on); the same comparison against gray-box is reported as warnings only (single-step FGSM is not monotone)
    labels = {k: (d.label, d.gradient) for k, d in defended.items()}
    for other, name, failing in (("black-box", "whitebox_not_above_blackbox", True),
                                 ("gray-box", "whitebox_not_above_graybox", False)):
        checks[name], flags = compare_whitebox(per_sample, wb_idx, other, labels, failing=failing)
        warnings.extend(flags)
    return {"passed": all(c["status"] != "FAIL" for c in checks.values()), "checks": checks, "warnings": warnings}


def _check_large_eps(cfg, target, x_wb, y_wb, oh_wb, warnings: List[str]) -> Dict[str, Any]:
    """Check 1: undefended white-box BIM at a very large eps must drive the accuracy to ~0."""
    from art_idfr.experiments.attacks import make_attack

    iters = max(cfg.attack_iter, 20)
    step = max(cfg.eps_step, cfg.sanity_eps / 8)
    seed = _cell_seed(cfg.seed, "sanity", "bim", cfg.sanity_eps)
    atk = make_attack("bim", target, cfg.sanity_eps, max_iter=iters, eps_step=step, batch_size=cfg.attack_batch_size,
                      seed=seed, verbose=False)
    part = sharding.shard(len(y_wb))  # distributed: this rank's images (BIM is deterministic), hits gathered
    with seeded(seed):
        x_adv = sharding.generate(atk, x_wb[part], oh_wb[part])
    acc = float(sharding.gather_hits(sharding.predicted_hits(target, x_adv, y_wb[part], cfg.attack_batch_size)).mean())
    ok = acc < 0.05
    if not ok:
        warnings.append(f"sanity check failed: undefended white-box BIM eps={cfg.sanity_eps:g} leaves "
                        f"{100 * acc:.1f}% accuracy (expected < 5%).")
    return {
        "description": f"white-box BIM at eps={eps_label(cfg.sanity_eps)} ({iters} steps of {step:.4g}) on the "
                       "undefended target must reach accuracy < 5% (otherwise the attack or the gradients are broken)",
        "attack": "bim", "eps": cfg.sanity_eps, "n": int(len(y_wb)), "accuracy": acc, "threshold": 0.05,
        "status": "PASS" if ok else "FAIL",
    }


def _check_gradients(defended, x_wb, oh_wb, warnings: List[str]) -> Dict[str, Any]:
    """Check 2: the loss gradient through each defended ID / ID+FR classifier must be finite and non-zero."""
    grads: Dict[str, Any] = {}
    for key in ("idfr", "id", "idfr_adaptive", "idfr_inner"):
        if key not in defended:
            continue
        n = min(16, len(x_wb))
        g = defended[key].classifier.loss_gradient(x_wb[:n], oh_wb[:n])
        finite = bool(np.isfinite(g).all())
        nonzero = float((np.abs(g).reshape(n, -1).max(axis=1) > 0).mean()) if finite else 0.0
        grads[key] = {"label": defended[key].label, "n": n, "finite": finite, "fraction_nonzero_samples": nonzero,
                      "mean_abs": float(np.abs(g).mean()) if finite else None,
                      "max_abs": float(np.abs(g).max()) if finite else None,
                      "status": "PASS" if finite and nonzero == 1.0 else "FAIL"}
        if grads[key]["status"] == "FAIL":
            warnings.append(f"sanity check failed: loss gradient through {defended[key].label} is "
                            f"{'not finite' if not finite else 'zero for some samples'}.")
    return {
        "description": "loss_gradient of the defended ID+FR (and ID) classifier on white-box images: finite and "
                       "non-zero for every sample (no gradient masking by construction)",
        "status": ("SKIPPED" if not grads else "PASS" if all(v["status"] == "PASS" for v in grads.values())
                   else "FAIL"),
        "per_defence": grads,
    }
