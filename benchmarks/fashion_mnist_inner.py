"""
Restorers inside the frozen target (`idfr_inner`, not in the paper; issue 41) beside the adaptive ID+FR, on
`fashion_mnist_adaptive`'s models and recipe, in every threat model. Not run yet: no committed results.

    python benchmarks/fashion_mnist_inner.py     # not run yet; several hours on 2 cores (fashion_mnist_adaptive ~2.5 h)

`art-idfr demo` with `fashion_mnist_adaptive.ARGS` unchanged (fashion_mnist_cpu's target, surrogate, ID + FR and Fast
AT, and its adaptive recipe: PGD-5 at 16/255, TRADES beta 6, every training image twice at batch 16, the FR trained
jointly, one warm restart), then `EXTRA`: the defences none, ID+FR, adaptive ID+FR, ID+FR+inner adaptive and Fast AT,
AutoAttack through each of them in the white-box table, both adaptive fits under bfloat16 autocast with channels-last
images (`--adaptive-autocast bf16 --adaptive-channels-last`: 1.6x faster per step here,
benchmarks/results/adaptive_speed), and for `idfr_inner` LoRA deltas of rank 4 on every Conv2d / Linear of the frozen
small CNN (`--inner-kind lora --inner-rank 4`), trained along with the ID and the FR by the same recipe into
runs/fashion_mnist_inner/idfr/inner_adaptive (the adaptive ID+FR row is therefore the bf16 refit, not
fashion_mnist_adaptive's float32 one). The models `fashion_mnist_adaptive` (or else `fashion_mnist_cpu`) cached under
runs/ (target, surrogate, Fast AT, the Algorithm-1 ID + FR; not their adaptive fits) are copied first and reused when
their recorded settings match. Reports go to benchmarks/results/fashion_mnist_inner/ (with the inner fit's record,
inner_adaptive_fit.json: its parameters, MACs and fraction of the target's parameters).
"""
import os
import sys

from _run import ROOT, run
from fashion_mnist_adaptive import ARGS as ADAPTIVE_ARGS
from fashion_mnist_adaptive import seed_model_cache

#: what this benchmark adds to fashion_mnist_adaptive's flags (later flags override earlier ones)
EXTRA = [
    "--defences", "none,idfr,idfr_adaptive,idfr_inner,fast_at",
    "--autoattack-defences", "none,idfr,idfr_adaptive,idfr_inner,fast_at",
    "--adaptive-autocast", "bf16", "--adaptive-channels-last",
    "--inner-kind", "lora", "--inner-rank", "4",
]
ARGS = ADAPTIVE_ARGS + EXTRA

if __name__ == "__main__":
    dest = os.path.join(ROOT, "runs", "fashion_mnist_inner")
    os.makedirs(dest, exist_ok=True)
    for source in ("fashion_mnist_adaptive", "fashion_mnist_cpu"):  # the first that has a model wins
        seed_model_cache(os.path.join(ROOT, "runs", source), dest)
    sys.exit(run("fashion_mnist_inner", ARGS))
