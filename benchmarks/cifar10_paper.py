"""
CIFAR-10 (JPEG q75 copy) at paper scale on one GPU (issue: results that stand).

    python benchmarks/cifar10_paper.py --device cuda                       # ResNet-18 target, ~8 min on one H100
    python benchmarks/cifar10_paper.py --device cuda --only vgg16_bn_cifar # VGG16-BN target (ResNet-18 surrogate)
    python benchmarks/cifar10_paper.py --device cuda --full                # both targets, ~2 x 8 min

The paper's protocol with its hyper-parameters scaled to the device time one session is lent (15 minutes of an
H100/H200 in all, at most 10 minutes per command; `benchmarks/device_paper.sh` is the exact command that ran there):
a full-width CIFAR ResNet-18 target, attacked in the black-box setting through an independently trained VGG16-BN
surrogate (and, with --only vgg16_bn_cifar, the other way round); ID (Table 6 U-Net, width 1, identity weight 10 as in
the CPU benchmarks) and FR (Table 7) fitted on ART FGSM/BIM AEs at 8/255 and 16/255 of 8k training images; all
defences but TotalVarMin (its SciPy solver runs on the CPU, one image at a time, and alone would take most of the
lease) and the four threat models; FGSM/CW/BIM at eps 4/8/16 (/255) on 2,000 test images (white-box on 200, query on
100). Reports go to benchmarks/results/cifar10_paper_<model>/.

The committed results (one H200, this exact script) trained the ID on 8/255 and 16/255 AEs only. The Fashion-MNIST
validation split later showed that adding 4/255 closes the 4/255 gap (benchmarks/NOTES.md); the next GPU run should
add `--idfr-eps 4/255,8/255,16/255` (extra arguments override the list below) and commit that as a new result.
CIFAR-10's validation split then showed that an extra AE source lifts the black-box 16/255 columns by 13-20 points
(benchmarks/NOTES.md); at this scale that is `--idfr-source-model small_cnn --idfr-source-epochs 8` (a third
architecture: never the surrogate's), worth a run of its own.

Device time (measured 2026-11-26 on one H200, VGG16-BN target with those two additions): smoke run 107 s; training
about 290 s (target 35 s, the extra source and its AEs, ID 8 epochs of 12 s, FR, surrogate 25 s, Fast AT 24 s);
evaluation about 260 s (clean 2, black-box 30, gray-box 24, white-box 49, query about 150). That is more than one
10-minute call holds after the machine's start, and that attempt ran out of time in the query threat model. So:
`SMOKE=0 bash benchmarks/device_paper.sh 585 <args>` with timeout_s 600, and if it stops in the evaluation, the same
command again at once, on the still-warm machine: the trained models are reused and the evaluation resumes from its
checkpoint (each finished threat model is also in results.partial.md).

Scaling versus the paper (Sec. 4.1): target 12 epochs with one-cycle SGD (bf16 autocast on CUDA), surrogate 8,
Fast AT 3; ID 8 epochs instead of 100 and FR 20 instead of 80, lr 1e-3 (the authors' code) instead of 0.01, 8k of
the 50k training images for IDFR, 2,000 of the 10,000 test images.
"""
import argparse
import sys

from _run import run

COMMON = [
    "--preset", "paper", "--dataset", "cifar10_jpeg", "--seed", "0",
    "--width", "1.0", "--target-epochs", "12", "--surrogate-epochs", "8", "--batch-size", "256", "--lr", "0.1",
    "--val-n", "1000",
    "--id-width", "1.0", "--id-epochs", "8", "--fr-epochs", "20", "--fit-n", "8000", "--id-identity-weight", "10",
    "--idfr-eps", "8/255,16/255", "--eps", "4/255,8/255,16/255",
    "--test-size", "2000", "--eval-n", "2000", "--whitebox-n", "200", "--query-n", "100", "--query-iter", "100",
    "--fast-at-epochs", "3", "--attack-batch-size", "1000",
    "--defences", "none,id,idfr,feature_squeezing,jpeg25,jpeg50,jpeg75,spatial_smoothing,fast_at",
]
TARGETS = {"resnet18_cifar": "vgg16_bn_cifar", "vgg16_bn_cifar": "resnet18_cifar"}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=tuple(TARGETS), default="resnet18_cifar")
    parser.add_argument("--full", action="store_true", help="both targets")
    args, rest = parser.parse_known_args()
    sys.argv = [sys.argv[0], *rest]  # the rest (e.g. --device cuda) goes to art-idfr demo
    status = 0
    for model, surrogate in TARGETS.items():
        if args.full or args.only == model:
            status |= run(f"cifar10_paper_{model}", [*COMMON, "--model", model, "--surrogate-model", surrogate])
    sys.exit(status)
