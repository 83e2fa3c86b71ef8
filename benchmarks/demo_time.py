"""
The first-run time of `art-idfr demo`, as a new user meets it: the console script run in a fresh output folder (no
cached models), its wall time per phase and in total, the torch threads it chose, the load on the machine before and
after, the device. Each run's output lines are timestamped as they arrive; the phases run from one of the demo's
phase lines ("training the target ...", "fitting IDFR ...", ...) to the next, and the evaluation's own split
(clean, black-box, gray-box, white-box, query, sanity + gradient-masking checks) comes from its results.json.

Usage::

    python benchmarks/demo_time.py                    # two runs: the threads the demo picks, then --threads 2
    python benchmarks/demo_time.py --runs auto        # one run
    python benchmarks/demo_time.py --runs 2 -- --full # extra `art-idfr demo` arguments after --

Writes benchmarks/results/demo_time/demo_time.json and demo_time.md (and each run's console log beside them); the
output folders go under runs/demo_time/ (git-ignored) and are removed afterwards unless --keep.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _run import ROOT  # noqa: E402
from cw_speed import cpu_model, git_revision, save_report  # noqa: E402

RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results", "demo_time")
#: (start of a line the demo prints when a phase begins, the phase's name), in the order the demo runs them; the
#: first phase, "start-up and data", runs from the process start to the first of them
PHASES = (
    ("training the target", "target"),
    ("fitting IDFR", "IDFR fit (ID, FR)"),
    ("fitting the adaptive ID", "adaptive ID fit"),
    ("training the black-box surrogate", "surrogate"),
    ("training Fast AT", "Fast AT"),
    ("evaluating", "evaluation"),
    ("reports:", "reports printed"),
)
LIMIT_S = 300  # the bar: five minutes on 2 CPU cores


def _cli() -> List[str]:
    """The `art-idfr` console script of this interpreter's environment (as a user runs it), else ``-m``."""
    exe = shutil.which("art-idfr", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "art_idfr.experiments.cli"]


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "uptime: not available"


def _machine_state() -> Dict[str, Any]:
    """Load averages (1, 5, 15 min), `uptime`, and the cores idle right now (the demo's own measure)."""
    from art_idfr.experiments.cli import _idle_cores

    cpus = sorted(os.sched_getaffinity(0))
    idle = _idle_cores(cpus, seconds=1.0)
    return {"loadavg": [round(v, 2) for v in os.getloadavg()], "uptime": _uptime(),
            "idle_cores_1s": None if idle is None else round(idle, 2)}


def run_demo(extra: List[str], keep: bool) -> Dict[str, Any]:
    """One `art-idfr demo <extra> --out <fresh folder>` run, timed line by line."""
    base = os.path.join(ROOT, "runs", "demo_time")
    os.makedirs(base, exist_ok=True)
    out = tempfile.mkdtemp(prefix="demo_", dir=base)
    argv = _cli() + ["demo", *extra, "--out", out]
    shown = ["art-idfr", "demo", *extra, "--out", os.path.relpath(out, ROOT)]
    before = _machine_state()
    print(f"$ {' '.join(shlex.quote(a) for a in shown)}   # load before: {before['uptime']}", flush=True)
    lines: List[tuple] = []
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        t = time.perf_counter() - start
        lines.append((t, line.rstrip("\n")))
        print(f"[{t:6.0f} s] {line}", end="", flush=True)
    status = proc.wait()
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the demo and its TotalVarMin workers, once waited for
    after = _machine_state()
    record: Dict[str, Any] = {
        "command": " ".join(shlex.quote(a) for a in shown),
        "exit_status": status,
        "wall_seconds": round(wall, 1),
        # CPU time of the demo's processes: the work done, which other jobs on the machine inflate far less than
        # the wall time (on 1 idle thread the wall time is about this; on 2, less)
        "cpu_seconds": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
        "under_limit": wall <= LIMIT_S,
        "threads": _threads(lines),
        "before": before,
        "after": after,
        "phases_seconds": _phases(lines, wall),
    }
    results = os.path.join(out, "results.json")
    if os.path.exists(results):
        with open(results) as f:
            doc = json.load(f)
        meta = doc["metadata"]
        record.update(device=meta.get("device"), preset=meta.get("preset"), n=meta.get("n"),
                      evaluation_seconds={k: round(v, 1) for k, v in meta.get("timings_seconds", {}).items()},
                      records=len(doc.get("records", [])), sanity_passed=doc.get("sanity_checks", {}).get("passed"))
    record["console"] = [f"[{t:6.1f} s] {text}" for t, text in lines]
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return record


def _uncommitted() -> List[str]:
    """Files of the working tree that differ from the revision (other work in a shared tree), as ``git status``."""
    try:
        out = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=30)
        return [line[3:] for line in out.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        return []


def _threads(lines) -> Optional[str]:
    for _, text in lines:
        if text.startswith("art-idfr demo:") and "torch threads " in text:
            return text.split("torch threads ", 1)[1]
    return None


def _phases(lines, wall: float) -> Dict[str, float]:
    """Seconds from each phase line to the next one (the first phase, start-up and data, from the process start)."""
    marks = [(0.0, "start-up and data")] + [(t, name) for t, text in lines for prefix, name in PHASES
                                            if text.startswith(prefix)]
    return {name: round(t1 - t0, 1) for (t0, name), (t1, _) in zip(marks, marks[1:] + [(wall, "end")])}


def markdown(doc: Dict[str, Any]) -> str:
    runs = doc["runs"]
    rows = []
    for r in runs:
        ev = r.get("evaluation_seconds", {})
        rows.append(
            f"| `{r['command']}` | {r['threads']} | {r['before']['loadavg'][0]:.2f} / {r['before']['loadavg'][1]:.2f} "
            f"({r['before']['idle_cores_1s']} idle) | {r['after']['loadavg'][0]:.2f} | "
            f"**{r['wall_seconds']:.0f} s ({r['wall_seconds'] / 60:.1f} min)** | {r['cpu_seconds']:.0f} s | "
            + ", ".join(f"{k} {v:.0f}" for k, v in r["phases_seconds"].items())
            + " | " + ", ".join(f"{k} {v:.0f}" for k, v in ev.items() if k != "total") + " |")
    first = runs[0]
    return "\n".join([
        "# `art-idfr demo`: the first run's time",
        "",
        f"- Command: `{doc['command']}`",
        f"- Date (UTC): {doc['date']}; git revision: {doc['git_revision']} ({len(doc['uncommitted_files'])} files "
        "of the shared working tree uncommitted, listed in the .json)",
        f"- Machine: {doc['cpu']} ({doc['cores']} cores available); device of the runs: {first.get('device')}",
        f"- Preset: {first.get('preset')}; images per threat model: {first.get('n')}",
        "- Each run: the `art-idfr` console script in a fresh output folder (nothing cached), as a new user runs it; "
        "phases from the demo's phase lines as they arrived, the evaluation's split from its results.json. Load "
        "average (1 / 5 min) before each run and the cores idle in the second before it (/proc/stat); the machine "
        "is shared, so a busy one makes these times pessimistic. CPU time: user + system seconds of the demo's "
        "processes (the work itself, which other jobs inflate much less than the wall time).",
        "",
        "| command | torch threads | load before (idle cores) | load after | wall | CPU time | phases (s) | "
        "evaluation (s) |",
        "|---|---|---|---:|---:|---:|---|---|",
        *rows,
        "",
        f"The bar: {LIMIT_S} s on 2 CPU cores. Under it: "
        + ", ".join(f"`{r['command'].split(' --out ')[0]}` {'yes' if r['under_limit'] else 'no'}" for r in runs) + ".",
        "",
    ])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="auto,2",
                   help="comma list of runs: auto (the threads the demo picks) or a thread count (--threads N); "
                        "default auto,2")
    p.add_argument("--keep", action="store_true", help="keep the runs' output folders under runs/demo_time/")
    p.add_argument("--out-dir", default=RESULTS_DIR)
    p.add_argument("extra", nargs="*", help="extra `art-idfr demo` arguments (after --)")
    a = p.parse_args(argv)
    doc: Dict[str, Any] = {
        "command": "python benchmarks/demo_time.py" + "".join(f" {shlex.quote(x)}" for x in (argv or sys.argv[1:])),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_revision": git_revision(),
        "uncommitted_files": _uncommitted(),
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "limit_seconds": LIMIT_S,
        "runs": [],
    }
    for spec in (s.strip() for s in a.runs.split(",") if s.strip()):
        extra = list(a.extra) + ([] if spec == "auto" else ["--threads", str(int(spec))])
        doc["runs"].append(run_demo(extra, a.keep))
    os.makedirs(a.out_dir, exist_ok=True)
    for i, r in enumerate(doc["runs"]):  # the console logs beside the record, not inside it
        with open(os.path.join(a.out_dir, f"console_{i + 1}.log"), "w") as f:
            f.write(f"$ {r['command']}\n" + "\n".join(r.pop("console")) + "\n")
    save_report(doc, markdown(doc), a.out_dir, "demo_time")
    print(markdown(doc))
    return 0 if all(r["exit_status"] == 0 for r in doc["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
