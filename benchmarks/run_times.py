"""
Where a run's time went, from what its output folder recorded: the seconds of every model fit (target, surrogate,
AE sources, Fast AT, the IDFR fit, adaptive and inner fits, the paper's baselines) and the measuring seconds of
every evaluation cell kept in ``OUT/eval_cells``, per threat model and defence (each cell file carries its own time,
so a run cut and resumed over several sessions adds up). The sum is what the run costs from scratch on the machine
and threads that measured it (a model reused from another run's cache counts with its own training time).

    python benchmarks/run_times.py runs/cifar10_cpu              # Markdown tables, largest first
    python benchmarks/run_times.py runs/cifar10_cpu --by defence # cells summed over threat models

The transfer threat models' AEs are cells too (rows "source ..."); the clean pass and the report are not counted.
Cells written before cells kept their time count as "untimed". Only the cells the run used count: those named by
``metadata["cell_keys"]`` of its ``results.json`` (or, while it runs, ``results.partial.json``); the folder also
keeps the cells of earlier configurations (a baseline fitted again, another ID). A run that wrote no such list
(before they did) counts every cell in the folder, and the output says so.
"""
import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from art_idfr.experiments.evaluation.cells import FOLDER, cell_seconds  # noqa: E402

#: (glob under OUT, label prefix, how to read the seconds of one record)
_FIT_RECORDS = (
    ("*/model.json", "model", lambda m: sum(m["history"]["seconds"]) if isinstance(m.get("history"), dict)
     and "seconds" in m["history"] else m["train_seconds"]),
    ("idfr/idfr.json", "IDFR (Algorithm 1 + 2)", lambda m: m["fit_seconds"]),
    ("idfr/*/adaptive.json", "adaptive", lambda m: m["fit_seconds"]),
    ("baselines/*/meta.json", "baseline", lambda m: m["fit_seconds"]),
)


def fit_seconds(out):
    """``{label: seconds}`` of every fit recorded under ``out``; unreadable records are skipped."""
    fits = {}
    for pattern, prefix, read in _FIT_RECORDS:
        for path in sorted(glob.glob(os.path.join(out, pattern))):
            try:
                with open(path, encoding="utf-8") as f:
                    meta = json.load(f)
                seconds = float(read(meta))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            part = os.path.relpath(os.path.dirname(path), out)
            fits[_idfr_label(meta, prefix) if part == "idfr" else f"{prefix}: {os.path.basename(part)}"] = seconds
    return fits


def _idfr_label(meta, prefix):
    """The IDFR fit's label; a record written before ``fit_seconds_covers`` existed timed the extra AE sources'
    training too (when they were trained in the same call), which their own ``model.json`` rows count again."""
    if meta.get("idfr_source") and "fit_seconds_covers" not in meta:
        return prefix + ", with the AE sources' training if trained then (counted twice)"
    return prefix


def fit_table(fits):
    """Markdown rows of ``fits``, largest first, with their share and total."""
    total = sum(fits.values()) or 1.0
    lines = ["| fit | seconds | share |", "|---|---:|---:|"]
    for label, s in sorted(fits.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {label} | {s:,.0f} | {100 * s / total:.1f}% |")
    lines.append(f"| **total** | **{sum(fits.values()):,.0f}** | |")
    return "\n".join(lines)


def cell_table(times, by):
    """Markdown rows of ``times`` (``cell_seconds``' output), grouped by (kind, defence) or by defence alone."""
    rows = {}
    for (kind, defence), t in times.items():
        key = (kind, defence) if by == "cell" else ("all", defence)
        acc = rows.setdefault(key, {"seconds": 0.0, "cells": 0, "timed": 0})
        for k in acc:
            acc[k] += t[k]
    total = sum(r["seconds"] for r in rows.values()) or 1.0
    lines = ["| threat model | defence | seconds | share | cells (timed) |", "|---|---|---:|---:|---:|"]
    for (kind, defence), r in sorted(rows.items(), key=lambda kv: -kv[1]["seconds"]):
        lines.append(f"| {kind} | {defence} | {r['seconds']:,.0f} | {100 * r['seconds'] / total:.1f}% | "
                     f"{r['cells']} ({r['timed']}) |")
    lines.append(f"| **total** | | **{sum(r['seconds'] for r in rows.values()):,.0f}** | | "
                 f"{sum(r['cells'] for r in rows.values())} ({sum(r['timed'] for r in rows.values())}) |")
    return "\n".join(lines)


def run_cell_keys(out):
    """``(keys, source)``: the cell keys the run in ``out`` used and the report that named them, or ``(None, None)``
    when neither ``results.json`` nor ``results.partial.json`` lists them."""
    for name in ("results.json", "results.partial.json"):
        try:
            with open(os.path.join(out, name), encoding="utf-8") as f:
                keys = json.load(f)["metadata"]["cell_keys"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return keys, name
    return None, None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("out", help="the run's output folder (the one holding eval_cells/ and the fitted models)")
    parser.add_argument("--by", choices=("cell", "defence"), default="cell", help="cells per threat model and "
                        "defence (cell) or per defence alone")
    args = parser.parse_args(argv)
    folder = os.path.join(args.out, FOLDER)
    fits = fit_seconds(args.out)
    if not fits and not os.path.isdir(folder):
        parser.error(f"neither fitted models nor {folder} found: give the output folder of a run")
    keys, source = run_cell_keys(args.out)
    times = cell_seconds(folder, keys)
    which = (f"The {len(keys)} cells that {source} names (other configurations' cells in the folder are left out)."
             if keys is not None else "Every cell in the folder: no results.json names the run's cells, so cells of "
             "earlier configurations count too.")
    print("### Fits\n\n" + fit_table(fits) + "\n\n### Evaluation cells\n\n" + which + "\n\n"
          + cell_table(times, args.by))
    cells = sum(t["seconds"] for t in times.values())
    print(f"\nfits {sum(fits.values()):,.0f} s + timed cells {cells:,.0f} s = {sum(fits.values()) + cells:,.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
