"""
Report writers of the evaluation suite: JSON (metadata + config + sanity checks + one record per defence x threat
model x attack x eps), CSV (one row per record), Markdown (the paper's table layout, one table per threat model)
and a PNG plot of accuracy vs eps (one panel per threat model and attack, one line per defence).

The writers take any object with an ``EvaluationResult``'s fields (``records``, ``metadata``, ``sanity_checks``,
``to_dict()``); this module never imports :mod:`~art_idfr.experiments.evaluation.result`, which imports it
(``EvaluationResult.markdown`` and ``.write`` call the writers here).
"""
from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Dict, List, Sequence, Tuple

from art_idfr.experiments.evaluation.config import THREAT_MODELS, eps_label
from art_idfr.experiments.evaluation.labels import ATTACK_LABELS, RECORD_FIELDS, THREAT_DESCRIPTIONS
from art_idfr._utils import json_clean

__all__ = [
    "write_reports",
    "write_partial_reports",
    "write_json",
    "write_csv",
    "markdown_report",
    "markdown_tables",
    "plot_accuracy",
    "table_columns",
    "REPORT_FILES",
]

#: File names written by :func:`write_reports`.
REPORT_FILES = {"json": "results.json", "csv": "results.csv", "markdown": "results.md", "png": "accuracy_vs_eps.png"}

BPDA_MARK = "†"
#: marks the white-box and query rows of a defence that failed a gradient-masking check
FAILED_MARK = "✗ FAILED CHECK"


def write_reports(result: "EvaluationResult", out_dir: str) -> Dict[str, str]:
    """
    Write the four report files into ``out_dir`` (created if needed) and return their paths by kind. The
    evaluation checkpoint and partial reports in ``out_dir`` (:mod:`art_idfr.experiments.evaluation.resume`), if any, are
    removed once the complete reports are written.
    """
    from art_idfr.experiments.evaluation.resume import remove_recovery_files

    if result.metadata.get("partial"):
        raise ValueError("a partial result is written with write_partial_reports(), not as the complete reports.")
    os.makedirs(out_dir, exist_ok=True)
    paths = {kind: os.path.join(out_dir, name) for kind, name in REPORT_FILES.items()}
    write_json(result, paths["json"])
    write_csv(result.records, paths["csv"])
    with open(paths["markdown"], "w", encoding="utf-8") as f:
        f.write(markdown_report(result))
    plot_accuracy(result, paths["png"])
    remove_recovery_files(out_dir)
    return paths


def write_partial_reports(result: "EvaluationResult", out_dir: str) -> Dict[str, str]:
    """
    Write ``results.partial.json`` and ``results.partial.md`` (the threat models finished so far, labelled
    partial, no sanity checks) into ``out_dir``, atomically; return their paths by kind.
    """
    from art_idfr.experiments.evaluation.resume import PARTIAL_FILES

    os.makedirs(out_dir, exist_ok=True)
    paths = {kind: os.path.join(out_dir, name) for kind, name in PARTIAL_FILES.items()}
    write_json(result, paths["json"] + ".tmp")
    os.replace(paths["json"] + ".tmp", paths["json"])
    with open(paths["markdown"] + ".tmp", "w", encoding="utf-8") as f:
        f.write(markdown_report(result))
    os.replace(paths["markdown"] + ".tmp", paths["markdown"])
    return paths


def write_json(result: "EvaluationResult", path: str) -> None:
    """``{"metadata", "config", "sanity_checks", "records"}`` as strict JSON (NaN written as null)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(json_clean(result.to_dict()), f, indent=2, ensure_ascii=False, allow_nan=False)
        f.write("\n")


def write_csv(records: Sequence[Dict[str, Any]], path: str) -> None:
    """One row per record; columns :data:`~art_idfr.experiments.evaluation.labels.RECORD_FIELDS` (dicts as JSON)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(RECORD_FIELDS), extrasaction="ignore")
        writer.writeheader()
        for r in records:
            row = {k: (json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v) for k, v in r.items()}
            if row.get("source_accuracy") is None:
                row["source_accuracy"] = ""
            writer.writerow(row)


# ----------------------------------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------------------------------


def table_columns(records: Sequence[Dict[str, Any]], threat_model: str) -> List[Tuple[str, float]]:
    """``[("clean", 0.0), (attack, eps), ...]`` of one threat model: attacks in first-seen order, eps ascending."""
    attacks: List[str] = []
    eps: Dict[str, set] = {}
    for r in records:
        if r["threat_model"] != threat_model or r["attack"] == "clean":
            continue
        if r["attack"] not in attacks:
            attacks.append(r["attack"])
        eps.setdefault(r["attack"], set()).add(r["eps"])
    return [("clean", 0.0)] + [(a, e) for a in attacks for e in sorted(eps[a])]


def _column_title(attack: str, eps: float) -> str:
    return "clean" if attack == "clean" else f"{ATTACK_LABELS.get(attack, attack.upper())} {eps_label(eps)}"


def _pct(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{100 * value:.1f}"


def _threat_models(result: "EvaluationResult") -> List[str]:
    present = {r["threat_model"] for r in result.records}
    return [tm for tm in THREAT_MODELS if tm in present]


def markdown_tables(result: "EvaluationResult") -> str:
    """One Markdown table per threat model: rows = defences, columns = clean and each attack x eps (accuracy %)."""
    md = result.metadata
    out: List[str] = []
    defences = [d["key"] for d in md.get("defences", [])] or list(dict.fromkeys(r["defence_key"] for r in result.records))
    for tm in _threat_models(result):
        recs = [r for r in result.records if r["threat_model"] == tm]
        columns = table_columns(result.records, tm)
        cell = {(r["defence_key"], r["attack"], r["eps"]): r for r in recs}
        ns = sorted({r["n"] for r in recs})
        source = next((r["source"] for r in recs if r["attack"] != "clean"), "")
        out.append(f"### Threat model: {tm}")
        out.append("")
        out.append(
            f"**{tm}** · dataset: {md.get('dataset')} · target: {md.get('model')} · device: {md.get('device')} · "
            f"n = {', '.join(str(n) for n in ns)} · seed = {md.get('seed')}"
        )
        out.append("")
        desc = THREAT_DESCRIPTIONS.get(tm, "")
        if tm in ("black-box", "gray-box") and source:
            desc += f" Source: {source}."
        out.append(f"_{desc}_ Accuracy in %.")
        out.append("")
        out.append("| defence | " + " | ".join(_column_title(a, e) for a, e in columns) + " |")
        out.append("|---|" + "---:|" * len(columns))
        bpda_used = False
        failed = result.sanity_checks.get("failed_defences", {}) if tm in ("white-box", "query") else {}
        for key in defences:
            row = [cell.get((key, a, e)) for a, e in columns]
            if not any(row):
                continue
            label = next(r["defence"] for r in row if r)
            if key in failed:
                label += f" {FAILED_MARK}"
            # † = NumPy defences (ART's estimate_gradient); the opt-in baselines' own BPDA runs in autograd: no †
            if tm == "white-box" and any(r and "BPDA" in str(r.get("gradient")) and "autograd" not in
                                         str(r.get("gradient")) for r in row):
                label += f" {BPDA_MARK}"
                bpda_used = True
            out.append(f"| {label} | " + " | ".join(_pct(r["accuracy"]) if r else "–" for r in row) + " |")
        if failed and any(k in defences for k in failed):
            out.append("")
            out.append(f"{FAILED_MARK}: the defence failed a gradient-masking check "
                       f"({', '.join(sorted({c for v in failed.values() for c in v}))}; see the sanity checks): its "
                       "numbers in this table are not evidence of robustness.")
        if bpda_used:
            out.append("")
            eot = sorted({r["gradient"].split("EOT over ")[1] for r in recs if "EOT over " in str(r.get("gradient"))})
            out.append(f"{BPDA_MARK} NumPy defence: the white-box attack gets gradients from ART's "
                       "`estimate_gradient`, the identity (BPDA)"
                       + (f"; for the randomised one(s), averaged over {', '.join(eot)} (EOT)." if eot else "."))
        out.append("")
    return "\n".join(out)


def markdown_sanity(result: "EvaluationResult") -> str:
    """The sanity checks as a Markdown list (PASS / FAIL / SKIPPED) plus each flagged violation."""
    s = result.sanity_checks
    checks = s.get("checks", {})
    if not checks:
        return "### Sanity checks: not run" + (" (partial report)" if result.metadata.get("partial") else "") + "\n"
    failed = [name for name, c in checks.items() if c.get("status") == "FAIL"]
    flagged = [name for name, c in checks.items() if c.get("status") == "WARN"]
    verdict = ("FAILED: " + ", ".join(failed) if failed
               else "passed, with flags: " + ", ".join(flagged) if flagged else "all passed")
    lines = [f"### Sanity checks: {verdict}", ""]
    c = checks.get("undefended_whitebox_large_eps")
    if c:
        lines.append(f"- **{c['status']}** undefended white-box BIM eps={eps_label(c['eps'])}: accuracy "
                     f"{_pct(c['accuracy'])}% on n={c['n']} (must be < {100 * c['threshold']:.0f}%)")
    c = checks.get("defended_gradient")
    if c:
        if c["status"] == "SKIPPED":
            lines.append("- **SKIPPED** gradient through ID+FR (ID / ID+FR not evaluated)")
        for key, g in c.get("per_defence", {}).items():
            name = g.get("label") or {"idfr": "ID+FR", "id": "ID"}.get(key, "adaptive ID+FR")  # (older records)
            lines.append(f"- **{g['status']}** loss gradient through {name}: finite="
                         f"{g['finite']}, non-zero for {100 * g['fraction_nonzero_samples']:.0f}% of {g['n']} "
                         f"samples, mean |g| = {g['mean_abs'] if g['mean_abs'] is None else format(g['mean_abs'], '.3g')}")
    for name, other in (("whitebox_not_above_blackbox", "black-box"), ("whitebox_not_above_graybox", "gray-box")):
        c = checks.get(name)
        if not c:
            continue
        n_sig = c.get("n_significant")
        noise = ("" if not c["n_violations"] or n_sig is None
                 else f"; {n_sig} beyond sampling noise (paired sign test, p < {c.get('alpha', 0.05):g})")
        lines.append(f"- **{c['status']}** white-box accuracy ≤ {other} accuracy on the same images: "
                     f"{c['n_violations']} violation(s) in {c['n_comparisons']} comparisons{noise}"
                     + (" (informational)" if other == "gray-box" else ""))
        if other == "black-box" and c.get("violations"):
            lines.append("  A violation means the adaptive attack on that defence was weaker than a transfer attack "
                         "(a randomised defence such as TotalVarMin needs enough EOT draws; identity-BPDA gradients or too few "
                         "iterations also cause it): read those white-box numbers as upper bounds.")
        for v in c.get("violations", []):
            test = ("" if "p_value" not in v else
                    f", {v['wins']} vs {v['losses']} disagreeing images, p = {v['p_value']:.2g}"
                    + ("" if v["significant"] else ": within noise"))
            lines.append(f"  - FLAG {v['defence']}, {ATTACK_LABELS.get(v['attack'], v['attack'])} {v['eps_label']}: "
                         f"white-box {_pct(v['white_box_accuracy'])}% > {v['versus']} {_pct(v['other_accuracy'])}% "
                         f"(n={v['n']}, gradient: {v['gradient']}{test})")
    lines.extend(_masking_lines(checks))
    lines.append("")
    return "\n".join(lines)


def _masking_lines(checks: Dict[str, Any]) -> List[str]:
    """The gradient-masking checks (:mod:`~art_idfr.experiments.evaluation.masking`), one line per defence."""
    lines = []
    for name in ("gradient_free_not_stronger", "large_eps_to_zero", "more_steps_not_better"):
        c = checks.get(name)
        if not c:
            continue
        lines.append(f"- **{c['status']}** gradient masking, {c.get('description', name)}")
        for key, item in c.get("per_defence", {}).items():
            lines.append(f"  - {item['status']} {key}: {item['summary']} (n={item['n']})")
    return lines


def markdown_report(result: "EvaluationResult") -> str:
    """The full Markdown report: header, one table per threat model, sanity checks, timings."""
    md = result.metadata
    head = [
        "# IDFR evaluation",
        "",
        f"- dataset: {md.get('dataset_description', md.get('dataset'))}",
        f"- target: {md.get('model')} · device: {md.get('device')}"
        + (f" · {md['processes']} processes (torchrun; rank 0's device)" if md.get("processes") else "")
        + f" · seed: {md.get('seed')} · preset: {md.get('preset')}",
        f"- torch {md.get('torch_version')} · ART {md.get('art_version')} · art-idfr {md.get('art_idfr_version')}",
        f"- command: `{md.get('command')}`",
        "- images per threat model: " + ", ".join(f"{tm} n={n}" for tm, n in md.get("n", {}).items()),
        "",
    ]
    if md.get("partial"):
        missing = [tm for tm in md.get("threat_models", []) if tm not in md.get("finished_threat_models", [])]
        head[1:1] = ["", f"**PARTIAL REPORT** (written {md.get('created')}): only the threat models "
                         f"{', '.join(md.get('finished_threat_models', [])) or 'none'} were finished; "
                         f"{', '.join(missing) or 'none'} and the sanity checks were not (the run stopped or is "
                         "still running). Not a result to publish as complete."]
    for tm, note in md.get("resumed", {}).items():
        head.insert(-1, f"- {tm}: {note}")
    if md.get("reused_cells"):
        counts = ", ".join(f"{kind} {n}" for kind, n in md["reused_cells"].items())
        head.insert(-1, f"- attack cells taken from OUT/eval_cells (measured by an earlier run on identical images, "
                        f"settings, device and model weights; `--no-cell-reuse` measures them again): {counts}")
    timings = md.get("timings_seconds", {})
    tail = []
    if timings:
        tail = ["### Timings (s)", "", " · ".join(f"{k}: {v:.1f}" for k, v in timings.items()), ""]
    return "\n".join(head) + "\n" + markdown_tables(result) + "\n" + markdown_sanity(result) + "\n" + "\n".join(tail)


# ----------------------------------------------------------------------------------------------------------------------
# plot
# ----------------------------------------------------------------------------------------------------------------------


def plot_accuracy(result: "EvaluationResult", path: str) -> None:
    """
    Accuracy vs eps: one row of panels per threat model, one panel per attack (x: clean then each eps, categorical),
    one line per defence. Uses matplotlib's Agg backend (no display needed).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    md = result.metadata
    tms = _threat_models(result)
    panels = {tm: [a for a, _ in table_columns(result.records, tm) if a != "clean"] for tm in tms}
    panels = {tm: list(dict.fromkeys(a)) for tm, a in panels.items()}
    ncols = max([len(a) for a in panels.values()] + [1])
    nrows = max(len(tms), 1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows + 0.8), squeeze=False)
    defences = [d["key"] for d in md.get("defences", [])] or list(dict.fromkeys(r["defence_key"] for r in result.records))
    labels = {r["defence_key"]: r["defence"] for r in result.records}
    cmap = plt.get_cmap("tab10" if len(defences) <= 10 else "tab20")
    styles = {key: {"color": cmap(i % cmap.N), "marker": "os^vDPX*<>"[i % 10],
                    "linestyle": "-" if key in ("none", "id", "idfr", "fast_at") else "--"}
              for i, key in enumerate(defences)}
    handles = {}
    for row, tm in enumerate(tms):
        recs = [r for r in result.records if r["threat_model"] == tm]
        for col in range(ncols):
            if col >= len(panels[tm]):
                axes[row][col].axis("off")
                continue
            _plot_panel(axes[row][col], recs, tm, panels[tm][col], defences, labels, styles, handles)
            if col == 0:
                axes[row][col].set_ylabel("accuracy (%)", fontsize=9)
    fig.suptitle(f"IDFR evaluation · {md.get('dataset')} · {md.get('model')} · seed {md.get('seed')} · "
                 f"{md.get('device')}", fontsize=10)
    if handles:
        fig.legend([handles[k] for k in defences if k in handles], [labels[k] for k in defences if k in handles],
                   loc="lower center", ncol=min(5, len(handles)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08 if len(handles) > 5 else 0.05, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_panel(ax, recs, tm: str, attack: str, defences, labels, styles, handles) -> None:
    """One panel of :func:`plot_accuracy`: accuracy of each defence on clean images, then at each eps of ``attack``."""
    clean = {r["defence_key"]: r["accuracy"] for r in recs if r["attack"] == "clean"}
    n = sorted({r["n"] for r in recs})
    eps = sorted({r["eps"] for r in recs if r["attack"] == attack})
    xticks = ["clean"] + [eps_label(e) for e in eps]
    for key in defences:
        acc = {r["eps"]: r["accuracy"] for r in recs if r["attack"] == attack and r["defence_key"] == key}
        if not acc:
            continue
        ys = [clean.get(key, math.nan)] + [acc.get(e, math.nan) for e in eps]
        (line,) = ax.plot(range(len(ys)), [100 * y if y is not None else math.nan for y in ys],
                          label=labels.get(key, key), markersize=4, linewidth=1.4, **styles[key])
        handles.setdefault(key, line)
    ax.set_xticks(range(len(xticks)))
    ax.set_xticklabels(xticks, fontsize=8)
    ax.set_ylim(-3, 103)
    ax.set_title(f"{tm} · {ATTACK_LABELS.get(attack, attack)} (n={','.join(map(str, n))})", fontsize=10)
    ax.set_xlabel("L∞ ε", fontsize=8)
    ax.grid(alpha=0.3)
