"""
ImageNet, the paper's largest setting (a 30k-image subset; ResNet-50 at 224x224, Inception-v3 at 299x299), on one GPU
with your own data and weights: nothing is downloaded.

    python benchmarks/imagenet_paper.py --data-root /data/imagenet --resnet50-weights resnet50.pth \\
        --inception-v3-weights inception_v3.pth --device cuda                 # ResNet-50 target (224)
    python benchmarks/imagenet_paper.py ... --only inception_v3                # Inception-v3 target (299)
    python benchmarks/imagenet_paper.py ... --full                             # both, one after the other
    python benchmarks/imagenet_paper.py ... --dry-run                          # check the arguments, run nothing

Not run yet: this project has had neither ImageNet nor the GPU time for it. The arguments are checked by
`--dry-run` (tests/test_imagenet_path.py runs it), the path itself end to end on a generated ImageFolder at 224 and
299 by that test file; the budgets below are a starting point scaled from `cifar10_paper.py`, not tuned.

Data (`--data-root`): an ImageFolder directory or tarball, `train/<wnid>/*.JPEG` and `val/<wnid>/*.JPEG` (ImageNet's
layout; `test/` instead of `val/` works too) with all 1000 class folders: their sorted WordNet IDs are torchvision's
class order, which the weights' 1000-way classifiers expect. A tree of 30 images per class is the paper's subset; a
full ImageNet tree works as well, since only the stratified subsets below are decoded. Images are resized
torchvision's way (shorter side 256, centre crop 224; 342 and 299) and cached as uint8 under ~/.cache/art_idfr.

Weights: torchvision state dicts, saved on a machine with internet access, e.g.
    torch.save(torchvision.models.resnet50(weights="IMAGENET1K_V2").state_dict(), "resnet50.pth")
    torch.save(torchvision.models.inception_v3(weights="IMAGENET1K_V1").state_dict(), "inception_v3.pth")
read with torch.load(weights_only=True) (loading never runs code); Inception-v3's auxiliary head is dropped and its
input scaled as torchvision's weights expect.

Protocol: each target is used as it is (`--target-epochs 0`); the black-box surrogate is the other architecture with
its weights, also as it is, at the target's input size (Inception-v3 at 224 in the ResNet-50 run, ResNet-50 at 299 in
the Inception-v3 run). ID (Table 6 U-Net, width 1, identity weight 10, crop+flip augmentation) and FR (Table 7,
2048-d embedding of torchvision's `fc`) are fitted on ART FGSM/BIM AEs at 4, 8 and 16/255 of 5,000 of the 30,000
training images (1,000 more are the validation split); FGSM/CW/BIM at 4/8/16 (/255) on 1,000 images of `val/`
(white-box on 100, query on 50). Left out: TotalVarMin (a CPU solver, one image at a time) and Fast AT (adversarial
training of an ImageNet model from scratch is not a baseline one GPU run affords).

Memory (host): the 30,000 training images take 18 GB as float32 at 224 (32 GB at 299) and the ID's training AEs
5,000 x 6 sets x 0.6 MB = 18 GB (32 GB at 299): plan on a machine with 64-128 GB, or lower `--train-size` / `--fit-n`
(any further argument is passed to `art-idfr demo` and overrides the list below).
"""
import argparse
import os
import shlex
import sys

from _run import run

#: the two targets: input size and the black-box surrogate's architecture
TARGETS = {"resnet50": (224, "inception_v3"), "inception_v3": (299, "resnet50")}

COMMON = [
    "--preset", "paper", "--dataset", "imagefolder", "--seed", "0",
    "--width", "1.0", "--target-epochs", "0", "--surrogate-epochs", "0",
    "--train-size", "30000", "--val-n", "1000", "--test-size", "1000", "--batch-size", "32",
    "--id-width", "1.0", "--id-epochs", "8", "--fr-epochs", "20", "--fit-n", "5000", "--id-identity-weight", "10",
    "--id-augment", "crop_flip", "--idfr-attacks", "fgsm,bim", "--idfr-eps", "4/255,8/255,16/255",
    "--eps", "4/255,8/255,16/255", "--eval-n", "1000", "--whitebox-n", "100", "--query-n", "50", "--query-iter", "100",
    "--attack-batch-size", "64",
    "--defences", "none,id,idfr,feature_squeezing,jpeg25,jpeg50,jpeg75,spatial_smoothing",
    "--attacks", "fgsm,cw,bim",
]


def demo_args(model: str, data_root: str, weights: dict) -> list:
    """The `art-idfr demo` arguments of one target (before the pass-through ones)."""
    size, surrogate = TARGETS[model]
    return [*COMMON, "--data-root", data_root, "--image-size", str(size), "--model", model, "--weights",
            weights[model], "--surrogate-model", surrogate, "--surrogate-weights", weights[surrogate]]


def check(argv: list) -> None:
    """Parse and validate `art-idfr demo argv` as the run would (config, names, budgets, weights files)."""
    from art_idfr.experiments.cli import _config, build_parser

    _config(build_parser().parse_args(["demo", *argv]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="ImageFolder directory or tarball (train/ and val/)")
    parser.add_argument("--resnet50-weights", required=True, help="torchvision ResNet-50 state_dict file")
    parser.add_argument("--inception-v3-weights", required=True, help="torchvision Inception-v3 state_dict file")
    parser.add_argument("--only", choices=tuple(TARGETS), default="resnet50", help="the target (default resnet50)")
    parser.add_argument("--full", action="store_true", help="both targets")
    parser.add_argument("--dry-run", action="store_true", help="check the arguments and print the commands only")
    args, rest = parser.parse_known_args()
    if not os.path.exists(args.data_root):
        parser.error(f"--data-root {args.data_root!r} does not exist")
    weights = {"resnet50": args.resnet50_weights, "inception_v3": args.inception_v3_weights}
    sys.argv = [sys.argv[0], *rest]  # the rest (e.g. --device cuda) goes to art-idfr demo
    status = 0
    for model in TARGETS:
        if not (args.full or args.only == model):
            continue
        argv = demo_args(model, args.data_root, weights)
        if args.dry_run:
            try:
                check([*argv, *rest])
            except ValueError as err:
                parser.error(str(err))
            print("art-idfr demo " + " ".join(shlex.quote(a) for a in [*argv, *rest]))
            continue
        status |= run(f"imagenet_paper_{model}", argv)
    return status


if __name__ == "__main__":
    sys.exit(main())
