"""
The adaptive ID+FR (not in the paper) on `cifar10_cpu`'s target, in every threat model (issue: adaptive-robust IDFR).

    python benchmarks/cifar10_adaptive.py     # ~1.5 h on 2 cores; needs ../shared/data/cifar10-jpeg.tar.gz

`art-idfr demo` with `cifar10_cpu`'s target, surrogate and Fast AT (`MODEL_ARGS`: ResNet-18 at width 0.25, the same
seed and epochs) and a cheaper Algorithm-1 ID as the starting point of adaptive training: FGSM/BIM AEs at 4/8/16/255
of the target only (no extra AE sources), 4 epochs on 3,000 images (the `tune_id.py` "base" recipe, plus crop+flip).
The adaptive ID is that ID fine-tuned against PGD-5 at 8/255 through ID+FR+target, TRADES beta 6, no identity term,
no fixed AEs, batch 32, 6,000 images x 2 epochs (the Fashion-MNIST recipe of benchmarks/NOTES.md at the scale two
cores allow here; not tuned on CIFAR-10). Evaluated: none, ID+FR, adaptive ID+FR and Fast AT under the black-box
(FGSM/CW/BIM from the small-CNN surrogate, 1,000 test images), gray-box, adaptive white-box (FGSM, CW, BIM and ART's
AutoAttack — APGD-CE and APGD-DLR with 100 steps and one restart, DeepFool, Square with 1,000 queries — through each
whole defended classifier, 100 images) and query (Square, 300 queries, 50 images) threat models at 8/255 and 16/255,
with the gradient-masking checks. Reports go to benchmarks/results/cifar10_adaptive/.
"""
import sys

from _run import run
from cifar10_cpu import MODEL_ARGS

ARGS = MODEL_ARGS + [
    "--id-width", "0.5", "--fr-epochs", "10", "--fit-n", "3000", "--id-identity-weight", "10",
    "--idfr-eps", "4/255,8/255,16/255", "--id-augment", "crop_flip", "--id-epochs", "4",
    "--adaptive-eps", "8/255", "--adaptive-max-iter", "5", "--adaptive-nb-epochs", "2", "--adaptive-fit-n", "6000",
    "--adaptive-learning-rate", "1e-3", "--adaptive-trades-beta", "6", "--adaptive-identity-weight", "0",
    "--adaptive-fixed-weight", "0", "--adaptive-batch-size", "32",
    "--test-size", "1000", "--eval-n", "1000", "--whitebox-n", "100", "--query-n", "50", "--query-iter", "300",
    "--defences", "none,idfr,idfr_adaptive,fast_at", "--threat-models", "black-box,gray-box,white-box,query",
    "--attacks", "fgsm,cw,bim,autoattack", "--eps", "8/255,16/255", "--autoattack-restarts", "1",
    "--autoattack-square-iter", "1000", "--sanity-square-iter", "1000",
]

if __name__ == "__main__":
    sys.exit(run("cifar10_adaptive", ARGS))
