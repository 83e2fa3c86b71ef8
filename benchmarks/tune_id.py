"""
Tune the ID on a *validation* split (never the test split) — the record behind `benchmarks/NOTES.md`.

    python benchmarks/tune_id.py --dataset fashion_mnist_idx --name base
    python benchmarks/tune_id.py --dataset fashion_mnist_idx --name cw3 clean_weight=3
    python benchmarks/tune_id.py --dataset fashion_mnist_idx --name id10 identity_weight=10 fit_n=8000
    python benchmarks/tune_id.py --dataset fashion_mnist_idx --name id10_s1 identity_weight=10 seed=1  # ID seed only
    python benchmarks/tune_id.py --dataset cifar10_jpeg --model resnet18_cifar --width 0.25 \
        --surrogate-width 1.0 --idfr-eps 4/255,8/255,16/255 --threads 2 --name base identity_weight=10 fit_n=3000

The first call trains the target (by default a small CNN of width 1, 4 epochs; `--model`, `--width`,
`--target-epochs`) and an independent surrogate (by default a small CNN of width 0.5, 3 epochs, other seed;
`--surrogate-*`) on the training split minus 3,000 validation images, and crafts the training AEs (ART FGSM + BIM on
the target, and on the `--idfr-source-*` model if given, at --idfr-eps) and the validation AEs (FGSM/CW/BIM
transferred from the surrogate, black-box); all of it is cached in runs/tune_<dataset>[_<models>]/ and reused. Each call then fits one ID variant (`key=value` overrides of
IDFRDenoiser arguments, plus `fit_n` and `epochs`; `seed=` reseeds the ID alone, models and AEs stay), choosing its best epoch on validation images 0-999 (mean of
clean accuracy and accuracy on their AEs from the training attacks, as `IDFRDenoiser.fit` does), and
measures it on validation images 1000-2999: clean accuracy through the ID and black-box accuracy per attack.
One JSON line per call is appended to benchmarks/results/tune_<dataset>/tune.jsonl (with the command line).
"""
from __future__ import annotations

import argparse
import json
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

from art_idfr import IDFRDenoiser  # noqa: E402
from art_idfr.experiments.attacks import make_attack  # noqa: E402
from art_idfr.experiments.data import stratified_subset_indices  # noqa: E402
from art_idfr.experiments.evaluation.config import EvalConfig, parse_eps  # noqa: E402
from art_idfr.experiments.evaluation.defences import wrap_model  # noqa: E402
from art_idfr.experiments.evaluation.pipeline import _source_settings, prepare_data, set_up_cpu, train_network  # noqa: E402

VAL_ATTACKS = [("fgsm", 4 / 255), ("fgsm", 16 / 255), ("cw", 4 / 255), ("cw", 8 / 255), ("bim", 4 / 255),
               ("bim", 16 / 255)]


def _parse_value(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def _cached(path, make):
    if os.path.exists(path):
        with np.load(path) as f:
            return f["x"]
    x = make()
    np.savez_compressed(path, x=x)
    return x


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion_mnist_idx")
    p.add_argument("--name", required=True)
    p.add_argument("--idfr-eps", default="8/255,32/255")
    p.add_argument("--idfr-attacks", default="fgsm,bim")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="small_cnn", help="target architecture (art_idfr.experiments.models name)")
    p.add_argument("--width", type=float, default=1.0, help="target width multiplier")
    p.add_argument("--target-epochs", type=int, default=4)
    p.add_argument("--surrogate-model", default="small_cnn")
    p.add_argument("--surrogate-width", type=float, default=0.5)
    p.add_argument("--surrogate-epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch/BLAS threads (1 when sharing the machine)")
    p.add_argument("--idfr-source-model", default=None,
                   help="also craft the training AEs on these extra models, comma-separated (seeds + 3000, + 4000, "
                        "...; never the surrogate)")
    p.add_argument("--idfr-source-width", default=None, help="width(s) of the extra models, comma-separated")
    p.add_argument("--idfr-source-epochs", type=int, default=3)
    p.add_argument("--diagnose-test", type=int, default=0, metavar="N",
                   help="also measure on N test images (a diagnostic of the validation/test gap, recorded apart as "
                        "'test_diagnostic' and never used to choose settings)")
    p.add_argument("overrides", nargs="*", help="key=value: IDFRDenoiser arguments, fit_n, epochs")
    a = p.parse_args()
    a.overrides = {k: _parse_value(v) for k, v in (kv.split("=", 1) for kv in a.overrides)}
    try:  # EvalConfig parses and checks the source lists (one width for all or one per model, seeds never the
        # surrogate's) and _source_settings gives each source's model, width, epochs and seed, as in the benchmarks
        a.idfr_eps_values = [parse_eps(e) for e in a.idfr_eps.split(",")]
        cfg = EvalConfig.preset("cpu", dataset=a.dataset, val_n=3000, model=a.model, width=a.width,
                                target_epochs=a.target_epochs, surrogate_model=a.surrogate_model,
                                surrogate_width=a.surrogate_width, surrogate_epochs=a.surrogate_epochs, seed=a.seed,
                                idfr_source_model=a.idfr_source_model, idfr_source_width=a.idfr_source_width,
                                idfr_source_epochs=a.idfr_source_epochs, device="cpu")
    except ValueError as err:
        p.error(str(err))
    return a, cfg


def run_dir_of(a) -> str:
    """runs/tune_<dataset>[_<models>]/: the cached models and AEs of these target / surrogate settings."""
    models = (a.model, a.width, a.target_epochs, a.surrogate_model, a.surrogate_width, a.surrogate_epochs)
    cache = "" if models == ("small_cnn", 1.0, 4, "small_cnn", 0.5, 3) else "_" + "_".join(map(str, models))
    return os.path.join(ROOT, "runs", f"tune_{a.dataset}{cache}")


def ae_sources(cfg, data, run_dir, target):
    """``({cache tag: classifier}, description)``: the target, plus the optional extra models of the training AEs."""
    sources, desc = {"": target}, []
    for i, s in enumerate(_source_settings(cfg)):
        offset = s["seed"] - cfg.seed  # the first source keeps the cache names of the single-source runs
        desc.append(f"{s['model']} (width {s['width']:g}, {s['epochs']} epochs" + (f", seed + {offset})" if i else ")"))
        tag = f"src_{s['model']}_{s['width']:g}_{s['epochs']}_" + (f"s{offset}_" if i else "")
        model, _ = train_network(cfg, data, os.path.join(run_dir, tag.rstrip("_")), role="idfr_source",
                                 verbose=False, source_index=i)
        sources[tag] = wrap_model(model, data.input_shape, data.num_classes, "cpu")
    return sources, " + ".join(desc) or None


def training_aes(a, sources, run_dir, x_fit, y_fit, x_sel, y_sel, onehot):
    """``(AEs of the fit images, AEs of the selection images)``: the training attacks on every source, cached."""
    fit_n = len(y_fit)
    adv, adv_sel = [], []
    for tag, source in sources.items():
        for eps in a.idfr_eps_values:
            for name in a.idfr_attacks.split(","):
                atk = make_attack(name, source, eps, seed=a.seed)
                adv.append(_cached(os.path.join(run_dir, f"{tag}train_{name}_{eps:.4f}_{fit_n}.npz"),
                                   lambda: atk.generate(x_fit, onehot[y_fit])))
                adv_sel.append(_cached(os.path.join(run_dir, f"{tag}sel_{name}_{eps:.4f}.npz"),
                                       lambda: atk.generate(x_sel, onehot[y_sel])))
    return adv, adv_sel


def transfer_aes(surrogate, x, y, onehot, run_dir, stem: str, seed: int) -> dict:
    """Black-box AEs of (x, y): VAL_ATTACKS crafted on the surrogate, cached as runs/.../<name>_<eps><stem>."""
    out = {}
    for name, eps in VAL_ATTACKS:
        atk = make_attack(name, surrogate, eps, seed=seed)
        out[f"{name} {round(eps * 255)}/255"] = _cached(
            os.path.join(run_dir, stem.format(f"{name}_{eps:.4f}")), lambda: atk.generate(x, onehot[y]))
    return out


def measure(target, defended, x, y, advs) -> dict:
    """Accuracy (%) of the bare target and of the ID-defended target on clean x and on each AE set."""
    def acc(clf, xs):
        return float((clf.predict(xs).argmax(1) == y).mean() * 100)

    return {model: {"clean": acc(clf, x)} | {k: acc(clf, v) for k, v in advs.items()}
            for model, clf in (("undefended", target), ("id", defended))}


def record(a, den, fit_n, epochs, src_desc, n_val, scores, t_fit, t_craft, tmeta) -> dict:
    """The JSON line of one call: settings, scores on the validation images, history, times, command."""
    row = {
        "name": a.name,
        "config": den.get_config() | {"fit_n": fit_n, "epochs": epochs, "idfr_eps": a.idfr_eps,
                                     "idfr_attacks": a.idfr_attacks} | ({"idfr_source": src_desc} if src_desc else {}),
        "val_n": int(n_val),
        **scores,
        "history": den.history,
        "fit_seconds": round(t_fit, 1),
        "craft_seconds": round(t_craft, 1),
        "target_val_acc": tmeta["val_accuracy"],
        "target": {"model": a.model, "width": a.width, "epochs": a.target_epochs},
        "surrogate": {"model": a.surrogate_model, "width": a.surrogate_width, "epochs": a.surrogate_epochs},
        "dataset": a.dataset,
        "seed": a.seed,
        "device": f"cpu, {a.threads} thread{'s' * (a.threads > 1)}, {os.cpu_count()} cores, {platform.machine()}",
        "torch": torch.__version__,
        "command": "python " + " ".join(shlex.quote(s) for s in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
    }
    row["id_drop"] = {k: round(row["undefended"]["clean"] - v, 2) for k, v in row["id"].items()}
    return row


def main() -> int:
    a, cfg = parse_args()
    set_up_cpu(a.threads)
    over = dict(a.overrides)
    fit_n, epochs = int(over.pop("fit_n", 4000)), int(over.pop("epochs", 4))
    run_dir, out_dir = run_dir_of(a), os.path.join(HERE, "results", f"tune_{a.dataset}")
    os.makedirs(run_dir, exist_ok=True)
    os.makedirs(out_dir, exist_ok=True)
    data = prepare_data(cfg, verbose=False)
    target_model, tmeta = train_network(cfg, data, os.path.join(run_dir, "target"), role="target", verbose=False)
    sur_model, _ = train_network(cfg, data, os.path.join(run_dir, "surrogate"), role="surrogate", verbose=False)
    target = wrap_model(target_model, data.input_shape, data.num_classes, "cpu")
    sources, src_desc = ae_sources(cfg, data, run_dir, target)
    surrogate = wrap_model(sur_model, data.input_shape, data.num_classes, "cpu")
    x_sel, y_sel, x_val, y_val = data.x_val[:1000], data.y_val[:1000], data.x_val[1000:], data.y_val[1000:]
    onehot = np.eye(data.num_classes, dtype=np.float32)
    idx = stratified_subset_indices(data.y_train, fit_n, seed=a.seed)
    x_fit, y_fit = data.x_train[idx], data.y_train[idx]
    t0 = time.perf_counter()
    adv, adv_sel = training_aes(a, sources, run_dir, x_fit, y_fit, x_sel, y_sel, onehot)
    val_adv = transfer_aes(surrogate, x_val, y_val, onehot, run_dir, "val_{}.npz", a.seed)
    t_craft = time.perf_counter() - t0
    den = IDFRDenoiser(input_shape=data.input_shape, width=over.pop("width", 0.5), gaussian_sigma=0.1,
                       learning_rate=2e-3, device_type="cpu", seed=over.pop("seed", a.seed), **over)
    t0 = time.perf_counter()
    den.fit(x_fit, y_fit, classifier=target, attacks=[], x_adv=np.concatenate(adv), nb_epochs=epochs,
            validation_data=(x_sel, y_sel, [s[: len(x_sel)] for s in adv_sel]))
    t_fit = time.perf_counter() - t0
    defended = wrap_model(target_model, data.input_shape, data.num_classes, "cpu", preprocessing_defences=[den])
    row = record(a, den, fit_n, epochs, src_desc, len(y_val), measure(target, defended, x_val, y_val, val_adv),
                 t_fit, t_craft, tmeta)
    if a.diagnose_test:
        t_idx = stratified_subset_indices(data.y_test, a.diagnose_test, seed=a.seed)
        x_t, y_t = data.x_test[t_idx], data.y_test[t_idx]
        test_adv = transfer_aes(surrogate, x_t, y_t, onehot, run_dir, "test_{}_%d.npz" % a.diagnose_test, a.seed)
        row["test_diagnostic"] = {"n": int(len(y_t)), **measure(target, defended, x_t, y_t, test_adv)}
        print("test diagnostic:", json.dumps(row["test_diagnostic"]))
    with open(os.path.join(out_dir, "tune.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: row[k] for k in ("name", "undefended", "id", "fit_seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
