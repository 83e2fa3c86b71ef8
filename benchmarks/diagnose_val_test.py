"""
Validation/test gap diagnostic of a finished `cifar10_cpu` run (not tuning: nothing here chooses a setting).

    python benchmarks/cifar10_cpu.py            # first: trains and caches the models in runs/cifar10_cpu/
    python benchmarks/diagnose_val_test.py      # then: the same models on validation vs test images

Loads the run's target, black-box surrogate and ID from runs/cifar10_cpu/, crafts FGSM and BIM at 4 and 16/255 on
the surrogate for the run's own validation images (split off the training set; the target, surrogate and ID never
trained on them) and for its 1,000 test images, and measures the bare target and the ID-defended target on both.
If the ID's drop (undefended clean minus ID under attack) is the same on both splits, a validation split is a fair
stand-in for the test split and gaps between `tune_id.py` and the benchmark come from elsewhere (other models,
run-to-run variation). Writes benchmarks/results/cifar10_cpu/val_test_diagnostic.json.
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
sys.path.insert(0, HERE)

from cifar10_cpu import ARGS  # noqa: E402

from art_idfr.experiments.attacks import make_attack  # noqa: E402
from art_idfr.experiments.cli import _config, build_parser  # noqa: E402
from art_idfr.experiments.data import stratified_subset_indices  # noqa: E402
from art_idfr.experiments.evaluation.defences import wrap_model  # noqa: E402
from art_idfr.experiments.evaluation.pipeline import load_idfr, load_model_dir, prepare_data, set_up_cpu  # noqa: E402

ATTACKS = (("fgsm", 4 / 255), ("fgsm", 16 / 255), ("bim", 4 / 255), ("bim", 16 / 255))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default=os.path.join(ROOT, "runs", "cifar10_cpu"), help="folder of the cifar10_cpu run")
    p.add_argument("--data-root", default=None, help="CIFAR-10 JPEG tarball (default: as cifar10_cpu.py)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=os.path.join(HERE, "results", "cifar10_cpu", "val_test_diagnostic.json"))
    a = p.parse_args()
    set_up_cpu(a.threads)
    argv = ["demo", *ARGS] + (["--data-root", a.data_root] if a.data_root else [])
    cfg = _config(build_parser().parse_args(argv))
    data = prepare_data(cfg, verbose=False)
    target_model, target_meta = load_model_dir(os.path.join(a.run, "target"), device="cpu")
    sur_model, _ = load_model_dir(os.path.join(a.run, "surrogate"), device="cpu")
    den, _, idfr_meta = load_idfr(os.path.join(a.run, "idfr"), device_type="cpu")
    shape, classes = data.input_shape, data.num_classes
    target = wrap_model(target_model, shape, classes, "cpu")
    surrogate = wrap_model(sur_model, shape, classes, "cpu")
    defended = wrap_model(target_model, shape, classes, "cpu", preprocessing_defences=[den])
    onehot = np.eye(classes, dtype=np.float32)
    test_idx = stratified_subset_indices(data.y_test, cfg.eval_n, seed=cfg.seed)  # the benchmark's test images
    splits = {"validation": (data.x_val, data.y_val), "test": (data.x_test[test_idx], data.y_test[test_idx])}
    t0 = time.perf_counter()
    rows = {}
    for split, (x, y) in splits.items():
        def acc(clf, xs):
            return round(float((clf.predict(xs).argmax(1) == y).mean() * 100), 2)

        row = {"n": int(len(y)), "undefended": {"clean": acc(target, x)}, "id": {"clean": acc(defended, x)}}
        for name, eps in ATTACKS:
            x_adv = make_attack(name, surrogate, eps, seed=cfg.seed).generate(x, onehot[y])
            key = f"{name} {round(eps * 255)}/255"
            row["undefended"][key], row["id"][key] = acc(target, x_adv), acc(defended, x_adv)
        row["id_drop_vs_undefended_clean"] = {k: round(row["undefended"]["clean"] - v, 2)
                                              for k, v in row["id"].items()}
        rows[split] = row
        print(split, json.dumps(row), flush=True)
    doc = {
        "what": "cifar10_cpu models on their validation vs test images, black-box (surrogate) AEs; a diagnostic",
        "run": os.path.relpath(a.run, ROOT),
        "target": {k: target_meta.get(k) for k in ("model", "width", "seed", "epochs", "test_accuracy")},
        "idfr_settings": idfr_meta.get("settings"),
        **rows,
        "seconds": round(time.perf_counter() - t0, 1),
        "device": f"cpu, {a.threads} thread{'s' * (a.threads > 1)}, {os.cpu_count()} cores, {platform.machine()}",
        "torch": torch.__version__,
        "seed": cfg.seed,
        "command": "python " + " ".join(shlex.quote(s) for s in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=2)
    print("written:", os.path.relpath(a.out, ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
