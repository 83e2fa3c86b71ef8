"""
``art-idfr``: command line of the IDFR experiments.

Subcommands::

    art-idfr demo                                  # the README run: MNIST-5k, everything, < 10 min on 2 CPU cores
    art-idfr train-target --out runs/target        # train a target (or --role surrogate) with per-epoch checkpoints
    art-idfr fit --target runs/target --out runs/idfr
    art-idfr evaluate --target runs/target --idfr runs/idfr --out runs/eval

Common options: ``--preset cpu|paper|tiny``, ``--device auto|cpu|cuda``, ``--out DIR``, ``--seed N``,
``--dataset NAME``, ``--model NAME``; every scale knob of :class:`art_idfr.experiments.evaluation.EvalConfig` has a flag.
Invalid names and budgets are rejected by argparse (exit status 2) with the list of valid values; data-loading
problems (missing files, no ``train/``/``test/`` folders) exit with status 2 and the loader's message.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

__all__ = ["main", "build_parser"]

PROG = "art-idfr"


# ----------------------------------------------------------------------------------------------------------------------
# argument types
# ----------------------------------------------------------------------------------------------------------------------


def _eps_list(text: str) -> tuple:
    from art_idfr.experiments.evaluation.config import parse_eps

    items = [t for t in (p.strip() for p in text.split(",")) if t]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of budgets, e.g. 4/255,8/255,0.3")
    try:
        return tuple(parse_eps(t) for t in items)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _eps(text: str) -> float:
    from art_idfr.experiments.evaluation.config import parse_eps

    try:
        return parse_eps(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _name_list(canonical: Callable[[str], str]) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        items = [t for t in (p.strip() for p in text.split(",")) if t]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        try:
            return tuple(canonical(t) for t in items)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = "list"
    return parse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _choice(valid: Sequence[str], what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        key = text.strip().lower()
        if key not in valid:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}; valid {what}s: {', '.join(valid)}")
        return key

    parse.__name__ = what
    return parse


# ----------------------------------------------------------------------------------------------------------------------
# parser
# ----------------------------------------------------------------------------------------------------------------------

# flag -> EvalConfig field, for the scale knobs
_KNOBS: Dict[str, str] = {}


def _common_parent() -> argparse.ArgumentParser:
    from art_idfr.experiments.data import DATASET_NAMES
    from art_idfr.experiments.evaluation.config import PRESETS
    from art_idfr._names import MODEL_NAMES

    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("common options")
    g.add_argument("--preset", type=_choice(tuple(PRESETS), "preset"), default="cpu",
                   help="scale preset: cpu (default; the README demo), paper (full protocol, GPU), tiny (smoke tests)")
    g.add_argument("--device", type=_choice(("auto", "cpu", "cuda"), "device"), default="auto",
                   help="auto (CUDA if available), cpu or cuda")
    g.add_argument("--out", metavar="DIR", default=None, help="output folder")
    g.add_argument("--seed", type=_non_negative_int, default=None, help="random seed (default 0)")
    g.add_argument("--dataset", type=_choice(DATASET_NAMES, "dataset"), default=None,
                   help=f"dataset name: {', '.join(DATASET_NAMES)} (default: mnist5k for cpu, cifar10 for paper)")
    g.add_argument("--model", type=_choice(MODEL_NAMES, "model"), default=None,
                   help=f"target architecture: {', '.join(MODEL_NAMES)}")
    g.add_argument("--data-root", metavar="PATH", default=None,
                   help="dataset folder / file (ImageFolder tree or tarball, IDX folder, torchvision root)")
    g.add_argument("--download", action="store_true", default=None,
                   help="let torchvision download mnist / fashion_mnist / cifar10 / cifar100 / svhn")
    g.add_argument("--threads", type=_positive_int, default=None,
                   help="CPU threads for torch (NumPy/SciPy BLAS always get 1; default: on <= 3 cores, the idle "
                        "ones by the 1-minute load average, else min(4, cores // 2); oversubscribed cores make small "
                        "workloads tens of times slower)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--verbose", action="store_true", help="log every training epoch")
    return p


def _add(g, flag: str, field: str, **kwargs) -> None:
    _KNOBS[flag.lstrip("-").replace("-", "_")] = field
    g.add_argument(flag, dest=flag.lstrip("-").replace("-", "_"), default=None, **kwargs)


def _model_knobs(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data and model knobs (override the preset)")
    _add(g, "--train-size", "train_size", type=_positive_int, metavar="N", help="stratified training subset")
    _add(g, "--test-size", "test_size", type=_positive_int, metavar="N", help="stratified test subset")
    _add(g, "--val-n", "val_n", type=_positive_int, metavar="N", help="validation images split off the training set")
    _add(g, "--width", "width", type=_positive_float, metavar="W", help="target width multiplier")
    _add(g, "--target-epochs", "target_epochs", type=_positive_int, metavar="E", help="target training epochs")
    _add(g, "--batch-size", "batch_size", type=_positive_int, metavar="B", help="training batch size")
    _add(g, "--lr", "lr", type=_positive_float, help="target / surrogate learning rate")


def _surrogate_knobs(p: argparse.ArgumentParser) -> None:
    from art_idfr._names import MODEL_NAMES

    g = p.add_argument_group("surrogate (black-box source) knobs")
    _add(g, "--surrogate-model", "surrogate_model", type=_choice(MODEL_NAMES, "model"),
         help="surrogate architecture (default: the target's)")
    _add(g, "--surrogate-width", "surrogate_width", type=_positive_float, metavar="W", help="surrogate width")
    _add(g, "--surrogate-epochs", "surrogate_epochs", type=_positive_int, metavar="E", help="surrogate epochs")


def _idfr_knobs(p: argparse.ArgumentParser) -> None:
    from art_idfr._names import ATTACK_NAMES, AUGMENTATIONS

    def attack_list(text: str) -> tuple:
        return _name_list(_choice(ATTACK_NAMES, "attack"))(text)

    g = p.add_argument_group("IDFR knobs")
    _add(g, "--id-width", "id_width", type=_positive_float, metavar="W", help="U-Net width multiplier of the ID")
    _add(g, "--id-epochs", "id_epochs", type=_positive_int, metavar="E", help="ID training epochs")
    _add(g, "--id-lr", "id_lr", type=_positive_float, help="ID learning rate")
    _add(g, "--id-sigma", "id_sigma", type=float, help="sigma of the Gaussian-enhanced copies")
    _add(g, "--id-loss", "id_loss", choices=("ce", "feature", "both"), help="ID training loss (Eq. 3 = ce)")
    _add(g, "--id-augment", "id_augment", choices=AUGMENTATIONS,
         help="augmentation of the ID's training batches (none = the paper; crop_flip for CIFAR-like images)")
    _add(g, "--id-identity-weight", "id_identity_weight", type=float, metavar="L",
         help="weight of the identity term mean|ID(x) - x| on clean training images (0 = the paper)")
    _add(g, "--id-clean-weight", "id_clean_weight", type=_positive_float, metavar="W",
         help="loss weight of clean training images relative to AEs (1 = the paper)")
    _add(g, "--fr-epochs", "fr_epochs", type=_positive_int, metavar="E", help="FR training epochs")
    _add(g, "--fit-n", "fit_n", type=_positive_int, metavar="N", help="training images used to fit ID and FR")
    _add(g, "--idfr-attacks", "idfr_attacks", type=attack_list, metavar="LIST",
         help=f"attacks crafting the IDFR training AEs (default fgsm,bim; valid: {', '.join(ATTACK_NAMES)})")
    _add(g, "--idfr-eps", "idfr_eps", type=_eps_list, metavar="LIST",
         help="budgets of the IDFR training AEs (default 0.1,0.3 grey-scale; 8/255,16/255 colour)")
    _source_knobs(g)


def _source_knobs(g) -> None:
    from art_idfr._names import MODEL_NAMES

    _add(g, "--idfr-source-model", "idfr_source_model", type=_name_list(_choice(MODEL_NAMES, "model")),
         metavar="LIST",
         help="also craft the IDFR training AEs on these extra, independently trained models, comma-separated "
              "(seeds + 3000, + 4000, ...; never the black-box surrogate; default: the target only, as in the paper)")
    _add(g, "--idfr-source-width", "idfr_source_width", type=_name_list(_positive_float), metavar="LIST",
         help="width of the extra AE sources: one for all or one per model (default: the target's)")
    _add(g, "--idfr-source-epochs", "idfr_source_epochs", type=_positive_int, metavar="E",
         help="training epochs of the extra AE sources")


def _eval_knobs(p: argparse.ArgumentParser) -> None:
    from art_idfr.experiments.evaluation.config import (
        ATTACKS,
        DEFENCES,
        THREAT_MODELS,
        canonical_attack,
        canonical_defence,
        canonical_threat_model,
    )

    g = p.add_argument_group("evaluation knobs")
    _add(g, "--defences", "defences", type=_name_list(canonical_defence), metavar="LIST",
         help=f"defences to compare (default all: {','.join(DEFENCES)}; jpeg<q> for any quality)")
    _add(g, "--threat-models", "threat_models", type=_name_list(canonical_threat_model), metavar="LIST",
         help=f"threat models (default all: {','.join(THREAT_MODELS)})")
    _add(g, "--attacks", "attacks", type=_name_list(canonical_attack), metavar="LIST",
         help=f"attacks of the black/gray/white-box tables (default fgsm,cw,bim; valid: {', '.join(ATTACKS)})")
    _add(g, "--eps", "eps", type=_eps_list, metavar="LIST",
         help="L-inf budgets in (0, 1], e.g. 4/255,8/255,16/255,0.3 (default: that for grey-scale, 32/255 instead "
              "of 0.3 for colour)")
    _add(g, "--eval-n", "eval_n", type=_positive_int, metavar="N", help="test images (clean, black-box, gray-box)")
    _add(g, "--whitebox-n", "whitebox_n", type=_positive_int, metavar="N", help="images for the white-box attacks")
    _add(g, "--query-n", "query_n", type=_positive_int, metavar="N", help="images for the query attack")
    _add(g, "--query-iter", "query_iter", type=_positive_int, metavar="N", help="SquareAttack iterations")
    _add(g, "--attack-iter", "attack_iter", type=_positive_int, metavar="N", help="BIM / CW iterations (paper: 20)")
    _add(g, "--attack-batch-size", "attack_batch_size", type=_positive_int, metavar="B",
         help="batch size of attacks and predictions (128; larger is faster on a GPU)")
    _add(g, "--eps-step", "eps_step", type=_positive_float, help="BIM / CW step, capped at eps (paper: 0.03)")
    _add(g, "--sanity-eps", "sanity_eps", type=_eps, help="budget of the undefended white-box sanity check (0.5)")
    _add(g, "--fast-at-epochs", "fast_at_epochs", type=_positive_int, metavar="E", help="Fast AT epochs")
    _add(g, "--fast-at-eps", "fast_at_eps", type=_eps, help="Fast AT training budget (0.3 grey-scale, 8/255 colour)")
    _add(g, "--fs-bit-depth", "fs_bit_depth", type=_positive_int, help="Feature Squeezing bit depth (4 / 5)")
    _add(g, "--tvm-max-iter", "tvm_max_iter", type=_positive_int, help="TotalVarMin solver iterations")
    _add(g, "--tvm-lamb", "tvm_lamb", type=_positive_float, help="TotalVarMin lambda (0.05; ART's default 0.5)")
    _add(g, "--eot-samples", "eot_samples", type=_positive_int,
         help="white-box attacks on a randomised defence (TotalVarMin) average gradients over N draws (EOT; 4)")
    _add(g, "--smoothing-window", "smoothing_window", type=_positive_int, help="SpatialSmoothing window (2)")


def build_parser() -> argparse.ArgumentParser:
    """The ``art-idfr`` argument parser."""
    from art_idfr import __version__

    common = _common_parent()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="IDFR (input denoising + feature restoring) adversarial defence for ART: train targets, fit "
                    "IDFR, and evaluate it next to ART's preprocessing baselines and Fast AT under black-box, "
                    "gray-box, adaptive white-box and query threat models.",
        epilog="Start with `art-idfr demo` (MNIST-5k, no download, under 10 minutes on 2 CPU cores).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train-target", parents=[common], help="train a target or surrogate model (checkpoints, resume)",
                       description="Train a target (or black-box surrogate) model on a dataset. A checkpoint is "
                                   "written after every epoch into OUT/checkpoints and an interrupted run resumes "
                                   "from it; the final weights go to OUT/model.pt (torch.save(state_dict)) with "
                                   "OUT/model.json.")
    p.add_argument("--role", choices=("target", "surrogate", "idfr_source"), default="target",
                   help="surrogate: seed + 1000 and the --surrogate-* settings; idfr_source: extra AE source "
                        "--source-index of --idfr-source-model (seed + 3000 + 1000 * index)")
    p.add_argument("--source-index", type=_non_negative_int, default=0, metavar="I",
                   help="with --role idfr_source: which of the --idfr-source-model list (from 0)")
    p.add_argument("--epochs", type=_positive_int, default=None, help="epochs (target or surrogate, per --role)")
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints in OUT")
    _model_knobs(p)
    _surrogate_knobs(p)
    _source_knobs(p.add_argument_group("extra AE source knobs (--role idfr_source)"))
    p.set_defaults(func=_cmd_train_target)

    p = sub.add_parser("fit", parents=[common], help="fit the ID and FR for a saved target",
                       description="Fit the input denoiser (Algorithm 1) and the feature restorer (Algorithm 2) for "
                                   "a target saved by train-target; writes OUT/denoiser.pt, OUT/restorer.pt (their "
                                   ".save()) and OUT/idfr.json.")
    p.add_argument("--target", metavar="DIR", required=True, help="model folder written by train-target")
    p.add_argument("--refit", action="store_true", help="refit even if OUT holds a fit with the same settings")
    _idfr_knobs(p)
    p.add_argument_group("evaluation knobs").add_argument("--attack-iter", dest="attack_iter", type=_positive_int,
                                                          default=None, help="BIM iterations for the training AEs")
    _KNOBS["attack_iter"] = "attack_iter"
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("evaluate", parents=[common], help="run the evaluation suite and write the reports",
                       description="Evaluate every defence on the same test images under the four threat models "
                                   "and write OUT/results.json, results.csv, results.md and accuracy_vs_eps.png. "
                                   "A missing surrogate (black-box) or Fast AT model is trained into OUT.")
    p.add_argument("--target", metavar="DIR", required=True, help="target model folder (train-target)")
    p.add_argument("--idfr", metavar="DIR", default=None, help="IDFR folder (fit); needed for the id / idfr defences")
    p.add_argument("--surrogate", metavar="DIR", default=None,
                   help="surrogate model folder (train-target --role surrogate); default: train one into OUT/surrogate")
    p.add_argument("--fast-at", metavar="DIR", default=None,
                   help="Fast AT model folder; default: train one into OUT/fast_at")
    _model_knobs(p)
    _surrogate_knobs(p)
    _eval_knobs(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("demo", parents=[common], help="train, fit and evaluate everything (the README command)",
                       description="End to end on MNIST-5k (no download): train the target and an independent "
                                   "surrogate, fit IDFR, train Fast AT, evaluate all defences under black-box, "
                                   "gray-box, white-box and query attacks at eps 4/255, 8/255, 16/255 and 0.3, print "
                                   "the Markdown tables and write the reports into OUT (default runs/demo). Saved "
                                   "models in OUT are reused unless --retrain.")
    p.add_argument("--retrain", action="store_true", help="retrain every model even if OUT holds one")
    _model_knobs(p)
    _surrogate_knobs(p)
    _idfr_knobs(p)
    _eval_knobs(p)
    p.set_defaults(func=_cmd_demo)
    return parser


# ----------------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------------


def _default_threads() -> int:
    """
    torch threads when ``--threads`` is not given: on up to 3 cores, as many as are idle by the 1-minute load
    average (2 on an idle 2-core laptop, 1 beside another job: oversubscribed cores make small workloads tens of
    times slower); on more cores, half of them, at most 4.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    if cores > 3:
        return min(4, cores // 2)
    try:
        idle = cores - os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - no load average (Windows)
        return 1
    return max(1, min(cores, int(idle + 0.5)))


def _setup(args) -> None:
    from art_idfr.experiments.evaluation.pipeline import limit_threads

    limit_threads(args.threads or _default_threads())
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"
    if getattr(args, "device", None) in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():  # fixed 32x32 shapes: let cuDNN pick its fastest kernels (not bit-reproducible)
            torch.backends.cudnn.benchmark = True


def _config(args, **fixed: Any):
    """EvalConfig from the preset, the common options and every knob flag given on the command line."""
    from art_idfr.experiments.evaluation.config import EvalConfig

    overrides: Dict[str, Any] = {}
    for dest, field in _KNOBS.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides[field] = value
    for field in ("seed", "dataset", "model", "data_root", "download", "device"):
        value = getattr(args, field, None)
        if value is not None:
            overrides[field] = value
    overrides.update({k: v for k, v in fixed.items() if v is not None})
    return EvalConfig.preset(args.preset, **overrides)


_ARGV: List[str] = []  # the arguments main() was called with: the exact command recorded in every report


def _command() -> str:
    return " ".join([PROG] + [shlex.quote(a) for a in _ARGV])


def _echo(args, text: str = "") -> None:
    print(text, flush=True)


def _target_config(args, target_dir: str):
    """Config for a saved target: architecture and data split from its model.json unless given explicitly."""
    from art_idfr.experiments.evaluation.pipeline import load_model_dir

    model, meta = load_model_dir(target_dir, device=args.device)
    data = meta.get("data", {})
    if args.dataset is not None and args.dataset != meta.get("dataset"):
        raise ValueError(f"--dataset {args.dataset} differs from the target's dataset {meta.get('dataset')!r} "
                         f"({target_dir}/model.json).")
    if args.model is not None and args.model != meta.get("model"):
        raise ValueError(f"--model {args.model} differs from the target's architecture {meta.get('model')!r}.")
    fixed = {"dataset": meta.get("dataset"), "model": meta.get("model"), "width": meta.get("width")}
    for key in ("train_size", "test_size", "val_n", "data_root"):
        if getattr(args, key, None) is None and data.get(key) is not None:
            fixed[key] = data[key]
    if args.seed is None and "seed" in data:
        fixed["seed"] = data["seed"]
    if getattr(args, "width", None) is not None and float(args.width) != float(meta.get("width")):
        raise ValueError(f"--width {args.width} differs from the target's width {meta.get('width')}.")
    return model, meta, _config(args, **fixed)


# ----------------------------------------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------------------------------------


def _cmd_train_target(args) -> int:
    from art_idfr.experiments.evaluation.pipeline import prepare_data, train_network

    fixed: Dict[str, Any] = {}
    if args.epochs is not None:
        fixed[{"target": "target_epochs", "surrogate": "surrogate_epochs",
               "idfr_source": "idfr_source_epochs"}[args.role]] = args.epochs
    cfg = _config(args, **fixed)
    if args.role == "idfr_source" and not cfg.idfr_source_model:
        raise ValueError("--role idfr_source needs --idfr-source-model.")
    if args.source_index and args.role != "idfr_source":
        raise ValueError("--source-index is only for --role idfr_source.")
    if args.role == "idfr_source" and args.source_index >= len(cfg.idfr_source_model):
        raise ValueError(f"--source-index {args.source_index} is out of range: --idfr-source-model lists "
                         f"{len(cfg.idfr_source_model)} model(s).")
    out = args.out or os.path.join("runs", args.role)
    t0 = time.perf_counter()
    data = prepare_data(cfg, verbose=not args.quiet)
    _echo(args, f"{data.dataset.describe()}; {len(data.y_train)} train / {len(data.y_val)} validation")
    model, meta = train_network(cfg, data, out, role=args.role, resume=not args.no_resume, verbose=not args.quiet,
                                source_index=args.source_index)
    _echo(args, f"{args.role} {meta['model']} (width {meta['width']:g}, seed {meta['seed']}, {meta['epochs']} epochs): "
                f"val {100 * meta['val_accuracy']:.2f}%, test {100 * meta['test_accuracy']:.2f}%")
    _echo(args, f"weights: {os.path.join(out, 'model.pt')}  ({time.perf_counter() - t0:.0f} s)")
    return 0


def _cmd_fit(args) -> int:
    from art_idfr.experiments.evaluation.pipeline import fit_idfr, prepare_data

    t0 = time.perf_counter()
    model, meta, cfg = _target_config(args, args.target)
    data = prepare_data(cfg, verbose=not args.quiet)
    cfg = cfg.resolved(data.input_shape[0])
    out = args.out or os.path.join("runs", "idfr")
    den, res, info = fit_idfr(cfg, data, model, out, target_meta=meta, reuse=not args.refit, verbose=not args.quiet)
    _echo(args, _idfr_summary(den, res, cfg, info))
    _echo(args, f"saved: {os.path.join(out, 'denoiser.pt')}, {os.path.join(out, 'restorer.pt')}  "
                f"({time.perf_counter() - t0:.0f} s)")
    return 0


def _idfr_summary(den, res, cfg, meta=None) -> str:
    def chosen(hist):
        scored = [h for h in hist if h.get("val_score") is not None]
        if not scored:
            return "n/a"
        h = max(scored, key=lambda r: r["val_score"])  # the epoch fit() kept (first best)
        adv = f", on validation AEs {100 * h['val_adv_acc']:.2f}%" if "val_adv_acc" in h else ""
        return f"epoch {h['epoch']}: val acc {100 * h['val_acc']:.2f}%{adv}"

    s = (meta or {}).get("idfr_source")  # written by fit_idfr when extra AE sources were used: a dict or a list
    s = [s] if isinstance(s, dict) else (s or [])
    src = ("; training AEs from the target and from " + ", ".join(
        f"{m['model']} (width {m['width']:g}, seed {m['seed']})" for m in s)) if s else ""
    return (f"IDFR fitted: ID width {cfg.id_width:g}, {cfg.id_epochs} epochs, kept {chosen(den.history)}; "
            f"FR {cfg.fr_epochs} epochs, kept {chosen(res.history) if res is not None else 'n/a'}{src}")


def _run_evaluation(args, cfg, data, target, target_meta, out, denoiser, restorer, surrogate=None,
                    surrogate_meta=None, fast_at=None, fast_at_meta=None, idfr_meta=None, retrain=False,
                    t_start=None) -> int:
    from art_idfr.experiments.evaluation.pipeline import train_fast_at, train_network
    from art_idfr.experiments.evaluation.suite import evaluate

    verbose = not args.quiet
    if "black-box" in cfg.threat_models and surrogate is None:
        _echo(args, "training the black-box surrogate ...")
        surrogate, surrogate_meta = train_network(cfg, data, os.path.join(out, "surrogate"), role="surrogate",
                                                  resume=not retrain, verbose=verbose)
    if "fast_at" in cfg.defences and fast_at is None:
        _echo(args, "training Fast AT (ART AdversarialTrainerFBFPyTorch) ...")
        fast_at, fast_at_meta = train_fast_at(cfg, data, os.path.join(out, "fast_at"), reuse=not retrain,
                                              verbose=verbose)
    info = {"target": _brief(target_meta), "surrogate": _brief(surrogate_meta), "fast_at": _brief(fast_at_meta),
            "idfr": {k: v for k, v in (idfr_meta or {}).items() if k in ("settings", "fit_n", "fit_seconds")}}
    _echo(args, "evaluating ...")
    result = evaluate(cfg, data, target, surrogate, denoiser, restorer, fast_at, model_info=info, command=_command(),
                      verbose=verbose, checkpoint_dir=out)
    if t_start is not None:
        result.metadata["wall_seconds_total"] = time.perf_counter() - t_start
    paths = result.write(out)
    _echo(args)
    _echo(args, result.markdown())
    _echo(args, "reports: " + ", ".join(paths.values()))
    if t_start is not None:
        _echo(args, f"total wall time: {time.perf_counter() - t_start:.0f} s")
    return 0


def _brief(meta: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    if not meta:
        return None
    keep = ("role", "model", "width", "seed", "epochs", "val_accuracy", "test_accuracy", "train_seconds", "settings",
            "trainer")
    return {k: meta[k] for k in keep if k in meta}


def _cmd_evaluate(args) -> int:
    from art_idfr.experiments.evaluation.pipeline import load_idfr, load_model_dir, prepare_data

    t0 = time.perf_counter()
    target, meta, cfg = _target_config(args, args.target)
    data = prepare_data(cfg, verbose=not args.quiet)
    cfg = cfg.resolved(data.input_shape[0])
    out = args.out or os.path.join("runs", "eval")
    den = res = None
    idfr_meta = None
    if args.idfr:
        den, res, idfr_meta = load_idfr(args.idfr, device_type=cfg.device_type)
    elif set(cfg.defences) & {"id", "idfr"}:
        raise ValueError("the id / idfr defences need --idfr DIR (from `art-idfr fit`), or leave them out with "
                         "--defences.")
    surrogate = sur_meta = fast = fast_meta = None
    if args.surrogate:
        surrogate, sur_meta = load_model_dir(args.surrogate, device=cfg.device)
    if args.fast_at:
        fast, fast_meta = load_model_dir(args.fast_at, device=cfg.device)
    return _run_evaluation(args, cfg, data, target, meta, out, den, res, surrogate, sur_meta, fast, fast_meta,
                           idfr_meta, t_start=t0)


def _cmd_demo(args) -> int:
    from art_idfr.experiments.evaluation.pipeline import fit_idfr, prepare_data, train_network

    t0 = time.perf_counter()
    cfg = _config(args)
    out = args.out or os.path.join("runs", "demo")
    verbose = not args.quiet
    data = prepare_data(cfg, verbose=verbose)
    cfg = cfg.resolved(data.input_shape[0])
    _echo(args, f"art-idfr demo: {data.dataset.describe()}; preset {cfg.preset_name}; out {out}")
    _echo(args, "training the target ...")
    target, meta = train_network(cfg, data, os.path.join(out, "target"), resume=not args.retrain, verbose=verbose)
    _echo(args, f"target {meta['model']} (width {meta['width']:g}): test accuracy {100 * meta['test_accuracy']:.2f}%")
    den = res = idfr_meta = None
    if set(cfg.defences) & {"id", "idfr"}:
        _echo(args, "fitting IDFR (ID, then FR) ...")
        den, res, idfr_meta = fit_idfr(cfg, data, target, os.path.join(out, "idfr"), target_meta=meta,
                                       reuse=not args.retrain, verbose=verbose)
        _echo(args, _idfr_summary(den, res, cfg, idfr_meta))
    return _run_evaluation(args, cfg, data, target, meta, out, den, res, idfr_meta=idfr_meta, retrain=args.retrain,
                           t_start=t0)


# ----------------------------------------------------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``art-idfr`` console script; returns the exit status."""
    parser = build_parser()
    _ARGV[:] = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    _setup(args)
    sub = {a.dest: a for a in parser._subparsers._group_actions}["command"].choices[args.command]  # type: ignore
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        sub.error(str(err))  # prints usage + "art-idfr <cmd>: error: ..." and exits with status 2
    except KeyboardInterrupt:  # pragma: no cover
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
