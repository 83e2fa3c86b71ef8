"""
The subcommands of ``art-idfr`` (``train-target``, ``fit``, ``evaluate``, ``demo``: the ``_cmd_*`` functions the
parser dispatches to) and what they share: the config built from the parsed arguments (:func:`_config`, and
:func:`_target_config` for a saved target), the command line recorded in every report, the printed summaries, and
the evaluation run common to ``evaluate`` and ``demo``. torch, ART and the pipeline are imported inside the functions,
so importing this module (and ``--help``) stays light.
"""
from __future__ import annotations

import os
import shlex
import time
from typing import Any, Dict, List, Optional

from art_idfr.experiments.cli_args import PROG


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
    if getattr(args, "inner", False):
        from art_idfr.experiments.evaluation.pipeline import INNER_DIR, fit_inner_adaptive

        imeta = fit_inner_adaptive(cfg, data, model, den, res, os.path.join(out, INNER_DIR), reuse=not args.refit,
                                   verbose=not args.quiet)[3]
        _echo(args, _inner_summary(imeta))
    return 0


def _adaptive_summary(meta: Dict[str, Any]) -> str:
    return (f"adaptive ID (not in the paper) fitted on {meta.get('fit_n')} images in {meta.get('fit_seconds', 0):.0f} s"
            f"{_best_epoch(meta)}")


def _best_epoch(meta: Dict[str, Any]) -> str:
    """``; best epoch ...`` of an adaptive fit's record (empty without validation scores)."""
    start_competes = (meta.get("training") or {}).get("keep_start", True)  # --no-adaptive-keep-start: it does not
    hist = [h for h in meta.get("history", []) if "val_score" in h and (h.get("epoch") or start_competes)]
    best = max(hist, key=lambda h: h["val_score"]) if hist else None
    return (f"; best epoch {best['epoch']}: val clean {100 * best['val_acc']:.2f}%, val PGD-20 "
            f"{100 * best['val_adv_acc']:.2f}%" if best else "")


def _inner_summary(meta: Dict[str, Any]) -> str:
    """The ``idfr_inner`` fit in a line: the restorers inside the target, their size, and the adaptive fit."""
    size = meta.get("inner") or {}
    what = f"rank {size.get('rank')}" if size.get("kind") == "lora" else f"width {size.get('width')}"
    if size.get("ranks"):
        what += ", " + ", ".join(f"{name} {rank}" for name, rank in size["ranks"].items())
    share = size.get("fraction_of_target") or 0.0
    parts = "inner alone" if (meta.get("settings") or {}).get("start", "") is None else "ID+FR+inner"
    return (f"{parts} (not in the paper): inner restorers {size.get('kind')} ({what}) at {size.get('layers')} "
            f"places, {size.get('parameters', 0):,} parameters ({100 * share:.2f}% of the target's), "
            f"{size.get('macs', 0):,} MACs per image; fitted on {meta.get('fit_n')} images in "
            f"{meta.get('fit_seconds', 0):.0f} s{_best_epoch(meta)}")


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
                    t_start=None, adaptive=(None, None, None), inner=(None, None, None, None)) -> int:
    from art_idfr.experiments.evaluation.pipeline import train_baselines, train_fast_at, train_network
    from art_idfr.experiments.evaluation.suite import evaluate

    verbose = not args.quiet
    if "black-box" in cfg.threat_models and surrogate is None:
        _echo(args, "training the black-box surrogate ...")
        t = time.perf_counter()
        surrogate, surrogate_meta = train_network(cfg, data, os.path.join(out, "surrogate"), role="surrogate",
                                                  resume=not retrain, verbose=verbose)
        _echo(args, f"surrogate: test accuracy {100 * surrogate_meta['test_accuracy']:.2f}%{_took(t)}")
    if "fast_at" in cfg.defences and fast_at is None:
        _echo(args, "training Fast AT (ART AdversarialTrainerFBFPyTorch) ...")
        t = time.perf_counter()
        fast_at, fast_at_meta = train_fast_at(cfg, data, os.path.join(out, "fast_at"), reuse=not retrain,
                                              verbose=verbose)
        acc = fast_at_meta.get("test_accuracy")
        _echo(args, f"Fast AT: test accuracy {100 * acc:.2f}%{_took(t)}" if acc is not None else f"Fast AT{_took(t)}")
    baselines = train_baselines(cfg, data, target, os.path.join(out, "baselines"), reuse=not retrain,
                                verbose=verbose)  # the opt-in comdefend / nrp / adp / soap named in cfg.defences
    info = {"target": _brief(target_meta), "surrogate": _brief(surrogate_meta), "fast_at": _brief(fast_at_meta),
            "idfr": {k: v for k, v in (idfr_meta or {}).items() if k in ("settings", "fit_n", "fit_seconds")}}
    if baselines:
        info["baselines"] = {k: {f: m.get(f) for f in ("settings", "fit_n", "fit_seconds", "inference_passes")}
                             | _restored_epoch(m) | {"weights": _weights(d)} for k, (d, m) in baselines.items()}
    if adaptive[0] is not None:
        info["idfr_adaptive"] = {k: v for k, v in (adaptive[2] or {}).items()
                                 if k in ("settings", "fit_n", "fit_seconds", "training")}
    if inner[2] is not None:
        info["idfr_inner"] = {k: v for k, v in (inner[3] or {}).items()
                              if k in ("settings", "fit_n", "fit_seconds", "training", "inner")}
    _echo(args, "evaluating ...")
    result = evaluate(cfg, data, target, surrogate, denoiser, restorer, fast_at, model_info=info, command=_command(),
                      verbose=verbose, checkpoint_dir=out, adaptive_denoiser=adaptive[0],
                      adaptive_restorer=adaptive[1], reuse_cells=not args.no_cell_reuse,
                      baselines={k: d for k, (d, _) in baselines.items()}, inner_denoiser=inner[0],
                      inner_restorer=inner[1], inner=inner[2])
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


def _weights(defence) -> str:
    """The first 16 hex digits of a fitted baseline's weights' digest (what a later check names the fit by)."""
    from art_idfr.experiments.evaluation.resume import weights_digest

    return weights_digest(defence)[:16]


def _restored_epoch(meta: dict) -> dict:
    """``{"restored_epoch": N}`` when a baseline's fit diverged and ended with epoch N's weights, else ``{}``."""
    epoch = (meta.get("training") or {}).get("restored_epoch")
    return {} if epoch is None else {"restored_epoch": epoch}


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
    elif set(cfg.defences) & {"id", "idfr", "idfr_inner"}:
        raise ValueError("the id / idfr / idfr_inner defences need --idfr DIR (from `art-idfr fit`), or leave them out "
                         "with --defences.")
    adaptive, cfg = _load_adaptive(args, cfg, res)
    inner = _load_inner(args, cfg, target, res)
    surrogate = sur_meta = fast = fast_meta = None
    if args.surrogate:
        surrogate, sur_meta = load_model_dir(args.surrogate, device=cfg.device)
    if args.fast_at:
        fast, fast_meta = load_model_dir(args.fast_at, device=cfg.device)
    return _run_evaluation(args, cfg, data, target, meta, out, den, res, surrogate, sur_meta, fast, fast_meta,
                           idfr_meta, t_start=t0, adaptive=adaptive, inner=inner)


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


def _load_inner(args, cfg, target, restorer):
    """The opt-in ``idfr_inner`` defence's (denoiser, restorer, inner restorers, metadata) from ``--idfr
    DIR/inner_adaptive`` when asked for (it is never in a default list, so a missing fit is an error)."""
    from art_idfr.experiments.evaluation.pipeline import INNER_DIR, INNER_FILE, load_inner_adaptive_fit

    if "idfr_inner" not in cfg.defences:
        return None, None, None, None
    folder = os.path.join(args.idfr, INNER_DIR)
    if not os.path.isfile(os.path.join(folder, INNER_FILE)):
        raise ValueError(f"the idfr_inner defence needs a fit of the restorers inside the target in "
                         f"<idfr folder>/{INNER_DIR} ({folder} has none): `art-idfr fit --inner` writes it, as does "
                         "`art-idfr demo` with idfr_inner in --defences.")
    return load_inner_adaptive_fit(folder, target, restorer, device_type=cfg.device_type)


def _took(t0: float) -> str:
    return f"  ({time.perf_counter() - t0:.0f} s)"


def _scale(cfg) -> str:
    """The scale knobs of a run in words (images, queries, epochs)."""
    return (f"n = {cfg.eval_n} evaluation images ({cfg.whitebox_n} white-box, {cfg.query_n} query: Square "
            f"{cfg.query_iter} queries), masking checks with Square {cfg.sanity_square_iter:,} queries; epochs: target "
            f"{cfg.target.epochs}, surrogate {cfg.surrogate.epochs}, ID {cfg.id.nb_epochs} and FR {cfg.fr.nb_epochs} "
            f"on {cfg.fit_n or 'all'} images, adaptive ID {cfg.adaptive.nb_epochs} on "
            f"{cfg.adaptive_fit_n or cfg.fit_n or 'all'}, Fast AT {cfg.fast_at.nb_epochs}")


def _scale_line(cfg) -> str:
    """The demo's statement of its scale; at the demo preset, with what ``--full`` (the cpu preset) runs instead."""
    from art_idfr.experiments.evaluation.config import EvalConfig

    line = f"scale (preset {cfg.preset_name}): {_scale(cfg)}"
    if cfg.preset_name == "demo":
        full = EvalConfig.preset("cpu")
        left_out = [d for d in full.defences if d not in cfg.defences]
        if left_out:
            from art_idfr.experiments.evaluation.defences import defence_label

            line += ("; left out: " + ", ".join(defence_label(d, cfg) for d in left_out)
                     + " (per-image SciPy solves under white-box BPDA + EOT: minutes on their own)")
        line += f"\n`art-idfr demo --full` runs the larger cpu preset: {_scale(full)}, every defence"
    return line


def _cmd_demo(args) -> int:
    from art_idfr.experiments.evaluation.pipeline import fit_adaptive, fit_idfr, prepare_data, train_network

    t0 = time.perf_counter()
    cfg = _config(args)
    # another preset trains other models (e.g. on another train / validation split): its own folder, so that the
    # checkpoints of one never meet the settings of the other
    out = args.out or os.path.join("runs", "demo" if cfg.preset_name == "demo" else f"demo_{cfg.preset_name}")
    verbose = not args.quiet
    data = prepare_data(cfg, verbose=verbose)
    cfg = cfg.resolved(data.input_shape[0])
    _echo(args, f"art-idfr demo: {data.dataset.describe()}; preset {cfg.preset_name}; out {out}; torch threads "
                f"{getattr(args, 'threads_note', args.threads)}")
    _echo(args, _scale_line(cfg))
    _echo(args, "training the target ...")
    t = time.perf_counter()
    target, meta = train_network(cfg, data, os.path.join(out, "target"), resume=not args.retrain, verbose=verbose)
    _echo(args, f"target {meta['model']} (width {meta['width']:g}): test accuracy {100 * meta['test_accuracy']:.2f}%"
                f"{_took(t)}")
    den = res = idfr_meta = None
    adaptive, inner = (None, None, None), (None, None, None, None)
    needs_idfr = {"id", "idfr", "idfr_adaptive"} | (set() if cfg.inner.alone else {"idfr_inner"})
    if set(cfg.defences) & needs_idfr:  # (the inner restorers alone need no Algorithm-1 ID)
        _echo(args, "fitting IDFR (ID, then FR) ...")
        t = time.perf_counter()
        den, res, idfr_meta = fit_idfr(cfg, data, target, os.path.join(out, "idfr"), target_meta=meta,
                                       reuse=not args.retrain, verbose=verbose)
        _echo(args, _idfr_summary(den, res, cfg, idfr_meta) + _took(t))
    if "idfr_adaptive" in cfg.defences:
        _echo(args, "fitting the adaptive ID (not in the paper) ...")
        t = time.perf_counter()
        adaptive = fit_adaptive(cfg, data, target, den, res, os.path.join(out, "idfr", "adaptive"),
                                reuse=not args.retrain, verbose=verbose)
        _echo(args, _adaptive_summary(adaptive[2]) + _took(t))
    if "idfr_inner" in cfg.defences:
        from art_idfr.experiments.evaluation.pipeline import INNER_DIR, fit_inner_adaptive

        _echo(args, "fitting restorers inside the target" + ("" if cfg.inner.alone else " with the adaptive ID+FR")
              + " (idfr_inner, not in the paper) ...")
        t = time.perf_counter()
        inner = fit_inner_adaptive(cfg, data, target, den, res, os.path.join(out, "idfr", INNER_DIR),
                                   reuse=not args.retrain, verbose=verbose)
        _echo(args, _inner_summary(inner[3]) + _took(t))
    return _run_evaluation(args, cfg, data, target, meta, out, den, res, idfr_meta=idfr_meta, retrain=args.retrain,
                           t_start=t0, adaptive=adaptive, inner=inner)
