"""
Where an evaluation's time went: the measuring seconds of every attack cell kept in ``OUT/eval_cells`` (each cell
file carries its own time, so a run cut and resumed over several sessions adds up), per threat model and defence.

    python benchmarks/cell_times.py runs/cifar10_cpu              # Markdown table, largest first
    python benchmarks/cell_times.py runs/cifar10_cpu --by defence # summed over threat models

Transfer threat models (black-box, gray-box) craft their AEs once for all defences, outside the cells; that time is
in the report's "Timings" line, not here. Cells written before cells kept their time count as "untimed".
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from art_idfr.experiments.evaluation.cells import FOLDER, cell_seconds  # noqa: E402


def table(times, by):
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("out", help="the run's output folder (the one holding eval_cells/)")
    parser.add_argument("--by", choices=("cell", "defence"), default="cell")
    args = parser.parse_args(argv)
    folder = os.path.join(args.out, FOLDER)
    if not os.path.isdir(folder):
        parser.error(f"{folder} not found: give the output folder of an evaluation run")
    print(table(cell_seconds(folder), args.by))
    return 0


if __name__ == "__main__":
    sys.exit(main())
