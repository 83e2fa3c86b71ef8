"""
Shared runner of the dataset benchmarks: run `art-idfr demo` with the benchmark's settings into `runs/<name>`
(models and checkpoints, git-ignored), print everything, and copy the report files it wrote (results.json, .csv, .md,
accuracy_vs_eps.png) plus the complete console log and, when there is one, the adaptive fit's record
(adaptive_fit.json; inner_adaptive_fit.json for an idfr_inner fit) into the committed folder
`benchmarks/results/<name>/`.
The report files are exactly what the command wrote; nothing is edited afterwards.
"""
from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import sys
import time
from typing import Any, NamedTuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REPORT_FILES = ("results.json", "results.csv", "results.md", "accuracy_vs_eps.png")
#: the adaptive fit's record (settings, per-epoch validation history, fit time), published beside the reports; the
#: command that produced it is the first line of the console.log copied with it
ADAPTIVE_FIT = (os.path.join("idfr", "adaptive", "adaptive.json"), "adaptive_fit.json")
#: the same record of the opt-in idfr_inner fit (restorers inside the target; its parameters, MACs, fraction of the
#: target's parameters), when the run had one
INNER_FIT = (os.path.join("idfr", "inner_adaptive", "adaptive.json"), "inner_adaptive_fit.json")
#: (file in runs/<name>, name in benchmarks/results/<name>) of everything published
PUBLISHED = tuple((f, f) for f in REPORT_FILES + ("console.log",)) + (ADAPTIVE_FIT, INNER_FIT)


class CachedSetup(NamedTuple):
    """What :func:`cached_setup` returns."""

    parsed: Any  # the parsed `art-idfr demo` arguments
    cfg: Any  # the resolved EvalConfig
    data: Any
    model: Any  # the target network
    target_meta: dict
    run_dir: str


class _Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for s in self.streams:
            s.write(text)
            s.flush()
        return len(text)

    def flush(self):
        for s in self.streams:
            s.flush()


def run(name: str, demo_args: list[str], extra: list[str] | None = None) -> int:
    """
    Run `art-idfr demo <demo_args> <extra> --out runs/<name>` and publish its reports under benchmarks/results/<name>.
    ``extra`` (default: the script's own arguments, e.g. --device cuda, --threads 2) is recorded in the results'
    command line; the console log's first line is the script's command as typed.
    """
    from art_idfr.experiments.cli import main

    extra = sys.argv[1:] if extra is None else list(extra)
    run_dir = os.path.join(ROOT, "runs", name)
    out_dir = os.path.join(HERE, "results", name)
    os.makedirs(run_dir, exist_ok=True)
    argv = ["demo", *demo_args, *extra, "--out", run_dir]
    sys.argv = [os.path.relpath(sys.argv[0], ROOT) if os.path.exists(sys.argv[0]) else sys.argv[0], *sys.argv[1:]]
    log_path = os.path.join(run_dir, "console.log")
    start = time.perf_counter()
    with open(log_path, "w") as log, contextlib.redirect_stdout(_Tee(sys.__stdout__, log)):
        print(f"$ python {' '.join(shlex.quote(a) for a in sys.argv)}")
        print(f"= art-idfr {' '.join(shlex.quote(a) for a in argv)}")
        status = main(argv)
        print(f"wall time {time.perf_counter() - start:.0f} s, exit status {status}")
    if status == 0:
        os.makedirs(out_dir, exist_ok=True)
        for src, dst in PUBLISHED:
            if os.path.exists(os.path.join(run_dir, src)):
                shutil.copy2(os.path.join(run_dir, src), os.path.join(out_dir, dst))
        print(f"reports copied to {os.path.relpath(out_dir, ROOT)}")
    return status


def cached_setup(name: str, flags=()) -> CachedSetup:
    """
    For a script that reuses what `benchmarks/<name>.py` cached in runs/<name>: the parsed `art-idfr demo` arguments
    (the benchmark's ARGS, then ``flags``), the resolved config, the data, the target model, its metadata and the run
    folder. The target is trained as the benchmark trains it when runs/<name> has none yet.
    """
    import importlib

    from art_idfr.experiments.cli import _config, build_parser
    from art_idfr.experiments.evaluation.pipeline import prepare_data, set_up_cpu, train_network

    run_dir = os.path.join(ROOT, "runs", name)
    parsed = build_parser().parse_args(["demo", *importlib.import_module(name).ARGS, *flags, "--out", run_dir])
    set_up_cpu(parsed.threads or 2)
    cfg = _config(parsed)
    data = prepare_data(cfg, verbose=False)
    model, meta = train_network(cfg, data, os.path.join(run_dir, "target"), role="target", verbose=False)  # cached
    return CachedSetup(parsed, cfg.resolved(data.input_shape[0]), data, model, meta, run_dir)
