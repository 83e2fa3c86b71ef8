"""
Gradient-masking checks beside every adaptive white-box number (Athalye et al. 2018; Carlini et al. 2019, "On
evaluating adversarial robustness"). For each defence of ``sanity_defences`` in the run (by default those attacked
with exact gradients: ID, ID+FR, adaptive ID+FR, ID+FR+inner adaptive, Fast AT, none; add the baselines to check
their BPDA / EOT white-box rows), on the white-box images:

1. ``gradient_free_not_stronger`` — a gradient-free attack (Square, ``sanity_square_iter`` queries) must not beat
   the gradient attacks of the white-box table (per image: broken by any of them) beyond sampling noise;
2. ``large_eps_to_zero`` — PGD at a very large budget (``sanity_eps``) must bring accuracy to < 5%;
3. ``more_steps_not_better`` — PGD with 5x the steps and 2 random restarts must not leave *more* images correct
   than the table's PGD budget, beyond sampling noise.

"Beyond noise": a paired one-sided sign test on the images where the two attacks disagree, p < 0.05. A defence that
fails any check has its white-box and query numbers marked as failed in the reports.

Distributed (``torchrun``): every check attacks a shard of the white-box images per rank and compares the gathered
per-image hits; Square and the 2-restart PGD are reproduced within tolerance only (see ``sharding``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np

from art_idfr._utils import seeded
from art_idfr.experiments.evaluation import sharding
from art_idfr.experiments.evaluation.config import eps_label
from art_idfr.experiments.evaluation.seeds import cell_seed

#: gradient attacks of the white-box table whose per-image results the Square check compares with
GRADIENT_ATTACKS = ("fgsm", "cw", "bim", "pgd", "autoattack")
ALPHA = 0.05


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided p-value of ``wins`` vs ``losses`` under a fair coin (1.0 when there are no discordant pairs)."""
    from scipy.stats import binomtest

    return float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue) if wins + losses else 1.0


def check_eps(cfg) -> float:
    """The budget of checks 1 and 3: the adaptive training budget when it is a table budget, else the largest table
    budget up to 16/255."""
    eps = [e for e in cfg.eps if e <= 16 / 255 + 1e-9] or list(cfg.eps)
    adaptive = cfg.adaptive.eps
    return adaptive if any(abs(adaptive - e) < 1e-9 for e in eps) else max(eps)


#: attack runs of the checks per defence (Square; PGD at a large eps; PGD short and long), for progress bars
RUNS_PER_DEFENCE = 4


def checked_defences(suite) -> List[str]:
    """The keys of the defences of ``suite`` that the checks attack: ``sanity_defences`` (by default those with exact
    gradients) that the run has, in table order; none without a white-box table."""
    if "white-box" not in suite.cfg.threat_models:
        return []
    return [k for k in suite.defended if k in suite.cfg.sanity_defences]


def gradient_masking_checks(suite, bar=None) -> Tuple[Dict[str, Any], List[str]]:
    """
    The three checks for every checked defence of ``suite`` (an ``Evaluation`` whose white-box table ran); ``bar``
    (a progress bar, optional) advances by one per attack run, :data:`RUNS_PER_DEFENCE` per defence, its postfix
    naming the check.
    """
    cfg = suite.cfg
    keys = checked_defences(suite)
    if not keys:
        return {}, []
    x, y, oh = suite.x_eval[suite.wb_idx], suite.y_eval[suite.wb_idx], suite.onehot[suite.wb_idx]
    eps = check_eps(cfg)
    checks: Dict[str, Any] = {name: {"status": "PASS", "per_defence": {}} for name in
                              ("gradient_free_not_stronger", "large_eps_to_zero", "more_steps_not_better")}
    warnings: List[str] = []
    for key in keys:
        dc = suite.defended[key]
        for name, run, runs, what in (
                ("gradient_free_not_stronger", lambda: _square_vs_gradient(suite, dc, x, y, oh, eps), 1,
                 f"Square {cfg.sanity_square_iter} queries"),
                ("large_eps_to_zero", lambda: _large_eps(suite, dc, x, y, oh), 1, f"PGD {eps_label(cfg.sanity_eps)}"),
                ("more_steps_not_better", lambda: _more_steps(suite, dc, x, y, oh, eps), 2,
                 f"PGD-{cfg.attack_iter} vs PGD-{5 * cfg.attack_iter}x2")):
            if bar is not None:
                bar.set_postfix_str(f"{dc.label}: {what}", refresh=False)
            item = run()
            if bar is not None:
                bar.update(runs)
            if item is None:
                continue
            checks[name]["per_defence"][key] = item
            if item["status"] == "FAIL":
                checks[name]["status"] = "FAIL"
                warnings.append(f"gradient-masking check {name} FAILED on {dc.label}: {item['summary']}")
    checks["gradient_free_not_stronger"]["description"] = (
        f"Square ({cfg.sanity_square_iter} queries) at eps={eps_label(eps)} must not break more white-box images "
        "than the table's gradient attacks together (paired sign test, p < 0.05 fails)")
    checks["large_eps_to_zero"]["description"] = (
        f"PGD at eps={eps_label(cfg.sanity_eps)} through each defence must leave < 5% accuracy")
    checks["more_steps_not_better"]["description"] = (
        f"PGD at eps={eps_label(eps)} with 5x the steps and 2 restarts must not leave more images correct than "
        f"{cfg.attack_iter} steps (paired sign test, p < 0.05 fails)")
    return checks, warnings


def failed_defences(checks: Dict[str, Any]) -> Dict[str, List[str]]:
    """``{defence key: [names of the gradient-masking checks it failed]}``."""
    out: Dict[str, List[str]] = {}
    for name in ("gradient_free_not_stronger", "large_eps_to_zero", "more_steps_not_better"):
        for key, item in checks.get(name, {}).get("per_defence", {}).items():
            if item.get("status") == "FAIL":
                out.setdefault(key, []).append(name)
    return out


def _attack_hits(suite, attack: str, dc, x, y, oh, eps: float, seed_parts, **kwargs) -> np.ndarray:
    """
    Per-image hits of the defended classifier ``dc`` under ``attack`` on the white-box images ``x``, through the
    suite's cell cache (``suite.measure_cell``). Distributed: each rank attacks its shard (with the single-process
    random starts where ART allows it: PGD with one start, see ``sharding``), hits gathered.
    """
    seed = cell_seed(suite.cfg.seed, "masking", *seed_parts)
    cell = {"kind": "masking", "attack": attack, "eps": eps, "seed": seed, "params": kwargs}
    return suite.measure_cell(dc, cell, "white-box",
                              lambda: _run_attack(suite.cfg, attack, dc.classifier, x, y, oh, eps, seed, **kwargs))


def _run_attack(cfg, attack: str, clf, x, y, oh, eps: float, seed: int, **kwargs) -> np.ndarray:
    """The attack of :func:`_attack_hits`, run."""
    from art_idfr.experiments.attacks import make_attack

    part = sharding.shard(len(y))
    skip = sharding.start_draws(attack, part.start, sharding.image_size(x),
                                num_random_init=kwargs.get("num_random_init", 1))
    atk = make_attack(attack, clf, eps, batch_size=cfg.attack_batch_size, seed=seed, verbose=False, rng_skip=skip,
                      **kwargs)
    with seeded(seed):
        x_adv = sharding.generate(atk, x[part], oh[part])
        hits = sharding.predicted_hits(clf, x_adv, y[part], cfg.attack_batch_size)
    return sharding.gather_hits(hits)


def _square_vs_gradient(suite, dc, x, y, oh, eps):
    grads = [suite.per_sample[k] for k in suite.per_sample
             if k[0] == "white-box" and k[1] == dc.key and k[2] in GRADIENT_ATTACKS and abs(k[3] - eps) < 1e-9]
    if not grads:
        return None
    grad_hits = np.logical_and.reduce([np.asarray(g, dtype=bool) for g in grads])  # survives every gradient attack
    sq = _attack_hits(suite, "square", dc, x, y, oh, eps, (dc.key, "square", eps),
                      max_iter=suite.cfg.sanity_square_iter, **dc.square_settings("square"))
    wins, losses = int((grad_hits & ~sq).sum()), int((~grad_hits & sq).sum())  # Square broke more / fewer
    p = sign_test_p(wins, losses)
    status = "FAIL" if p < ALPHA else "PASS"
    return {"eps": eps, "n": int(len(y)), "square_accuracy": float(sq.mean()), "gradient_accuracy":
            float(grad_hits.mean()), "gradient_attacks": len(grads), "square_only": wins, "gradient_only": losses,
            "p_value": p, "status": status, "summary": f"Square {100 * sq.mean():.1f}% vs gradient attacks "
            f"{100 * grad_hits.mean():.1f}% at {eps_label(eps)} ({wins} vs {losses} images, p = {p:.2g})"}


def _large_eps(suite, dc, x, y, oh):
    cfg = suite.cfg
    steps = max(cfg.attack_iter, 20)
    hits = _attack_hits(suite, "pgd", dc, x, y, oh, cfg.sanity_eps, (dc.key, "large", cfg.sanity_eps),
                        max_iter=steps, eps_step=cfg.sanity_eps / 8)
    acc = float(hits.mean())
    return {"eps": cfg.sanity_eps, "n": int(len(y)), "steps": steps, "accuracy": acc, "threshold": 0.05,
            "status": "PASS" if acc < 0.05 else "FAIL",
            "summary": f"PGD at {eps_label(cfg.sanity_eps)} leaves {100 * acc:.1f}% (must be < 5%)"}


def _more_steps(suite, dc, x, y, oh, eps):
    cfg = suite.cfg
    step = 2.5 * eps / cfg.attack_iter
    short = _attack_hits(suite, "pgd", dc, x, y, oh, eps, (dc.key, "short", eps),
                         max_iter=cfg.attack_iter, eps_step=step)
    long = _attack_hits(suite, "pgd", dc, x, y, oh, eps, (dc.key, "long", eps),
                        max_iter=5 * cfg.attack_iter, eps_step=step, num_random_init=2)
    wins, losses = int((long & ~short).sum()), int((~long & short).sum())  # more steps left MORE images correct
    p = sign_test_p(wins, losses)
    return {"eps": eps, "n": int(len(y)), "steps": [cfg.attack_iter, 5 * cfg.attack_iter], "restarts": [1, 2],
            "accuracy_short": float(short.mean()), "accuracy_long": float(long.mean()), "long_only": wins,
            "short_only": losses, "p_value": p, "status": "FAIL" if p < ALPHA else "PASS",
            "summary": f"PGD-{cfg.attack_iter} {100 * short.mean():.1f}% vs PGD-{5 * cfg.attack_iter}x2 "
                       f"{100 * long.mean():.1f}% at {eps_label(eps)} (p = {p:.2g})"}
