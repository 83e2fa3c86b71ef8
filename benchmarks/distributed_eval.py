"""
Distributed evaluation (issue 16): the same `art-idfr evaluate` in one process and under
`torchrun --nproc_per_node=2` (Gloo on CPU; NCCL on GPUs), on the same images and models; prints whether the records
agree and the wall times (the table in NOTES.md, "Distributed fit: one process vs torchrun").

    python benchmarks/distributed_eval.py --out runs/distributed_eval          # CPU, about 10 minutes on 2 cores

Steps (each an ordinary CLI command, printed before it runs): a target (`train-target`, tiny preset, 3 epochs) and
an IDFR fit (`fit`) in one process; the surrogate is trained by the first evaluation and reused by the second; then
`evaluate` with 1 process and with 2 (every process one torch thread: `--threads 1`).
"""
import argparse
import json
import os
import subprocess
import sys
import time

CLI = [sys.executable, "-m", "art_idfr.experiments.cli"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
            "art_idfr.experiments.cli"]
COMMON = ["--preset", "tiny", "--quiet", "--threads", "1"]
EVAL = ["--defences", "none,id,idfr,jpeg75,tvm", "--threat-models", "black-box,gray-box,white-box,query",
        "--attacks", "fgsm,bim,pgd,cw", "--eps", "8/255,0.3", "--eval-n", "100", "--whitebox-n", "40",
        "--query-n", "20", "--query-iter", "50"]
#: attacks whose per-image hits a shard reproduces exactly (art_idfr.experiments.evaluation.sharding)
EXACT = ("clean", "fgsm", "bim", "pgd", "cw")


def run(cmd, env):
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    return time.perf_counter() - start


def compare(single, dist):
    """Counts of records: equal n_correct, and (for the others) the largest accuracy difference."""
    key = lambda r: (r["threat_model"], r["defence_key"], r["attack"], r["eps"])  # noqa: E731
    other = {key(r): r for r in dist["records"]}
    same = exact_same = exact = 0
    worst = 0.0
    for r in single["records"]:
        d = other[key(r)]
        is_exact = r["attack"] == "clean" or (r["attack"] in EXACT and not (r["threat_model"] == "white-box"
                                                                            and r["defence_key"] == "tvm"))
        exact += is_exact
        same += d["n_correct"] == r["n_correct"]
        exact_same += is_exact and d["n_correct"] == r["n_correct"]
        worst = max(worst, abs(d["accuracy"] - r["accuracy"]))
    checks = [k for k in single["sanity_checks"]["checks"]
              if single["sanity_checks"]["checks"][k] != dist["sanity_checks"]["checks"][k]]
    return {"records": len(single["records"]), "equal": same, "exact_cells": exact, "exact_equal": exact_same,
            "largest_accuracy_difference": worst, "sanity_checks_differing": checks}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join("runs", "distributed_eval"))
    args = p.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    target, idfr = os.path.join(args.out, "target"), os.path.join(args.out, "idfr")
    run(CLI + ["train-target", "--out", target, "--epochs", "3"] + COMMON, env)
    run(CLI + ["fit", "--target", target, "--out", idfr] + COMMON, env)
    base = ["evaluate", "--target", target, "--idfr", idfr] + EVAL + COMMON
    one, two = os.path.join(args.out, "eval_1"), os.path.join(args.out, "eval_2")
    run(CLI + base + ["--out", os.path.join(args.out, "surrogate_run"), "--threat-models", "black-box",
                      "--defences", "none", "--attacks", "fgsm"], env)  # trains the surrogate once, untimed
    surrogate = ["--surrogate", os.path.join(args.out, "surrogate_run", "surrogate")]
    seconds = {1: run(CLI + base + surrogate + ["--out", one], env),
               2: run(TORCHRUN + base + surrogate + ["--out", two], env)}
    single, dist = (json.load(open(os.path.join(d, "results.json"))) for d in (one, two))
    summary = {"seconds": seconds, "timings_1": single["metadata"]["timings_seconds"],
               "timings_2": dist["metadata"]["timings_seconds"], **compare(single, dist),
               "load_average": os.getloadavg()}
    print(json.dumps(summary, indent=1))
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
