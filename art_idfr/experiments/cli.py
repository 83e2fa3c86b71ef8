"""
``art-idfr``: command line of the IDFR experiments.

Subcommands::

    art-idfr demo                                  # the README run: MNIST-5k, every threat model and check, demo scale
    art-idfr demo --full                           # ... at the larger cpu preset (the CPU benchmarks' scale)
    art-idfr train-target --out runs/target        # train a target (or --role surrogate) with per-epoch checkpoints
    art-idfr fit --target runs/target --out runs/idfr
    art-idfr evaluate --target runs/target --idfr runs/idfr --out runs/eval

Common options: ``--preset cpu|paper|tiny|demo`` (``demo``: the default of ``demo``, else ``cpu``),
``--device auto|cpu|cuda``, ``--out DIR``, ``--seed N``, ``--dataset NAME``, ``--model NAME``; every other field of
:class:`art_idfr.experiments.evaluation.EvalConfig` has a flag generated from it (:func:`config_flags`):
``--id-learning-rate`` / ``--id-lr`` for ``cfg.id.learning_rate``, ``--fr-lr``, ``--fast-at-epochs``, ...
Invalid names and budgets are rejected by argparse (exit status 2) with the list of valid values; data-loading
problems (missing files, no ``train/``/``test/`` folders) exit with status 2 and the loader's message.

Several processes or GPUs: ``torchrun --nproc_per_node=N -m art_idfr.experiments.cli fit|evaluate|...`` (or
torchrun's ``--no-python art-idfr ...``). Each process finds torchrun's ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` and
joins the process group (:func:`_setup_distributed`: NCCL on its local GPU when the run uses CUDA, else Gloo; every
collective and barrier waits at most ``--dist-timeout`` seconds). ``fit`` trains the ID and FR (and ``--adaptive``
the adaptive ID) under DDP; ``evaluate`` shards every cell's images over the ranks; a target, surrogate or Fast AT
model that must be trained is trained by rank 0 alone while the others wait. Only rank 0 prints, shows progress
bars and writes files. Without torchrun (one process) nothing changes.

This module builds the parser and runs :func:`main` (with the process set-up: threads, logging, torchrun); the
argument types and the flags generated from the config live in :mod:`art_idfr.experiments.cli_args`, the subcommands
in :mod:`art_idfr.experiments.cli_commands` (``SECTION_TITLES``, ``config_flags`` and ``_config`` are importable from
here as before).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional, Tuple

from art_idfr.experiments.cli_args import (
    PROG,
    SECTION_TITLES,
    _add_knobs,
    _choice,
    _parse_non_negative_int,
    _parse_positive_int,
    _positive_float,
    config_flags,
)
from art_idfr.experiments.cli_commands import (  # _config: imported from here by tests and benchmarks
    _ARGV,
    _cmd_demo,
    _cmd_evaluate,
    _cmd_fit,
    _cmd_train_target,
    _config,
)

__all__ = ["main", "build_parser", "config_flags"]

#: how long `art-idfr demo` takes, as measured by benchmarks/demo_time.py (stated in --help)
DEMO_TIME = "3.4 minutes measured on 2 idle CPU cores right after the test suite"


# ----------------------------------------------------------------------------------------------------------------------
# parser
# ----------------------------------------------------------------------------------------------------------------------

def _common_parent(preset: str = "cpu") -> argparse.ArgumentParser:
    """The common options (a parent parser; ``preset``: the default of ``--preset``; argparse shares a parent's
    actions among its children, so ``demo`` gets a parent of its own)."""
    from art_idfr.experiments.data import DATASET_NAMES
    from art_idfr._names import MODEL_NAMES
    from art_idfr.experiments.choices import DEVICES
    from art_idfr.experiments.evaluation.config import PRESETS

    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("common options")
    g.add_argument("--preset", type=_choice(tuple(PRESETS), "preset"), default=preset,
                   help="scale preset: cpu (the default, but for demo; demo --full), paper (full protocol, GPU), "
                        "tiny (smoke tests), demo (the default of demo: the cpu run at a smaller scale)")
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
                   help="CPU threads for torch (NumPy/SciPy BLAS always get 1; default: on <= 4 cores, the ones idle "
                        "now (/proc/stat over 0.3 s, so a job that just ended does not count), else min(4, cores // "
                        "2); oversubscribed cores make small workloads tens of times slower)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--dist-timeout", type=_positive_float, default=1800.0, metavar="SECONDS",
                   help="under torchrun: the longest any process waits at a collective or barrier, including for "
                        "rank 0 to train a missing target / surrogate / Fast AT model (default 1800)")
    g.add_argument("--verbose", action="store_true", help="log every training epoch")
    return p


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
        epilog=f"Start with `art-idfr demo` (MNIST-5k, no download, {DEMO_TIME}).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_train_target_parser, _add_fit_parser, _add_evaluate_parser):
        add(sub, common)
    _add_demo_parser(sub, _common_parent(preset="demo"))
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
    p.add_argument("--inner", action="store_true",
                   help="also fit restorers inside the frozen target with the adaptive recipe (the opt-in idfr_inner "
                        "defence, not in the paper; --inner-* and --adaptive-* knobs) into OUT/inner_adaptive")
    _fit_knobs(p)
    p.set_defaults(func=_cmd_fit)


def _add_evaluate_parser(sub, common) -> None:
    p = sub.add_parser("evaluate", parents=[common], help="run the evaluation suite and write the reports",
                       description="Evaluate every defence on the same test images under the four threat models "
                                   "and write OUT/results.json, results.csv, results.md and accuracy_vs_eps.png. "
                                   "A missing surrogate (black-box) or Fast AT model is trained into OUT.")
    p.add_argument("--target", metavar="DIR", required=True, help="target model folder (train-target)")
    p.add_argument("--idfr", metavar="DIR", default=None,
                   help="IDFR folder (fit); needed for the id / idfr defences, its adaptive/ subfolder (fit "
                        "--adaptive) for idfr_adaptive and its inner_adaptive/ (fit --inner) for idfr_inner")
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
                                   "surrogate, fit IDFR and the adaptive ID, train Fast AT, evaluate the defences "
                                   "under black-box, gray-box, white-box and query attacks at eps 4/255, 8/255, "
                                   "16/255 and 0.3 with the sanity and gradient-masking checks, print the Markdown "
                                   "tables and write the reports into OUT (default runs/demo; runs/demo_<preset> for "
                                   "another preset). By default at the demo preset's scale, which it prints first: "
                                   f"{DEMO_TIME}. --full runs the larger cpu preset. Saved models in OUT are reused "
                                   "unless --retrain.")
    p.add_argument("--full", dest="preset", action="store_const", const="cpu",
                   help="the larger run: the cpu preset (the same as --preset cpu; the committed CPU benchmarks' "
                        "scale) instead of the demo preset, the default here (the same models, threat models, "
                        "attacks, budgets and checks on fewer images, with fewer queries and epochs and without "
                        "TotalVarMin)")
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
# process set-up
# ----------------------------------------------------------------------------------------------------------------------


#: most torch threads a run picks by itself (the small networks of the CPU presets gain little beyond)
THREAD_CAP = 4
#: seconds over which :func:`_idle_cores` samples ``/proc/stat``
IDLE_SAMPLE_S = 0.3


#: the kernel's CPU time counters (read by :func:`_cpu_times`)
PROC_STAT = "/proc/stat"


def _cpu_times(cpus) -> Optional[Tuple[float, float]]:
    """``(idle, total)`` jiffies summed over the CPUs ``cpus`` (``/proc/stat``'s ``cpuN`` lines; idle + iowait count
    as idle); ``None`` without a readable ``/proc/stat`` (not Linux)."""
    idle = total = 0.0
    try:
        with open(PROC_STAT) as f:
            for line in f:
                name, _, rest = line.partition(" ")
                if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
                    continue
                values = [float(v) for v in rest.split()[:8]]  # user nice system idle iowait irq softirq steal
                idle += values[3] + values[4]
                total += sum(values)
    except (OSError, ValueError, IndexError):
        return None
    return (idle, total) if total > 0 else None


def _idle_cores(cpus, seconds: Optional[float] = None) -> Optional[float]:
    """
    How many of the CPUs ``cpus`` are idle *now*: their idle share of ``/proc/stat`` over ``seconds`` (default
    :data:`IDLE_SAMPLE_S`; this process
    sleeps meanwhile, so only other processes count) times their number. Unlike the 1-minute load average it is not
    raised by a job that just ended (a ``pip install`` before the first ``art-idfr demo``). ``None`` where there is
    no ``/proc/stat``.
    """
    import time

    first = _cpu_times(cpus)
    if first is None:
        return None
    time.sleep(IDLE_SAMPLE_S if seconds is None else seconds)
    second = _cpu_times(cpus)
    if second is None or second[1] <= first[1]:
        return None
    return len(cpus) * (second[0] - first[0]) / (second[1] - first[1])


def _thread_choice() -> Tuple[int, str]:
    """
    torch threads when ``--threads`` is not given, and the reason in words: on up to 4 cores, the cores idle right
    now (:func:`_idle_cores`, rounded; 2 on an idle 2-core machine, 1 beside a job that keeps one core busy:
    oversubscribed cores make small workloads tens of times slower); on more cores, half of them, at most
    :data:`THREAD_CAP`. Under torchrun the processes of this machine (``LOCAL_WORLD_SIZE``) share them, and each
    takes its share of the cores without sampling (its siblings' start-up is no outside load).
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = list(range(os.cpu_count() or 1))
    cores = len(cpus)
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))  # torchrun: processes sharing this machine
    if cores > THREAD_CAP:
        n = max(1, min(THREAD_CAP, cores // 2) // local)
        return n, f"{cores} cores: half of them, at most {THREAD_CAP}" + (f", / {local} processes" if local > 1 else "")
    if local > 1:
        return max(1, cores // local), f"{cores} cores / {local} processes"
    idle = _idle_cores(cpus)
    if idle is None:  # pragma: no cover - no /proc/stat
        return cores, f"{cores} cores"
    n = max(1, min(cores, int(idle + 0.5)))
    return n, f"{cores} cores, {idle:.1f} idle now"


def _default_threads() -> int:
    """torch threads when ``--threads`` is not given (:func:`_thread_choice`)."""
    return _thread_choice()[0]


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
    from art_idfr.experiments.evaluation.pipeline import set_up_cpu
    from art_idfr.training.distributed import is_main_process

    if args.threads:
        threads, args.threads_note = args.threads, f"{args.threads} (--threads)"
    else:
        threads, why = _thread_choice()
        args.threads_note = f"{threads} ({why}; --threads N to choose)"  # printed by demo
    set_up_cpu(threads)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level if is_main_process() else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"
    if getattr(args, "device", None) in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():  # fixed 32x32 shapes: let cuDNN pick its fastest kernels (not bit-reproducible)
            torch.backends.cudnn.benchmark = True


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
