"""
The adaptive ID+FR (not in the paper) of `fashion_mnist_cpu`, attacked white-box (issue: adaptive-robust IDFR).

    python benchmarks/fashion_mnist_cpu.py        # first: trains and caches target, IDFR, adaptive ID, Fast AT
    python benchmarks/fashion_mnist_adaptive.py   # then: this evaluation of the cached models (~25 min, 2 cores)

`art-idfr evaluate` on the models `fashion_mnist_cpu` cached in runs/fashion_mnist_cpu/ (the adaptive ID in
idfr/adaptive/): none, ID, ID+FR, adaptive ID+FR and Fast AT under the adaptive white-box threat model (FGSM, CW, BIM,
PGD and ART's AutoAttack — APGD-CE and APGD-DLR with 100 steps and one restart, DeepFool, Square with 300 queries —
through each whole defended classifier) and the query threat model, at 8/255 and 16/255 on 100 test images, with
the gradient-masking checks (Square with 300 queries vs the gradient attacks, PGD at 0.5, PGD-20 vs PGD-100x2).
The budget is cut to what two CPU cores do in one session: `fashion_mnist_cpu`'s own white-box table with AutoAttack
on 200 images at four budgets took ~9 minutes per AutoAttack cell on the undefended target here. Reports go to
benchmarks/results/fashion_mnist_adaptive/.
"""
import os
import shlex
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
RUN = os.path.join(ROOT, "runs", "fashion_mnist_cpu")

ARGS = [
    "evaluate", "--target", os.path.join(RUN, "target"), "--idfr", os.path.join(RUN, "idfr"),
    "--surrogate", os.path.join(RUN, "surrogate"), "--fast-at", os.path.join(RUN, "fast_at"),
    "--preset", "cpu", "--dataset", "fashion_mnist_idx", "--seed", "0", "--threads", "2", "--test-size", "2000",
    "--defences", "none,id,idfr,idfr_adaptive,fast_at", "--threat-models", "white-box,query",
    "--attacks", "fgsm,cw,bim,pgd,autoattack", "--eps", "8/255,16/255", "--eval-n", "2000", "--whitebox-n", "100",
    "--query-n", "100", "--query-iter", "300", "--autoattack-restarts", "1", "--autoattack-square-iter", "300",
    "--sanity-square-iter", "300", "--fast-at-eps", "16/255",
]

if __name__ == "__main__":
    from art_idfr.experiments.cli import main

    out = os.path.join(ROOT, "runs", "fashion_mnist_adaptive")
    start = time.perf_counter()
    print("$ python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]))
    status = main([*ARGS, *sys.argv[1:], "--out", out])
    print(f"wall time {time.perf_counter() - start:.0f} s, exit status {status}")
    if status == 0:
        dest = os.path.join(HERE, "results", "fashion_mnist_adaptive")
        os.makedirs(dest, exist_ok=True)
        for f in ("results.json", "results.csv", "results.md", "accuracy_vs_eps.png"):
            if os.path.exists(os.path.join(out, f)):
                shutil.copy2(os.path.join(out, f), os.path.join(dest, f))
    sys.exit(status)
