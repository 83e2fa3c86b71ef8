"""
Check a results.json against the goals of the "results that stand" issue, column by column, and print a Markdown
table (nothing is written; the numbers come only from the file).

    python benchmarks/goals.py benchmarks/results/fashion_mnist_cpu/results.json

Goals (black-box threat model, same target and images):
- IDFR's clean accuracy at most 0.7 points below the undefended clean accuracy;
- black-box accuracy drops (undefended clean minus IDFR under attack) no larger than the paper's ResNet-18 CIFAR-10
  drops: FGSM 3.2/7.0/17.8, CW 1.5/2.4/3.0, BIM 2.0/2.3/4.1 points at eps 4/8/16 (/255);
- IDFR above every ART baseline (and Fast AT) in every black-box column.

And, when the run has the adaptive ID+FR (``idfr_adaptive``, not in the paper; issue "Adaptive-robust IDFR"), the
goals of the run's setting (``ADAPTIVE_GOALS``, chosen by the run's dataset and preset):
- Fashion-MNIST CPU: white-box AutoAttack at 8/255 and 16/255 at least Fast AT's on the same target; clean accuracy
  at least the undefended one minus 2 points; black-box no more than 2 points below today's ID+FR in every column;
- CIFAR-10 CPU: white-box AutoAttack at 8/255 at least Fast AT's; clean at least the undefended one minus 5 points;
- paper scale (GPU): white-box AutoAttack at 8/255 at least 43% at clean accuracy at least 80% (Fast AT's
  RobustBench numbers, reached without retraining the classifier);
- in every setting, every gradient-masking check passed for it.
And, when the run has the paper's own baselines (ComDefend, NRP, ADP, SOAP; issue 42): IDFR above each of them in every
black-box column (the paper's claim, measured whatever it shows), and their white-box rows (BPDA / EOT) consistent
with the published adaptive evaluations (Croce et al., ICML 2022: ADP and SOAP far below their black-box numbers):
the white-box BIM accuracy at 8/255 and 16/255 at least ``WHITEBOX_GAP`` points below the black-box one.
Beside ART's AutoAttack, the same two goals as judged by the second evaluator (``adaptive_torchattacks.py``), when
``torchattacks.jsonl`` next to the results holds lines for this run's adaptive recipe and Fast AT settings.
"""
import json
import os
import re
import sys
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

PAPER_DROP = {("fgsm", 4): 3.2, ("fgsm", 8): 7.0, ("fgsm", 16): 17.8, ("cw", 4): 1.5, ("cw", 8): 2.4, ("cw", 16): 3.0,
              ("bim", 4): 2.0, ("bim", 8): 2.3, ("bim", 16): 4.1}


@dataclass(frozen=True)
class AdaptiveGoals:
    """One setting's goals for the adaptive ID+FR (issue "Adaptive-robust IDFR"); ``None`` = no such goal."""

    fast_at_eps: Tuple[int, ...] = ()  # white-box AutoAttack at these eps (/255) at least Fast AT's
    autoattack_floor: Optional[Dict[int, float]] = None  # white-box AutoAttack at eps (/255) at least this (%)
    clean_drop: Optional[float] = None  # clean at least the undefended clean minus this (points)
    clean_floor: Optional[float] = None  # clean at least this (%)
    blackbox_within: Optional[float] = None  # every black-box column at most this below the paper's ID+FR


ADAPTIVE_GOALS = {
    "fashion_mnist_cpu": AdaptiveGoals(fast_at_eps=(8, 16), clean_drop=2.0, blackbox_within=2.0),
    "cifar10_cpu": AdaptiveGoals(fast_at_eps=(8,), clean_drop=5.0),
    "paper": AdaptiveGoals(autoattack_floor={8: 43.0}, clean_floor=80.0),
}


#: the paper's own baselines (issue 42), in the paper's table order
PAPER_BASELINES = {"nrp": "NRP", "comdefend": "ComDefend", "adp": "ADP", "soap": "SOAP"}
#: the randomised / purifying baselines that adaptive attacks broke (Croce et al. 2022), checked white-box vs black-box
BROKEN_BY_ADAPTIVE = ("adp", "soap")
#: white-box BIM at least this many points below black-box BIM for "consistent with the adaptive evaluations"
WHITEBOX_GAP = 10.0
#: a baseline within this many points of chance on clean images is a failed fit: reported, never counted as beaten
CHANCE_MARGIN = 2.0


def collapsed_baselines(result: dict, present: list) -> dict:
    """``{baseline: black-box clean accuracy}`` of the baselines of ``present`` whose fit failed (clean accuracy
    within :data:`CHANCE_MARGIN` points of chance, the class count read from the run's dataset description)."""
    found = re.search(r"(\d+) classes", result.get("metadata", {}).get("dataset_description", ""))
    chance = 100.0 / int(found.group(1)) if found else 10.0
    clean = {r["defence_key"]: 100 * r["accuracy"] for r in result["records"]
             if r["threat_model"] == "black-box" and r["attack"] == "clean"}
    return {b: clean[b] for b in present if b in clean and clean[b] <= chance + CHANCE_MARGIN}


def goal_setting(metadata: dict) -> str:
    """The ``ADAPTIVE_GOALS`` key of a run: ``paper`` for the paper preset, else its dataset's CPU setting."""
    if metadata.get("preset") == "paper":
        return "paper"
    dataset = metadata.get("dataset", "")
    for prefix, setting in (("fashion_mnist", "fashion_mnist_cpu"), ("cifar10", "cifar10_cpu")):
        if dataset.startswith(prefix):
            return setting
    raise ValueError(f"No adaptive goals for dataset {dataset!r} (preset {metadata.get('preset')!r}); the issue "
                     f"sets goals for {', '.join(ADAPTIVE_GOALS)}.")


def main(path: str) -> None:
    result = json.load(open(path))
    bb = [r for r in result["records"] if r["threat_model"] == "black-box"]
    acc = {(r["defence_key"], r["attack"], round(r["eps"] * 255, 3)): 100 * r["accuracy"] for r in bb}
    label = {round(r["eps"] * 255, 3): r["eps_label"] for r in bb}
    baselines = sorted({k[0] for k in acc} - {"none", "id", "idfr", "idfr_adaptive", "idfr_inner"})
    meta = result["metadata"]
    print(f"Goals check for `{path}` — {meta['dataset']}, {meta['model']}, black-box, n = {bb[0]['n']}, "
          f"seed {meta['seed']}, device {meta['device']}; results made by `{meta['command']}`. "
          f"Generated by: `python benchmarks/goals.py {path}`\n")
    if ("idfr", "clean", 0) not in acc:
        print("No ID+FR (the paper's IDFR) row in this run: the paper's goals are not judged here.")
        return
    clean_none, clean_idfr = acc[("none", "clean", 0)], acc[("idfr", "clean", 0)]
    print("| column | undefended | IDFR | IDFR drop vs clean | goal | met | best baseline | IDFR above all |")
    print("|---|---:|---:|---:|---|---|---|---|")
    drop = clean_none - clean_idfr
    print(f"| clean | {clean_none:.1f} | {clean_idfr:.1f} | {drop:.1f} | ≤ 0.7 | {'yes' if drop <= 0.7 else 'NO'} | "
          f"{max((acc[(b, 'clean', 0)], b) for b in baselines)[1]} "
          f"{max(acc[(b, 'clean', 0)] for b in baselines):.1f} | "
          f"{'yes' if all(clean_idfr > acc[(b, 'clean', 0)] for b in baselines) else 'NO'} |")
    for attack in ("fgsm", "cw", "bim"):
        for e in sorted({k[2] for k in acc if k[1] == attack}):
            if ("idfr", attack, e) not in acc:
                continue
            a = acc[("idfr", attack, e)]
            drop = clean_none - a
            goal = PAPER_DROP.get((attack, e))
            met = "n/a" if goal is None else ("yes" if drop <= goal else "NO")
            best = max((acc[(b, attack, e)], b) for b in baselines if (b, attack, e) in acc)
            above = all(a > acc[(b, attack, e)] for b in baselines if (b, attack, e) in acc)
            print(f"| {attack.upper()} {label[e]} | {acc[('none', attack, e)]:.1f} | {a:.1f} | {drop:.1f} | "
                  f"{'≤ ' + str(goal) if goal is not None else '—'} | {met} | {best[1]} {best[0]:.1f} | "
                  f"{'yes' if above else 'NO'} |")


#: the rows judged by a setting's adaptive goals: the adaptive ID+FR and the restorers inside the target (issue 41)
ADAPTIVE_ROWS = {"idfr_adaptive": "adaptive ID+FR", "idfr_inner": "inner restorers"}
#: issue 41: the restorers inside the target add at most this fraction of the target's parameters
INNER_MAX_FRACTION = 0.10


def adaptive_goals(result: dict) -> None:
    """The goals of the run's setting, column by column, for each adaptive row it has (``ADAPTIVE_ROWS``)."""
    acc = {(r["threat_model"], r["defence_key"], r["attack"], round(r["eps"] * 255, 3)): 100 * r["accuracy"]
           for r in result["records"]}
    present = {k: n for k, n in ADAPTIVE_ROWS.items() if ("black-box", k, "clean", 0) in acc}
    if not present:
        return
    setting = goal_setting(result["metadata"])
    goals = ADAPTIVE_GOALS[setting]
    for key, name in present.items():
        heading = "Adaptive ID+FR" if key == "idfr_adaptive" else "Restorers inside the target (issue 41)"
        print(f"\n### {heading} (not in the paper): the `{setting}` goals\n")
        print(f"| goal | {name} | reference | met |")
        print("|---|---:|---:|---|")
        rows = _clean_rows(acc, goals, key) + _whitebox_rows(acc, goals, key) + _blackbox_rows(acc, goals, key)
        for row in rows + _size_rows(result, key):
            print(row)
        failed = result.get("sanity_checks", {}).get("failed_defences", {}).get(key, [])
        print(f"| gradient-masking checks passed | {'all' if not failed else 'FAILED: ' + ', '.join(failed)} | — | "
              f"{_met(not failed)} |")


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def _clean_rows(acc: dict, goals: AdaptiveGoals, key: str = "idfr_adaptive") -> list:
    clean, none = acc[("black-box", key, "clean", 0)], acc[("black-box", "none", "clean", 0)]
    rows = []
    if goals.clean_drop is not None:
        rows.append(f"| clean ≥ undefended − {goals.clean_drop:g} | {clean:.1f} | {none:.1f} − {goals.clean_drop:g} | "
                    f"{_met(clean >= none - goals.clean_drop)} |")
    if goals.clean_floor is not None:
        rows.append(f"| clean ≥ {goals.clean_floor:g} | {clean:.1f} | {goals.clean_floor:g} | "
                    f"{_met(clean >= goals.clean_floor)} |")
    return rows


def _whitebox_rows(acc: dict, goals: AdaptiveGoals, key: str = "idfr_adaptive") -> list:
    fast_at = [(e, "Fast AT", acc.get(("white-box", "fast_at", "autoattack", e))) for e in goals.fast_at_eps]
    floors = [(e, f"{floor:g}", floor) for e, floor in (goals.autoattack_floor or {}).items()]
    rows = []
    for e, name, bar in fast_at + floors:
        a = acc.get(("white-box", key, "autoattack", e))
        reference = f"Fast AT {bar:.1f}" if name == "Fast AT" and bar is not None else name
        cells = "– | – | not measured" if a is None or bar is None else f"{a:.1f} | {reference} | {_met(a >= bar)}"
        rows.append(f"| white-box AutoAttack {e}/255 ≥ {name} | {cells} |")
    return rows


def _blackbox_rows(acc: dict, goals: AdaptiveGoals, key: str = "idfr_adaptive") -> list:
    if goals.blackbox_within is None:
        return []
    w, rows = goals.blackbox_within, []
    for (tm, k, attack, e), a in sorted(acc.items()):
        if tm == "black-box" and k == key and attack != "clean":
            ref = acc.get(("black-box", "idfr", attack, e))
            cells = ("– | not measured (no ID+FR row)" if ref is None
                     else f"ID+FR {ref:.1f} | {_met(a >= ref - w)}")
            rows.append(f"| black-box {attack.upper()} {e:g}/255 ≥ ID+FR − {w:g} | {a:.1f} | {cells} |")
    return rows


def _size_rows(result: dict, key: str) -> list:
    """Issue 41's size goal for the restorers inside the target: added parameters at most 10% of the target's."""
    size = result["metadata"].get("models", {}).get(key, {}).get("inner")
    if key != "idfr_inner" or not size:
        return []
    share = size["fraction_of_target"]
    return [f"| added parameters ≤ {100 * INNER_MAX_FRACTION:g}% of the target's | {100 * share:.1f}% "
            f"({size['parameters']:,}) | {size['target_parameters']:,} | {_met(share <= INNER_MAX_FRACTION)} |"]


def paper_baseline_goals(result: dict, path: str = "") -> None:
    """IDFR against each of the paper's baselines the run has, black-box column by column, and their white-box check."""
    acc = {(r["threat_model"], r["defence_key"], r["attack"], round(r["eps"] * 255, 3)): 100 * r["accuracy"]
           for r in result["records"]}
    present = [b for b in PAPER_BASELINES if ("black-box", b, "clean", 0) in acc]
    if not present:
        return
    print("\n### The paper's baselines (issue 42): IDFR above each, black-box\n")
    print("| column | IDFR | " + " | ".join(PAPER_BASELINES[b] for b in present) + " |")
    print("|---|---:|" + "---:|" * len(present))
    columns = sorted({(k[2], k[3]) for k in acc if k[0] == "black-box" and k[1] == "idfr"},
                     key=lambda c: (c[0] != "clean", c[0], c[1]))
    above = {b: 0 for b in present}
    for attack, e in columns:
        ours = acc[("black-box", "idfr", attack, e)]
        cells = []
        for b in present:
            theirs = acc[("black-box", b, attack, e)]
            above[b] += ours > theirs
            cells.append(f"{theirs:.1f} {'(below IDFR)' if ours > theirs else '(NOT below IDFR)'}")
        name = "clean" if attack == "clean" else f"{attack.upper()} {e:g}/255"
        print(f"| {name} | {ours:.1f} | " + " | ".join(cells) + " |")
    failed = collapsed_baselines(result, present)
    print("| IDFR above in | | " + " | ".join(
        f"— (fit failed: clean {failed[b]:.1f}%, chance)" if b in failed else f"{above[b]} of {len(columns)}"
        for b in present) + " |")
    for b, clean in failed.items():
        print(f"\n**{PAPER_BASELINES[b]}'s fit failed in this run** (clean {clean:.1f}%, chance level): its rows are "
              "reported as measured but say nothing about the defence, and IDFR being above it is no finding.")
    _whitebox_consistency(acc, present)
    _adp_second_evaluator(path, result, acc)
    _baseline_costs(result.get("metadata", {}).get("models", {}).get("baselines", {}))


def _baseline_costs(fits: dict) -> None:
    """Each baseline's training (images, epochs, seconds on the run's device) and its inference passes."""
    if not fits:
        return
    print("\nCost of each baseline (the run's device and threads; fit time of the run that trained it, which may "
          "be an earlier one with the same settings)\n")
    print("| baseline | trained on | epochs | fit (s) | inference |")
    print("|---|---:|---:|---:|---|")
    for key, meta in fits.items():
        s = meta.get("settings", {})
        epochs = s.get("nb_epochs")
        if meta.get("restored_epoch") is not None:  # the fit diverged: the guard kept its best epoch's weights
            epochs = f"{epochs} (diverged; epoch {meta['restored_epoch']}'s weights kept)"
        print(f"| {PAPER_BASELINES.get(key, key)} | {meta.get('fit_n')} images | {epochs} | "
              f"{meta.get('fit_seconds', float('nan')):.0f} | {meta.get('inference_passes')} |")


def _whitebox_consistency(acc: dict, present: list) -> None:
    rows = [(b, e) for b in present if b in BROKEN_BY_ADAPTIVE for e in (8, 16)
            if ("white-box", b, "bim", e) in acc and ("black-box", b, "bim", e) in acc]
    if not rows:
        return
    print(f"\nWhite-box (BPDA / EOT, as the tables say) against black-box BIM: consistent with Croce et al. 2022 when "
          f"at least {WHITEBOX_GAP:g} points lower\n")
    print("| baseline | eps | black-box BIM | white-box BIM | gap | consistent |")
    print("|---|---:|---:|---:|---:|---|")
    for b, e in rows:
        black, white = acc[("black-box", b, "bim", e)], acc[("white-box", b, "bim", e)]
        print(f"| {PAPER_BASELINES[b]} | {e}/255 | {black:.1f} | {white:.1f} | {black - white:.1f} | "
              f"{_met(black - white >= WHITEBOX_GAP)} |")


def _torchattacks_rows(path: str) -> list:
    """The lines of the second evaluator's `torchattacks.jsonl` beside ``path`` (none if it has none)."""
    lines = os.path.join(os.path.dirname(path), "torchattacks.jsonl")
    return list(map(json.loads, filter(str.strip, open(lines)))) if os.path.exists(lines) else []


def _adp_second_evaluator(path: str, result: dict, acc: dict) -> None:
    """The same check for ADP with torchattacks' APGD + EOT (`adaptive_torchattacks.py --defences adp`): every
    torchattacks.jsonl line beside ``path`` judging this run's ADP fit (its settings, and its weights' digest where
    the run's metadata has one)."""
    adp = result.get("metadata", {}).get("models", {}).get("baselines", {}).get("adp", {})
    fit = None if adp.get("settings") is None else adp["settings"] | ({"weights": adp["weights"]} if "weights" in adp else {})
    rows = [r for r in _torchattacks_rows(path) if r["defence"].startswith("ADP")
            and {k: r.get("adp", {}).get(k) for k in fit} == fit] if fit is not None else []
    if not rows:
        return
    print("\nThe same check with a second evaluator (torchattacks APGD-CE+DLR, 100 steps, EOT over random draws, "
          "on the run's white-box images; black-box BIM as above):\n")
    print("| command | n | eps | black-box BIM | APGD-CE+DLR + EOT | gap | consistent |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        for key in [k for k in r if k.startswith("torchattacks APGD")]:
            e = int(key.rsplit(" ", 1)[1].split("/")[0])
            black = acc.get(("black-box", "adp", "bim", e))
            if black is not None:
                print(f"| `{r['command']}` | {r['n']} | {e}/255 | {black:.1f} | {r[key]:.1f} | {black - r[key]:.1f} | "
                      f"{_met(black - r[key] >= WHITEBOX_GAP)} |")


def second_evaluator(path: str, result: dict) -> None:
    """
    The AutoAttack goals as judged by torchattacks: the latest jsonl lines on test images 0 to N-1 matching this
    run's recipe and Fast AT, for the largest N both defences were judged on.
    """
    models = result["metadata"].get("models", {})
    s, fast = models.get("idfr_adaptive", {}).get("settings"), models.get("fast_at", {}).get("settings")
    if s is None or fast is None:
        return
    recipe = {"epochs": s["adaptive_nb_epochs"], "batch_size": s["adaptive_batch_size"],
              "trades_beta": s["adaptive_trades_beta"], "fr_joint": bool(s.get("adaptive_train_restorer")),
              "restarts": s.get("adaptive_restarts") or None,  # warm restarts (absent from older rows: None)
              "curriculum_eps": s.get("adaptive_curriculum_eps") or None}  # their ε curriculum (likewise)
    rows = [r for r in _torchattacks_rows(path) if r.get("images", "").startswith("test 0-")]
    ours = [r for r in rows if r["defence"] == "adaptive ID+FR"
            and {k: r.get("adaptive_fit", {}).get(k) for k in recipe} == recipe]
    theirs = [r for r in rows if r["defence"] == "Fast AT" and
              {k: v for k, v in r.get("fast_at", {}).items() if k != "weights"} == fast]
    n = max(set(r["n"] for r in ours) & set(r["n"] for r in theirs), default=None)  # the largest sample both have
    if n is None:
        return
    a, f = [r for r in ours if r["n"] == n][-1], [r for r in theirs if r["n"] == n][-1]
    print(f"\nSecond evaluator (`{a['command']}`: torchattacks {a['torchattacks']} APGD-CE+DLR, {a['images']}, "
          f"n = {a['n']}; weights {a['adaptive_fit']['weights']} / Fast AT {f['fast_at']['weights']}):\n")
    print("| goal | adaptive ID+FR | reference | met |")
    print("|---|---:|---:|---|")
    for e in (8, 16):
        key = f"torchattacks APGD-CE+DLR {e}/255"
        print(f"| APGD-CE+DLR {e}/255 ≥ Fast AT | {a[key]:.1f} | Fast AT {f[key]:.1f} | "
              f"{'yes' if a[key] >= f[key] else 'NO'} |")


if __name__ == "__main__":
    main(sys.argv[1])
    adaptive_goals(json.load(open(sys.argv[1])))
    paper_baseline_goals(json.load(open(sys.argv[1])), sys.argv[1])
    second_evaluator(sys.argv[1], json.load(open(sys.argv[1])))
