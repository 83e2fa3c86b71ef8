"""
Screen an adaptive-training recipe (not in the paper) on a benchmark's cached models and its *validation* split —
never the test split: the adaptive fit exactly as the benchmark runs it (`fit_adaptive`), with extra `art-idfr demo`
flags overriding the benchmark's, and its per-epoch history (clean and PGD-20 accuracy at the training ε through the
defence, validation images 0-499) appended as one JSON line to benchmarks/results/tune_adaptive/<benchmark>.jsonl.

    python benchmarks/screen_adaptive.py cifar10_adaptive --name lr1e-4 --adaptive-learning-rate 1e-4 --threads 1

Reuses the benchmark's target and Algorithm-1 ID + FR from runs/<benchmark>/; the first screen on a fresh checkout
trains and fits them there as the benchmark does (same settings, so the benchmark reuses them too). A screen that
changes the Algorithm-1 start (e.g. `--id-width 1.0`) keeps it apart with `--idfr-dir idfr_w1`, so that the
benchmark's own start is not refitted over. The screen's own fit is kept in runs/<benchmark>/screens/<name>/ (every
warm-restart stage cached, and a stage in progress in its resume file), so a screen cut off resumes where it stopped
when rerun; only the JSON line is committed.
"""
import argparse
import json
import os
import platform
import sys

import torch

from _run import ROOT, cached_setup


def main(argv) -> int:
    from art_idfr.experiments.evaluation.pipeline import fit_adaptive, fit_idfr

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("benchmark")
    p.add_argument("--name", required=True)
    p.add_argument("--idfr-dir", default="idfr", help="folder in runs/<benchmark>/ of the Algorithm-1 ID + FR start")
    a, flags = p.parse_known_args(argv)
    inner = [f for f in flags if f.startswith("--inner")]
    if inner:  # this screen fits the adaptive ID+FR only: an --inner-* flag would be ignored silently
        p.error(f"{', '.join(inner)}: this screen fits the adaptive ID+FR only; screen the restorers inside the target "
                "with benchmarks/tune_adaptive.py (inner=lora:R, id=none for the restorers alone).")
    parsed, cfg, data, model, target_meta, run = cached_setup(a.benchmark, flags)  # a CachedSetup
    den, fr, _ = fit_idfr(cfg, data, model, os.path.join(run, a.idfr_dir), target_meta=target_meta, verbose=False)
    folder = os.path.join(run, "screens", a.name)
    _, _, meta = fit_adaptive(cfg, data, model, den, fr, out_dir=folder, verbose=sys.stderr.isatty())
    row = {"name": a.name, "benchmark": a.benchmark, "flags": flags, "history": meta["history"],
           "fit_n": meta["fit_n"], "fit_seconds": round(meta["fit_seconds"], 1),
           "stages": meta.get("stages"),
           "validation": "images 0-499 of the benchmark's validation split", "dataset": cfg.dataset,
           "seed": cfg.seed, "torch": torch.__version__,
           "device": f"cpu, {parsed.threads} threads, {os.cpu_count()} cores, {platform.machine()}",
           "command": " ".join(["python benchmarks/screen_adaptive.py", *argv])}
    print(json.dumps(row["history"]), flush=True)
    with open(os.path.join(ROOT, "benchmarks", "results", "tune_adaptive", f"{a.benchmark}.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
