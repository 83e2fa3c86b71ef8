"""
``art-idfr``: command line of the IDFR experiments.

Subcommands::

    art-idfr demo                                  # the README run: MNIST-5k, everything, < 10 min on 2 CPU cores
    art-idfr train-target --out runs/target        # train a target (or --role surrogate) with per-epoch checkpoints
    art-idfr fit --target runs/target --out runs/idfr
    art-idfr evaluate --target runs/target --idfr runs/idfr --out runs/eval

Common options: ``--preset cpu|paper|tiny``, ``--device auto|cpu|cuda``, ``--out DIR``, ``--seed N``,
``--dataset NAME``, ``--model NAME``; every other field of :class:`art_idfr.experiments.evaluation.EvalConfig` has a
flag generated from it (:func:`config_flags`): ``--id-learning-rate`` / ``--id-lr`` for ``cfg.id.learning_rate``,
``--fr-lr``, ``--fast-at-epochs``, ...
Invalid names and budgets are rejected by argparse (exit status 2) with the list of valid values; data-loading
problems (missing files, no ``train/``/``test/`` folders) exit with status 2 and the loader's message.

Several processes or GPUs: ``torchrun --nproc_per_node=N -m art_idfr.experiments.cli fit|evaluate|...`` (or
torchrun's ``--no-python art-idfr ...``). Each process finds torchrun's ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` and
joins the process group (:func:`_setup_distributed`: NCCL on its local GPU when the run uses CUDA, else Gloo; every
collective and barrier waits at most ``--dist-timeout`` seconds). ``fit`` trains the ID and FR (and ``--adaptive``
the adaptive ID) under DDP; ``evaluate`` shards every cell's images over the ranks; a target, surrogate or Fast AT
model that must be trained is trained by rank 0 alone while the others wait. Only rank 0 prints, shows progress
bars and writes files. Without torchrun (one process) nothing changes.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["main", "build_parser", "config_flags"]

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


def _parse_positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _parse_non_negative_int(text: str) -> int:
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

def _common_parent() -> argparse.ArgumentParser:
    from art_idfr.experiments.data import DATASET_NAMES
    from art_idfr._names import MODEL_NAMES
    from art_idfr.experiments.choices import DEVICES
    from art_idfr.experiments.evaluation.config import PRESETS

    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("common options")
    g.add_argument("--preset", type=_choice(tuple(PRESETS), "preset"), default="cpu",
                   help="scale preset: cpu (default; the README demo), paper (full protocol, GPU), tiny (smoke tests)")
    g.add_argument("--device", type=_choice(DEVICES, "device"), default="auto",
                   help="auto (CUDA if available), cpu or cuda")
    g.add_argument("--out", metavar="DIR", default=None, help="output folder")
    g.add_argument("--seed", type=_parse_non_negative_int, default=None, help="random seed (default 0)")
    g.add_argument("--dataset", type=_choice(DATASET_NAMES, "dataset"), default=None,
                   help=f"dataset name: {', '.join(DATASET_NAMES)} (default: mnist5k for cpu, cifar10 for paper)")
    g.add_argument("--model", type=_choice(MODEL_NAMES, "model"), default=None,
                   help=f"target architecture: {', '.join(MODEL_NAMES)}")
    g.add_argument("--data-root", metavar="PATH", default=None,
                   help="dataset folder / file (ImageFolder tree or tarball, IDX folder, torchvision root)")
    g.add_argument("--download", action="store_true", default=None,
                   help="let torchvision download mnist / fashion_mnist / cifar10 / cifar100 / svhn")
    g.add_argument("--threads", type=_parse_positive_int, default=None,
                   help="CPU threads for torch (NumPy/SciPy BLAS always get 1; default: on <= 3 cores, the idle "
                        "ones by the 1-minute load average, else min(4, cores // 2); oversubscribed cores make small "
                        "workloads tens of times slower)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--dist-timeout", type=_positive_float, default=1800.0, metavar="SECONDS",
                   help="under torchrun: the longest any process waits at a collective or barrier, including for "
                        "rank 0 to train a missing target / surrogate / Fast AT model (default 1800)")
    g.add_argument("--verbose", action="store_true", help="log every training epoch")
    return p


def _arg_types() -> Dict[str, Callable[[str], Any]]:
    """Argument type of each ``kind`` of config field (see :func:`art_idfr.experiments.evaluation.config.knob`)."""
    from art_idfr._names import ATTACK_NAMES, MODEL_NAMES
    from art_idfr.experiments.evaluation.config import canonical_attack, canonical_defence, canonical_threat_model

    return {
        "int+": _parse_positive_int,
        "int0": _parse_non_negative_int,
        "float+": _positive_float,
        "float": float,
        "str": str,
        "eps": _eps,
        "eps_list": _eps_list,
        "model": _choice(MODEL_NAMES, "model"),
        "model_list": _name_list(_choice(MODEL_NAMES, "model")),
        "float+_list": _name_list(_positive_float),
        "int+_list": _name_list(_parse_positive_int),
        "attack_list": _name_list(_choice(ATTACK_NAMES, "attack")),
        "table_attack_list": _name_list(canonical_attack),
        "defence_list": _name_list(canonical_defence),
        "threat_list": _name_list(canonical_threat_model),
    }


#: ``--help`` group title of each section of config flags
SECTION_TITLES = {
    "data": "data and model knobs (override the preset)",
    "surrogate": "surrogate (black-box source) knobs",
    "idfr": "IDFR knobs",
    "source": "extra AE source knobs",
    "eval": "evaluation knobs",
}


def config_flags(section: str) -> List[Tuple[List[str], Dict[str, Any]]]:
    """
    ``(option strings, add_argument keywords)`` of every :class:`EvalConfig` field in ``section``, generated from the
    fields: sub-config field ``<group>.<name>`` -> ``--<group>-<name>`` plus its flat name ``--<flat-name>`` where that
    differs (``id.nb_epochs``: ``--id-nb-epochs``, ``--id-epochs``), top-level field ``name`` -> ``--name``. The
    destination is the flat name, an override keyword of :meth:`EvalConfig.preset`.
    """
    from art_idfr.experiments.evaluation.config import SUB_CONFIGS, flat_fields

    types = _arg_types()
    out = []
    for flat, (group, f) in flat_fields().items():
        md = f.metadata
        cls = SUB_CONFIGS.get(group)
        if not md.get("cli", True) or (md.get("section") or getattr(cls, "SECTION", None)) != section:
            continue
        generated = f"{cls.PREFIX}_{f.name}" if cls is not None and cls.PREFIX else f.name
        flags = [_flag(generated)] + ([_flag(flat)] if flat != generated else [])
        kwargs: Dict[str, Any] = {"dest": flat, "default": None, "help": md.get("help") or None}
        if md.get("kind") == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif md.get("choices"):
            kwargs["choices"] = md["choices"]
        elif md.get("kind"):
            kwargs["type"] = types[md["kind"]]
        if md.get("metavar"):
            kwargs["metavar"] = md["metavar"]
        out.append((flags, kwargs))
    return out


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_knobs(p: argparse.ArgumentParser, section: str, group=None) -> None:
    """Add the generated flags of ``section`` (into ``group``, default a new group titled by the section)."""
    g = group if group is not None else p.add_argument_group(SECTION_TITLES[section])
    for flags, kwargs in config_flags(section):
        g.add_argument(*flags, **kwargs)



def _fit_knobs(p: argparse.ArgumentParser) -> None:
    """``fit``'s knobs: IDFR and extra AE sources, the ID / FR training batch, the BIM steps of the training AEs."""
    idfr = p.add_argument_group(SECTION_TITLES["idfr"])
    _add_knobs(p, "idfr", idfr)
    _add_knobs(p, "source", idfr)
    idfr.add_argument("--batch-size", dest="batch_size", type=_parse_positive_int, default=None, metavar="B",
                      help="batch of the ID and FR training and of the ID's chunked forward (default: the preset's; "
                           "lower it for 224 / 299 px images)")
    p.add_argument_group("evaluation knobs").add_argument("--attack-iter", dest="attack_iter", type=_parse_positive_int,
                                                          default=None, help="BIM iterations for the training AEs")


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
    for add in (_add_train_target_parser, _add_fit_parser, _add_evaluate_parser, _add_demo_parser):
        add(sub, common)
    return parser


def _add_train_target_parser(sub, common) -> None:
    p = sub.add_parser("train-target", parents=[common], help="train a target or surrogate model (checkpoints, resume)",
                       description="Train a target (or black-box surrogate) model on a dataset. A checkpoint is "
                                   "written after every epoch into OUT/checkpoints and an interrupted run resumes "
                                   "from it; the final weights go to OUT/model.pt (torch.save(state_dict)) with "
                                   "OUT/model.json.")
    p.add_argument("--role", choices=("target", "surrogate", "idfr_source"), default="target",
                   help="surrogate: seed + 1000 and the --surrogate-* settings; idfr_source: extra AE source "
                        "--source-index of --idfr-source-model (seed + 3000 + 1000 * index)")
    p.add_argument("--source-index", type=_parse_non_negative_int, default=0, metavar="I",
                   help="with --role idfr_source: which of the --idfr-source-model list (from 0)")
    p.add_argument("--epochs", type=_parse_non_negative_int, default=None, help="epochs (per --role; 0: the weights)")
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints in OUT")
    _add_knobs(p, "data")
    _add_knobs(p, "surrogate")
    _add_knobs(p, "source", p.add_argument_group("extra AE source knobs (--role idfr_source)"))
    p.set_defaults(func=_cmd_train_target)


def _add_fit_parser(sub, common) -> None:
    p = sub.add_parser("fit", parents=[common], help="fit the ID and FR for a saved target",
                       description="Fit the input denoiser (Algorithm 1) and the feature restorer (Algorithm 2) for "
                                   "a target saved by train-target; writes OUT/denoiser.pt, OUT/restorer.pt (their "
                                   ".save()) and OUT/idfr.json.")
    p.add_argument("--target", metavar="DIR", required=True, help="model folder written by train-target")
    p.add_argument("--refit", action="store_true", help="refit even if OUT holds a fit with the same settings")
    p.add_argument("--adaptive", action="store_true",
                   help="also fine-tune the ID adaptively (the idfr_adaptive defence, not in the paper; "
                        "--adaptive-* knobs) into OUT/adaptive")
    _fit_knobs(p)
    p.set_defaults(func=_cmd_fit)


def _add_evaluate_parser(sub, common) -> None:
    p = sub.add_parser("evaluate", parents=[common], help="run the evaluation suite and write the reports",
                       description="Evaluate every defence on the same test images under the four threat models "
                                   "and write OUT/results.json, results.csv, results.md and accuracy_vs_eps.png. "
                                   "A missing surrogate (black-box) or Fast AT model is trained into OUT.")
    p.add_argument("--target", metavar="DIR", required=True, help="target model folder (train-target)")
    p.add_argument("--idfr", metavar="DIR", default=None,
                   help="IDFR folder (fit); needed for the id / idfr defences, and its adaptive/ subfolder (fit "
                        "--adaptive) for idfr_adaptive")
    p.add_argument("--surrogate", metavar="DIR", default=None,
                   help="surrogate model folder (train-target --role surrogate); default: train one into OUT/surrogate")
    p.add_argument("--fast-at", metavar="DIR", default=None,
                   help="Fast AT model folder; default: train one into OUT/fast_at")
    _add_cell_reuse_flag(p)
    _add_knobs(p, "data")
    _add_knobs(p, "surrogate")
    _add_knobs(p, "eval")
    p.set_defaults(func=_cmd_evaluate)


def _add_cell_reuse_flag(p) -> None:
    p.add_argument("--no-cell-reuse", action="store_true",
                   help="attack every white-box, query and gradient-masking cell again, even one that OUT/eval_cells "
                        "holds from an earlier run on identical images, settings, device and model weights")


def _add_demo_parser(sub, common) -> None:
    p = sub.add_parser("demo", parents=[common], help="train, fit and evaluate everything (the README command)",
                       description="End to end on MNIST-5k (no download): train the target and an independent "
                                   "surrogate, fit IDFR, train Fast AT, evaluate all defences under black-box, "
                                   "gray-box, white-box and query attacks at eps 4/255, 8/255, 16/255 and 0.3, print "
                                   "the Markdown tables and write the reports into OUT (default runs/demo). Saved "
                                   "models in OUT are reused unless --retrain.")
    p.add_argument("--retrain", action="store_true", help="retrain every model even if OUT holds one")
    _add_cell_reuse_flag(p)
    _add_knobs(p, "data")
    _add_knobs(p, "surrogate")
    idfr = p.add_argument_group(SECTION_TITLES["idfr"])
    _add_knobs(p, "idfr", idfr)
    _add_knobs(p, "source", idfr)
    _add_knobs(p, "eval")
    p.set_defaults(func=_cmd_demo)


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
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))  # torchrun: processes sharing this machine
    if cores > 3:
        return max(1, min(4, cores // 2) // local)
    try:
        idle = cores - os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - no load average (Windows)
        return 1
    return max(1, min(cores, int(idle + 0.5)) // local)


def _setup_distributed(args) -> bool:
    """
    Under torchrun (``WORLD_SIZE`` > 1 in the environment): join the process group, with NCCL on the GPU
    ``LOCAL_RANK`` when the run uses CUDA (``--device auto`` with a GPU, or ``cuda``), else Gloo, and a timeout of
    ``--dist-timeout`` seconds on every collective and barrier; ranks other than 0 are made quiet (no progress bars,
    no printed output, log messages from errors only). Returns whether it joined one (one process: nothing).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch

    from art_idfr.training import distributed as ddp

    cuda = args.device != "cpu" and torch.cuda.is_available()
    ddp.init_distributed(backend="nccl" if cuda else "gloo", timeout_s=args.dist_timeout)
    if not ddp.is_main_process():
        args.quiet, args.verbose = True, False
    return True


def _setup(args) -> None:
    from art_idfr.experiments.evaluation.pipeline import limit_threads
    from art_idfr.training.distributed import is_main_process

    limit_threads(args.threads or _default_threads())
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level if is_main_process() else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"
    if getattr(args, "device", None) in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():  # fixed 32x32 shapes: let cuDNN pick its fastest kernels (not bit-reproducible)
            torch.backends.cudnn.benchmark = True


def _config(args, **fixed: Any):
    """EvalConfig from the preset, the common options and every knob flag given on the command line (each flag's
    destination is a flat field name, see :func:`config_flags`)."""
    from art_idfr.experiments.evaluation.config import EvalConfig, flat_fields

    overrides: Dict[str, Any] = {}
    for name in flat_fields():
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    overrides.update({k: v for k, v in fixed.items() if v is not None})
    return EvalConfig.preset(args.preset, **overrides)


_ARGV: List[str] = []  # the arguments main() was called with: the exact command recorded in every report


def _command() -> str:
    return " ".join([PROG] + [shlex.quote(a) for a in _ARGV])


def _echo(args, text: str = "") -> None:
    """Print a line of the command's output (distributed: on rank 0 only)."""
    from art_idfr.training.distributed import is_main_process

    if is_main_process():
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
    if getattr(args, "weights", None) is not None:
        raise ValueError("--weights builds a target (train-target, demo); this command uses the target in "
                         f"--target {target_dir}.")
    fixed = {"dataset": meta.get("dataset"), "model": meta.get("model"), "width": meta.get("width")}
    for key in ("train_size", "test_size", "val_n", "data_root", "image_size"):
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
    if args.role == "idfr_source" and not cfg.idfr_source.model:
        raise ValueError("--role idfr_source needs --idfr-source-model.")
    if args.source_index and args.role != "idfr_source":
        raise ValueError("--source-index is only for --role idfr_source.")
    if args.role == "idfr_source" and args.source_index >= len(cfg.idfr_source.model):
        raise ValueError(f"--source-index {args.source_index} is out of range: --idfr-source-model lists "
                         f"{len(cfg.idfr_source.model)} model(s).")
    out = args.out or os.path.join("runs", args.role)
    t0 = time.perf_counter()
    data = prepare_data(cfg, verbose=not args.quiet)
    _echo(args, f"{data.dataset.describe()}; {len(data.y_train)} train / {len(data.y_val)} validation")
    model, meta = train_network(cfg, data, out, role=args.role, resume=not args.no_resume, verbose=not args.quiet,
                                source_index=args.source_index)
    start = f", from {meta['weights']['path']}" if meta.get("weights") else ""
    _echo(args, f"{args.role} {meta['model']} (width {meta['width']:g}, seed {meta['seed']}, {meta['epochs']} epochs"
                f"{start}): val {100 * meta['val_accuracy']:.2f}%, test {100 * meta['test_accuracy']:.2f}%")
    _echo(args, f"weights: {os.path.join(out, 'model.pt')}  ({time.perf_counter() - t0:.0f} s)")
    return 0


def _cmd_fit(args) -> int:
    from art_idfr.experiments.evaluation.pipeline import fit_adaptive, fit_idfr, prepare_data

    t0 = time.perf_counter()
    model, meta, cfg = _target_config(args, args.target)
    data = prepare_data(cfg, verbose=not args.quiet)
    cfg = cfg.resolved(data.input_shape[0])
    out = args.out or os.path.join("runs", "idfr")
    den, res, info = fit_idfr(cfg, data, model, out, target_meta=meta, reuse=not args.refit, verbose=not args.quiet)
    _echo(args, _idfr_summary(den, res, cfg, info))
    _echo(args, f"saved: {os.path.join(out, 'denoiser.pt')}, {os.path.join(out, 'restorer.pt')}  "
                f"({time.perf_counter() - t0:.0f} s)")
    if args.adaptive:
        _, _, ameta = fit_adaptive(cfg, data, model, den, res, os.path.join(out, "adaptive"), reuse=not args.refit,
                                   verbose=not args.quiet)
        _echo(args, _adaptive_summary(ameta))
    return 0


def _adaptive_summary(meta: Dict[str, Any]) -> str:
    hist = [h for h in meta.get("history", []) if "val_score" in h]
    best = max(hist, key=lambda h: h["val_score"]) if hist else None
    kept = (f"; best epoch {best['epoch']}: val clean {100 * best['val_acc']:.2f}%, val PGD-20 "
            f"{100 * best['val_adv_acc']:.2f}%" if best else "")
    return (f"adaptive ID (not in the paper) fitted on {meta.get('fit_n')} images in {meta.get('fit_seconds', 0):.0f} s"
            f"{kept}")


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
    return (f"IDFR fitted: ID width {cfg.id.width:g}, {cfg.id.nb_epochs} epochs, kept {chosen(den.history)}; "
            f"FR {cfg.fr.nb_epochs} epochs, kept {chosen(res.history) if res is not None else 'n/a'}{src}")


def _run_evaluation(args, cfg, data, target, target_meta, out, denoiser, restorer, surrogate=None,
                    surrogate_meta=None, fast_at=None, fast_at_meta=None, idfr_meta=None, retrain=False,
                    t_start=None, adaptive=(None, None, None)) -> int:
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
    if adaptive[0] is not None:
        info["idfr_adaptive"] = {k: v for k, v in (adaptive[2] or {}).items()
                                 if k in ("settings", "fit_n", "fit_seconds", "training")}
    _echo(args, "evaluating ...")
    result = evaluate(cfg, data, target, surrogate, denoiser, restorer, fast_at, model_info=info, command=_command(),
                      verbose=verbose, checkpoint_dir=out, adaptive_denoiser=adaptive[0],
                      adaptive_restorer=adaptive[1], reuse_cells=not args.no_cell_reuse)
    if t_start is not None:
        result.metadata["wall_seconds_total"] = time.perf_counter() - t_start
    from art_idfr.training.distributed import is_main_process

    if not is_main_process():  # distributed: rank 0 writes the one report (every rank holds the same records)
        return 0
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
    adaptive, cfg = _load_adaptive(args, cfg, res)
    surrogate = sur_meta = fast = fast_meta = None
    if args.surrogate:
        surrogate, sur_meta = load_model_dir(args.surrogate, device=cfg.device)
    if args.fast_at:
        fast, fast_meta = load_model_dir(args.fast_at, device=cfg.device)
    return _run_evaluation(args, cfg, data, target, meta, out, den, res, surrogate, sur_meta, fast, fast_meta,
                           idfr_meta, t_start=t0, adaptive=adaptive)


def _load_adaptive(args, cfg, restorer):
    """The ``idfr_adaptive`` defence's (denoiser, restorer, metadata) from ``--idfr DIR/adaptive``; without it the
    defence is dropped from the default list (an explicit ``--defences ...idfr_adaptive`` is an error)."""
    from art_idfr.experiments.evaluation.pipeline import load_adaptive_fit

    folder = os.path.join(args.idfr, "adaptive") if args.idfr else None
    if "idfr_adaptive" not in cfg.defences:
        return (None, None, None), cfg
    if folder is None or not os.path.isfile(os.path.join(folder, "denoiser.pt")):
        if getattr(args, "defences", None) is not None:
            raise ValueError("the idfr_adaptive defence needs an adaptive fit: `art-idfr fit --adaptive` writes it "
                             "into <idfr folder>/adaptive.")
        _echo(args, "no adaptive fit in the IDFR folder (art-idfr fit --adaptive): idfr_adaptive left out")
        return (None, None, None), cfg.replace(defences=tuple(d for d in cfg.defences if d != "idfr_adaptive"))
    return load_adaptive_fit(folder, restorer, device_type=cfg.device_type), cfg


def _cmd_demo(args) -> int:
    from art_idfr.experiments.evaluation.pipeline import fit_adaptive, fit_idfr, prepare_data, train_network

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
    adaptive = (None, None, None)
    if set(cfg.defences) & {"id", "idfr", "idfr_adaptive"}:
        _echo(args, "fitting IDFR (ID, then FR) ...")
        den, res, idfr_meta = fit_idfr(cfg, data, target, os.path.join(out, "idfr"), target_meta=meta,
                                       reuse=not args.retrain, verbose=verbose)
        _echo(args, _idfr_summary(den, res, cfg, idfr_meta))
    if "idfr_adaptive" in cfg.defences:
        _echo(args, "fitting the adaptive ID (not in the paper) ...")
        adaptive = fit_adaptive(cfg, data, target, den, res, os.path.join(out, "idfr", "adaptive"),
                                reuse=not args.retrain, verbose=verbose)
        _echo(args, _adaptive_summary(adaptive[2]))
    return _run_evaluation(args, cfg, data, target, meta, out, den, res, idfr_meta=idfr_meta, retrain=args.retrain,
                           t_start=t0, adaptive=adaptive)


# ----------------------------------------------------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``art-idfr`` console script; returns the exit status."""
    parser = build_parser()
    _ARGV[:] = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    distributed = _setup_distributed(args)
    _setup(args)
    sub = {a.dest: a for a in parser._subparsers._group_actions}["command"].choices[args.command]  # type: ignore
    try:
        status = int(args.func(args) or 0)
        if distributed:
            from art_idfr.training import distributed as ddp

            ddp.leave_group()
        return status
    except (ValueError, FileNotFoundError) as err:
        sub.error(str(err))  # prints usage + "art-idfr <cmd>: error: ..." and exits with status 2
    except KeyboardInterrupt:  # pragma: no cover
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
