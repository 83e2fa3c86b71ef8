"""
Tune adaptive training of the ID (not in the paper) on a *validation* split — never the test split; the record
behind the adaptive section of `benchmarks/NOTES.md`.

    python benchmarks/tune_adaptive.py --name base                           # PGD-5 at 16/255, 2 epochs
    python benchmarks/tune_adaptive.py --name trades trades_beta=6 eps=16/255 nb_epochs=3 fit_n=8000

Setting (Fashion-MNIST, as `fashion_mnist_cpu`): the small-CNN target and the surrogate of `tune_id.py` (cached in
runs/tune_fashion_mnist_idx/), an ID fitted by Algorithm 1 with the benchmark's settings (FGSM+BIM at 4, 8, 32/255
on 4,000 images, width 0.5, identity weight 10, 4 epochs; cached), then fine-tuned by `AdaptiveDenoiserTrainer`
with `key=value` overrides of its arguments (plus `fit_n`, `fixed`, and `fr`: `none` (default), `frozen` (an
Algorithm-2 FR fitted as the benchmark's, 10 epochs on the same 4,000 images; cached) or `joint` (that FR trained
alongside the ID); `eps` accepts `a/b`; `init=NAME` starts from the ID (and joint FR) an earlier run NAME saved
instead of the Algorithm-1 ID: a further one-cycle pass, a warm restart; `id_width=W` starts from an Algorithm-1 ID
of width W instead of 0.5, fitted and cached with its FR as the benchmark's; `inner=lora:R` / `inner=adapter:W` adds
restorers inside the frozen target (art_idfr.InnerRestorer, rank R / width W, default places; a `+bn` suffix, e.g.
`inner=lora:8+bn`, adds its `norm_affine` deltas on every BatchNorm; `inner=lora:8,NAME=16,...` sets per-layer
ranks) trained along, and `id=none` leaves the ID out, `id=frozen` keeps it fixed (issue 41)). Best epoch on
validation images 0-299 (20-step PGD through the defence); measured on validation images 1000-1499: clean accuracy,
white-box AutoAttack (ART's APGD-CE + APGD-DLR, 50 iterations, 1 restart; Square 1,000 queries) at 8/255 and 16/255
through the whole defended classifier, and black-box FGSM/BIM from the surrogate. Undefended, the Algorithm-1 ID and Fast AT
(ART FBF, 2 epochs at 16/255 as in the benchmark; cached) are measured on the same images once. One JSON line per
call goes to benchmarks/results/tune_adaptive/tune.jsonl with the command line; the fitted models are kept in
runs/tune_fashion_mnist_idx/adaptive/NAME/, so that `--reuse` measures them again (e.g. with Square) without refitting.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import shlex
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from art_idfr import FeatureRestorer, IDFRDenoiser, defend  # noqa: E402
from art_idfr.experiments.attacks import make_attack  # noqa: E402
from art_idfr.experiments.data import stratified_subset_indices  # noqa: E402
from art_idfr.experiments.evaluation.config import EvalConfig, parse_eps  # noqa: E402
from art_idfr.experiments.evaluation.defences import wrap_model  # noqa: E402
from art_idfr.experiments.evaluation.pipeline import (  # noqa: E402
    load_adaptive_fit, prepare_data, set_up_cpu, train_fast_at, train_network)
from art_idfr.training.adaptive import AdaptiveDenoiserTrainer  # noqa: E402
from tune_id import _cached  # noqa: E402  (the same AE cache files as tune_id.py)

RUN_DIR = os.path.join(ROOT, "runs", "tune_fashion_mnist_idx")
OUT_DIR = os.path.join(HERE, "results", "tune_adaptive")
A1_EPS = (4 / 255, 8 / 255, 32 / 255)
WB_EPS = (8 / 255, 16 / 255)
BB = [("fgsm", 8 / 255), ("fgsm", 16 / 255), ("bim", 8 / 255), ("bim", 16 / 255)]


def _value(v: str):
    if "/" in v:
        return parse_eps(v)
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def autoattack(classifier, x, y, eps, seed=0, square_iter=1000):
    """ART AutoAttack with APGD-CE, APGD-DLR (50 iterations, 1 restart) and Square (``square_iter`` queries; 0: none)."""
    from art.attacks.evasion import AutoAttack, AutoProjectedGradientDescent, SquareAttack

    np.random.seed(seed)
    torch.manual_seed(seed)
    kw = dict(norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=50, nb_random_init=1, batch_size=500, verbose=False)
    attacks = [AutoProjectedGradientDescent(classifier, loss_type="cross_entropy", **kw),
               AutoProjectedGradientDescent(classifier, loss_type="difference_logits_ratio", **kw)]
    if square_iter:
        attacks.append(SquareAttack(classifier, norm=np.inf, eps=eps, max_iter=square_iter, nb_restarts=1,
                                    batch_size=500, verbose=False))
    aa = AutoAttack(classifier, norm=np.inf, eps=eps, attacks=attacks, batch_size=500)
    x_adv = aa.generate(x, y=np.eye(classifier.nb_classes, dtype=np.float32)[y])
    return float((classifier.predict(x_adv).argmax(1) == y).mean() * 100)


def measure(classifiers, x, y, bb_aes, square_iter=1000):
    out = {}
    for name, clf in classifiers.items():
        row = {"clean": float((clf.predict(x).argmax(1) == y).mean() * 100)}
        row |= {f"bb {k}": float((clf.predict(v).argmax(1) == y).mean() * 100) for k, v in bb_aes.items()}
        aa = "AA" if square_iter else "APGD-CE+DLR"
        row |= {f"{aa} {round(e * 255)}/255": autoattack(clf, x, y, e, square_iter=square_iter) for e in WB_EPS}
        out[name] = row
        print(name, json.dumps(row), flush=True)
    return out


def setup(threads):
    cfg = EvalConfig.preset("cpu", dataset="fashion_mnist_idx", val_n=3000, model="small_cnn", width=1.0,
                            target_epochs=4, surrogate_model="small_cnn", surrogate_width=0.5, surrogate_epochs=3,
                            seed=0, device="cpu", fast_at_epochs=2, fast_at_eps=16 / 255)
    data = prepare_data(cfg, verbose=False)
    target_model, _ = train_network(cfg, data, os.path.join(RUN_DIR, "target"), role="target", verbose=False)
    sur_model, _ = train_network(cfg, data, os.path.join(RUN_DIR, "surrogate"), role="surrogate", verbose=False)
    return cfg, data, target_model, sur_model


def a1_attacks(target):
    """Algorithm 1's training attacks of the benchmark: FGSM and BIM on the bare target at each of A1_EPS."""
    return [make_attack(n, target, e, seed=0) for e in A1_EPS for n in ("fgsm", "bim")]


def _width_suffix(id_width: float) -> str:
    """The cache-file suffix of an Algorithm-1 ID (and its FR) of a width other than the benchmark's 0.5."""
    return "" if id_width == 0.5 else f"_idw{id_width:g}"


def algorithm1_id(target, data, fit_idx, id_width=0.5):
    """The benchmark's Algorithm-1 ID (``id_width`` wide; the benchmark's is 0.5); cached."""
    path = os.path.join(RUN_DIR, f"adaptive_a1_id{_width_suffix(id_width)}.pt")
    if os.path.exists(path):
        return IDFRDenoiser.load(path, device_type="cpu")
    x_fit, y_fit = data.x_train[fit_idx], data.y_train[fit_idx]
    attacks = a1_attacks(target)
    den = IDFRDenoiser(input_shape=data.input_shape, width=id_width, identity_weight=10, gaussian_sigma=0.1,
                       learning_rate=2e-3, nb_epochs=4, device_type="cpu", seed=0)
    den.fit(x_fit, y_fit, classifier=target, attacks=attacks,
            validation_data=(data.x_val[:1000], data.y_val[:1000]))
    den.save(path)
    return den


def algorithm2_fr(target, den, data, fit_idx, widths=None, id_width=0.5):
    """
    The benchmark's FR (Algorithm 2, 10 epochs, FGSM+BIM AEs at A1_EPS) on the Algorithm-1 ID; cached. ``widths``:
    the FR's three hidden widths (default: the paper's Table 7 bottleneck).
    """
    suffix = ("" if widths is None else "_w" + "-".join(map(str, widths))) + _width_suffix(id_width)
    path = os.path.join(RUN_DIR, f"adaptive_a2_fr{suffix}.pt")
    if os.path.exists(path):
        return FeatureRestorer.load(path, device_type="cpu")
    attacks = a1_attacks(target)
    fr = FeatureRestorer(widths=widths, nb_epochs=10, device_type="cpu", seed=0)
    fr.fit(data.x_train[fit_idx], data.y_train[fit_idx], classifier=target, denoiser=den, attacks=attacks,
           validation_data=(data.x_val[:1000], data.y_val[:1000]))
    fr.save(path)
    return fr


def fit_adaptive(name, settings, over, target, den_start, fr, data):
    """
    Fine-tune a copy of ``den_start`` (the Algorithm-1 ID, or with ``init=`` an earlier fit's) adaptively (with
    ``fr=joint`` a copy of the FR alongside); the models and the fit's record are saved under
    runs/tune_fashion_mnist_idx/adaptive/NAME/ for ``--reuse``. A fit cut off resumes from NAME/resume.pt when the
    same command runs again.
    """
    idx = stratified_subset_indices(data.y_train, settings["fit_n"], seed=1)
    id_mode = settings.get("id", "train")
    den, joint = (None if id_mode == "none" else copy.deepcopy(den_start)), settings["fr"] == "joint"
    fr = copy.deepcopy(fr) if joint else fr
    inner = inner_restorer(settings.get("inner"), target, data)
    trainer = AdaptiveDenoiserTrainer(target, den, restorer=fr, train_restorer=joint, verbose=sys.stderr.isatty(),
                                      inner=inner, train_denoiser=id_mode == "train", **over)
    fixed = a1_attacks(target) if settings["fixed"] else []
    out = os.path.join(RUN_DIR, "adaptive", name)
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    trainer.fit(data.x_train[idx], data.y_train[idx], attacks=fixed,
                validation_data=(data.x_val[:300], data.y_val[:300]), checkpoint=os.path.join(out, "resume.pt"))
    record = {"history": trainer.history, "fit_seconds": round(time.perf_counter() - t0 + trainer.resumed_seconds, 1)}
    if inner is not None:  # measured in this call only (--reuse refits)
        inner.save(os.path.join(out, "inner.pt"))
        record["inner"] = {"parameters": inner.num_parameters(), "macs": inner.macs(), "layers": inner.layer_sizes(),
                           "target_parameters": sum(p.numel() for p in target.model.parameters())}
        return den, fr, record, inner
    den.save(os.path.join(out, "denoiser.pt"))
    fr_file = os.path.join(out, "restorer.pt")  # only a joint fit's FR (load_adaptive_fit reads it when present)
    if joint:
        fr.save(fr_file)
    elif os.path.exists(fr_file):
        os.remove(fr_file)
    with open(os.path.join(out, "fit.json"), "w") as f:
        json.dump({"settings": settings, **record}, f, default=str)
    return den, fr, record, None


def inner_restorer(spec, target, data):
    """``inner=lora:R`` / ``adapter:W`` (``+bn``: ``norm_affine``; ``lora:R,NAME=R2,...``: per-layer ranks, module
    names of the target's model) → an InnerRestorer built on the target's model; None without ``inner``."""
    if spec is None:
        return None
    from art_idfr import InnerRestorer
    from art_idfr.experiments.evaluation.knobs import parse_inner_ranks

    spec, norm_affine = str(spec).removesuffix("+bn"), str(spec).endswith("+bn")
    spec, _, ranks = spec.partition(",")
    kind, _, size = spec.partition(":")
    sizes = ({"rank": int(size or 4), "ranks": parse_inner_ranks(ranks)} if kind == "lora"
             else {"width": float(size or 0.25)})
    return InnerRestorer(data.input_shape, kind=kind, norm_affine=norm_affine, device_type="cpu",
                         **sizes).build(target.model)


def saved_fit(name):
    """The record (``fit.json``) ``fit_adaptive`` saved under NAME, or None."""
    try:
        with open(os.path.join(RUN_DIR, "adaptive", name, "fit.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def warm_start(name, fr, fr_mode):
    """``(ID, FR)`` that run NAME saved, to continue from (``init=NAME``); None if absent or its FR mode differs."""
    saved = saved_fit(name)
    if saved is None or saved["settings"].get("fr", "none") != fr_mode:
        return None
    den, fr, _ = load_adaptive_fit(os.path.join(RUN_DIR, "adaptive", name), fr, device_type="cpu")
    return den, fr


def load_adaptive(name, settings, fr):
    """The models ``fit_adaptive`` saved under NAME, if fitted with the same settings (else None: fit again)."""
    out = os.path.join(RUN_DIR, "adaptive", name)
    saved = saved_fit(name)
    if saved is None:
        return None
    if saved.pop("settings") != json.loads(json.dumps(settings, default=str)):
        print(f"--reuse: {out} was fitted with other settings; fitting again", file=sys.stderr)
        return None
    den, fr, _ = load_adaptive_fit(out, fr, device_type="cpu")
    return den, fr, {**saved, "reused": True}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--baselines", action="store_true", help="(re)measure undefended / Algorithm-1 ID / Fast AT")
    p.add_argument("--square-iter", type=int, default=1000,
                   help="Square queries inside AutoAttack (1000; 0 = APGD-CE + APGD-DLR only, a cheaper screen)")
    p.add_argument("--reuse", action="store_true",
                   help="measure the models an earlier run of this --name saved, if fitted with the same settings")
    p.add_argument("overrides", nargs="*",
                   help="key=value: AdaptiveDenoiserTrainer arguments, fit_n, fixed, fr, fr_widths, id_width, init")
    a = p.parse_args()
    set_up_cpu(a.threads)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logging.getLogger("art_idfr").setLevel(logging.INFO)  # one line per adaptive epoch, not ART's chatter
    over = {k: _value(v) for k, v in (kv.split("=", 1) for kv in a.overrides)}
    fit_n, use_fixed = int(over.pop("fit_n", 6000)), bool(over.pop("fixed", True))
    fr_mode, fr_widths = over.pop("fr", "none"), over.pop("fr_widths", None)
    init, id_width = over.pop("init", None), float(over.pop("id_width", 0.5))
    inner_spec, id_mode = over.pop("inner", None), over.pop("id", "train")
    if id_mode not in ("train", "frozen", "none"):
        p.error(f"id must be train, frozen or none, got {id_mode!r}")
    if not 0 < id_width <= 4:
        p.error(f"id_width must lie in (0, 4], got {id_width}")
    if fr_mode not in ("none", "frozen", "joint"):
        p.error(f"fr must be none, frozen or joint, got {fr_mode!r}")
    if fr_widths is not None:
        fr_widths = _fr_widths(str(fr_widths), fr_mode) or p.error(
            "fr_widths takes three positive widths a:b:c (e.g. 256:256:256) and an FR (fr=frozen or joint)")
    os.makedirs(RUN_DIR, exist_ok=True)
    os.makedirs(OUT_DIR, exist_ok=True)
    cfg, data, target_model, sur_model = setup(a.threads)
    target = wrap_model(target_model, data.input_shape, data.num_classes, "cpu")
    surrogate = wrap_model(sur_model, data.input_shape, data.num_classes, "cpu")
    a1_idx = stratified_subset_indices(data.y_train, 4000, seed=0)
    needs_a1 = a.baselines or id_mode != "none" or fr_mode != "none"  # inner restorers alone: no Algorithm-1 ID
    den_a1 = algorithm1_id(target, data, a1_idx, id_width) if needs_a1 else None
    x_m, y_m = data.x_val[1000:1500], data.y_val[1000:1500]
    onehot = np.eye(data.num_classes, dtype=np.float32)
    bb = {f"{n} {round(e * 255)}/255": _cached(os.path.join(RUN_DIR, f"adaptive_bb_{n}_{e:.4f}.npz"),
                                               lambda: make_attack(n, surrogate, e, seed=0).generate(x_m, onehot[y_m]))
          for n, e in BB}
    if a.baselines:
        fast_model, _ = train_fast_at(cfg, data, os.path.join(RUN_DIR, "fast_at"), verbose=False)
        fast = wrap_model(fast_model, data.input_shape, data.num_classes, "cpu")
        base = measure({"undefended": target, "ID (Algorithm 1)": defend(target, den_a1), "Fast AT": fast},
                       x_m, y_m, bb, a.square_iter)
        _append({"name": "baselines", "val_n": len(y_m), **base}, a)
        return 0
    over.setdefault("eps", 16 / 255)
    settings = {**over, "fit_n": fit_n, "fixed": use_fixed, "fr": fr_mode}
    if fr_widths is not None:
        settings["fr_widths"] = list(fr_widths)
    if id_width != 0.5:
        settings["id_width"] = id_width
    if inner_spec is not None or id_mode != "train":
        settings |= {"inner": inner_spec, "id": id_mode}
    fr = None if fr_mode == "none" else algorithm2_fr(target, den_a1, data, a1_idx, fr_widths, id_width)
    den_start = den_a1
    if init is not None:
        settings["init"] = str(init)
        den_start, fr = warm_start(str(init), fr, fr_mode) or p.error(
            f"init={init}: no earlier fit of that name with fr={fr_mode} in {os.path.join(RUN_DIR, 'adaptive')}")
    fitted = load_adaptive(a.name, settings, fr) if a.reuse and inner_spec is None else None
    den, fr, record, inner = (*fitted, None) if fitted else fit_adaptive(a.name, settings, over, target, den_start,
                                                                         fr, data)
    res = measure({"adaptive ID": defend(target, den, fr, inner)}, x_m, y_m, bb, a.square_iter)  # through FR, inner
    _append({"name": a.name, "settings": settings, "val_n": len(y_m), **res, **record,
             "training": (den if den is not None else inner).training_info}, a)
    return 0


def _fr_widths(value: str, fr_mode: str):
    """``fr_widths=a:b:c`` as three positive ints, or None when malformed or there is no FR (``fr=none``)."""
    parts = value.split(":")
    if fr_mode == "none" or len(parts) != 3 or not all(w.isdigit() and int(w) > 0 for w in parts):
        return None
    return tuple(int(w) for w in parts)


def _append(row, a):
    row |= {"dataset": "fashion_mnist_idx", "seed": 0, "torch": torch.__version__,
            "device": f"cpu, {a.threads} thread(s), {os.cpu_count()} cores, {platform.machine()}",
            "command": "python " + " ".join(shlex.quote(s) for s in [os.path.relpath(sys.argv[0], ROOT),
                                                                     *sys.argv[1:]])}
    with open(os.path.join(OUT_DIR, "tune.jsonl"), "a") as f:
        f.write(json.dumps(row, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main())
