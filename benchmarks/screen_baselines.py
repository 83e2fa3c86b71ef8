"""
Screen the paper's purification baselines (ComDefend, NRP, ADP, SOAP) on a *validation* split — never the test
split — the record behind the "baseline screens" sections of `benchmarks/NOTES.md` (issue 42).

    python benchmarks/screen_baselines.py --baseline adp --name default
    python benchmarks/screen_baselines.py --baseline adp --name e20 nb_epochs=20 fit_n=20000
    python benchmarks/screen_baselines.py --baseline adp --name e20_s1 nb_epochs=20 fit_n=20000 step_size=1.0
    python benchmarks/screen_baselines.py --baseline comdefend --name e20 nb_epochs=20 fit_n=20000
    python benchmarks/screen_baselines.py --cifar10 --baseline adp --name default fit_n=3000
    python benchmarks/screen_baselines.py --baseline soap --name scratch_e4 nb_epochs=4
    python benchmarks/screen_baselines.py --baseline soap --name target_e1 init=target nb_epochs=1

The target and the surrogate are `tune_id.py`'s (small CNN width 1 / 4 epochs; width 0.5 / 3 epochs, other seed;
trained on the training split minus 3,000 validation images, cached in runs/tune_<dataset>/ and reused); `--cifar10`
takes `cifar10_cpu`'s instead (ResNet-18 width 0.25 / 4 epochs, small-CNN surrogate width 1 / 3 epochs, 500
validation images; the target `cifar10_adaptive.py` cached in runs/cifar10_adaptive/target is reused), measured on
all 500 validation images. Each call
fits one variant (`key=value`: constructor arguments of the baseline, plus `fit_n` = its stratified training images
from the training split; `nb_epochs` is its constructor's) on clean images, or reuses the fit of the same training
settings from runs/screen_baselines_<dataset>/ (test-time settings such as ADP's `nb_steps` / `step_size` /
`noise_std` do not retrain), and measures the target through it on validation images 1000-2999 (Fashion-MNIST):
clean accuracy and black-box accuracy on FGSM 16/255 and BIM 8/255 crafted on the surrogate (ADP: one random draw
per prediction, seeded, as the evaluation's black-box table does). SOAP retrains the classifier: it is fitted on the
whole training split (`fit_n` does not apply), from a fresh network of the target's architecture (`init=scratch`, the
paper's) or from a copy of the screen's target (`init=target`), and scored as a classifier of its own (its purify
settings act at test time; unset, they are `SOAPModel`'s defaults, radius 8/255 and 5 steps, on either dataset).
One JSON line per call goes to benchmarks/results/screen_baselines/<dataset>.jsonl, with the command.
"""
from __future__ import annotations

import argparse
import hashlib
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

from art_idfr.experiments.attacks import make_attack  # noqa: E402
from art_idfr.experiments.baselines import ADP, NRP, ComDefend, SOAPModel, soap_classifier  # noqa: E402
from art_idfr.experiments.data import stratified_subset_indices  # noqa: E402
from art_idfr.experiments.evaluation.config import EvalConfig  # noqa: E402
from art_idfr.experiments.evaluation.defences import wrap_model  # noqa: E402
from art_idfr.experiments.evaluation.pipeline import prepare_data, set_up_cpu, train_network  # noqa: E402
from art_idfr.experiments.evaluation.pipeline.baselines import SOAP_TEST_TIME, TargetEmbedding  # noqa: E402
from art_idfr.experiments.models import make_model  # noqa: E402
from tune_id import _cached  # noqa: E402  (the same .npz cache of crafted AEs)

CLASSES = {"adp": ADP, "comdefend": ComDefend, "nrp": NRP, "soap": SOAPModel}
#: settings that act at test time only: a variant differing only in these reuses the fitted network
TEST_TIME = {"adp": {"nb_steps", "step_size", "noise_std", "purify_sigma", "noise_seed"}, "comdefend": set(),
             "nrp": set(), "soap": set(SOAP_TEST_TIME)}
VAL_ATTACKS = [("fgsm", 16 / 255), ("bim", 8 / 255)]


def _parse_value(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    if v.startswith("(") or v.startswith("["):
        return [float(s) for s in v.strip("()[]").split(",") if s]
    return v


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion_mnist_idx")
    p.add_argument("--cifar10", action="store_true", help="cifar10_cpu's models on CIFAR-10 JPEG (see above)")
    p.add_argument("--baseline", required=True, choices=sorted(CLASSES))
    p.add_argument("--name", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch/BLAS threads (1 when sharing the machine)")
    p.add_argument("overrides", nargs="*", help="key=value: constructor arguments of the baseline, and fit_n")
    a = p.parse_args()
    a.overrides = {k: _parse_value(v) for k, v in (kv.split("=", 1) for kv in a.overrides)}
    return a


def fitted_baseline(a, cfg, data, target_model, run_dir):
    """``(defence, fit_seconds, reused)``: the variant's fit, from the cache of its training settings or new."""
    over = dict(a.overrides)
    fit_n = int(over.pop("fit_n", 4000))
    cls = CLASSES[a.baseline]
    train_keys = {k: v for k, v in over.items() if k not in TEST_TIME[a.baseline]}
    tag = hashlib.sha256(json.dumps([a.baseline, fit_n, a.seed, train_keys], sort_keys=True).encode()).hexdigest()
    path = os.path.join(run_dir, f"{a.baseline}_{tag[:16]}.pt")
    meta_path = path[:-3] + ".json"
    if a.baseline == "soap":
        return _fitted_soap(a, cfg, data, target_model, path, meta_path, over, train_keys)
    if os.path.exists(path) and os.path.exists(meta_path):
        defence = cls.load(path, "cpu")
        defence.set_params(**{k: v for k, v in over.items() if k in TEST_TIME[a.baseline]})
        with open(meta_path) as f:
            return defence, json.load(f)["fit_seconds"], True
    defence = cls(data.input_shape, device_type="cpu", verbose=False, seed=a.seed + 3000, **over)
    x = data.x_train[stratified_subset_indices(data.y_train, fit_n, seed=a.seed + 3000)]
    kwargs = {"feature_network": TargetEmbedding(target_model)} if a.baseline == "nrp" else {}
    t0 = time.perf_counter()
    defence.fit(x, **kwargs)
    seconds = time.perf_counter() - t0
    defence.save(path)
    with open(meta_path, "w") as f:
        json.dump({"fit_seconds": seconds, "train_settings": train_keys, "fit_n": fit_n}, f)
    return defence, seconds, False


def _fitted_soap(a, cfg, data, target_model, path, meta_path, over, train_keys):
    """:func:`fitted_baseline` for SOAP: ``init`` = scratch (a fresh network of the target's architecture) or
    target (a copy of the screen's target); trained on the whole training split; test-time settings applied."""
    import copy
    import inspect

    init = over.pop("init", "scratch")
    if init not in ("scratch", "target"):
        raise SystemExit(f"soap: init must be scratch or target, got {init!r}")
    def fresh():
        return make_model(cfg.target.model, data.num_classes, data.input_shape, width=cfg.target.width,
                          seed=a.seed + 3003)

    defaults = inspect.signature(SOAPModel).parameters  # an unset test-time setting is the class default, always
    test_time = {k: over.pop(k, defaults[k].default) for k in TEST_TIME["soap"]}
    if os.path.exists(path) and os.path.exists(meta_path):
        soap = SOAPModel.load(path, fresh())
        with open(meta_path) as f:
            seconds, reused = json.load(f)["fit_seconds"], True
    else:
        model = copy.deepcopy(target_model) if init == "target" else fresh()
        soap = SOAPModel(model, data.input_shape, seed=a.seed + 3003, **over)
        t0 = time.perf_counter()
        soap.fit(data.x_train, data.y_train)
        seconds, reused = time.perf_counter() - t0, False
        soap.save(path)
        with open(meta_path, "w") as f:
            json.dump({"fit_seconds": seconds, "train_settings": train_keys, "init": init}, f)
    soap.purify_eps, soap.purify_steps = float(test_time["purify_eps"]), int(test_time["purify_steps"])
    return soap.eval(), seconds, reused


def main() -> int:
    a = parse_args()
    set_up_cpu(a.threads)
    if a.cifar10:  # cifar10_cpu's target (as cifar10_adaptive.py caches it) and surrogate
        a.dataset = "cifar10_jpeg"
        cfg = EvalConfig.preset("cpu", dataset=a.dataset, val_n=500, test_size=1000, model="resnet18_cifar", width=0.25,
                                target_epochs=4, surrogate_model="small_cnn", surrogate_width=1.0, surrogate_epochs=3,
                                seed=a.seed, device="cpu")
        target_dir, sur_dir, val_from = [os.path.join(ROOT, "runs", "cifar10_adaptive", n) for n in
                                         ("target", "surrogate")] + [0]
    else:  # tune_id.py's default target and surrogate
        cfg = EvalConfig.preset("cpu", dataset=a.dataset, val_n=3000, model="small_cnn", width=1.0, target_epochs=4,
                                surrogate_model="small_cnn", surrogate_width=0.5, surrogate_epochs=3, seed=a.seed,
                                device="cpu")
        tune_dir = os.path.join(ROOT, "runs", f"tune_{a.dataset}")
        target_dir, sur_dir, val_from = os.path.join(tune_dir, "target"), os.path.join(tune_dir, "surrogate"), 1000
    run_dir, out_dir = os.path.join(ROOT, "runs", f"screen_baselines_{a.dataset}"), os.path.join(
        HERE, "results", "screen_baselines")
    for d in (target_dir, sur_dir, run_dir, out_dir):
        os.makedirs(d, exist_ok=True)
    data = prepare_data(cfg, verbose=False)
    target_model, tmeta = train_network(cfg, data, target_dir, role="target", verbose=False)
    sur_model, _ = train_network(cfg, data, sur_dir, role="surrogate", verbose=False)
    surrogate = wrap_model(sur_model, data.input_shape, data.num_classes, "cpu")
    x_val, y_val = data.x_val[val_from:], data.y_val[val_from:]
    onehot = np.eye(data.num_classes, dtype=np.float32)
    advs = {f"{n} {round(e * 255)}/255": _cached(os.path.join(run_dir, f"val_{n}_{e:.4f}.npz"),
                                                     lambda: make_attack(n, surrogate, e, seed=a.seed).generate(
                                                         x_val, onehot[y_val]))
            for n, e in VAL_ATTACKS}
    defence, fit_seconds, reused = fitted_baseline(a, cfg, data, target_model, run_dir)
    if hasattr(defence, "reset_noise"):
        defence.reset_noise(a.seed)
    bare = wrap_model(target_model, data.input_shape, data.num_classes, "cpu")
    defended = (soap_classifier(defence, device_type="cpu") if a.baseline == "soap" else
                wrap_model(target_model, data.input_shape, data.num_classes, "cpu", preprocessing_defences=[defence]))
    t0 = time.perf_counter()
    scores = {model: {k: float((clf.predict(v).argmax(1) == y_val).mean() * 100)
                      for k, v in {"clean": x_val, **advs}.items()}
              for model, clf in (("undefended", bare), (a.baseline, defended))}
    row = {"name": a.name, "baseline": a.baseline, "config": defence.get_config(),
           "fit_n": len(data.y_train) if a.baseline == "soap" else int(a.overrides.get("fit_n", 4000)),
           "val_n": int(len(y_val)), **scores,
           "history": [{k: round(v, 5) for k, v in h.items()} for h in defence.history],
           "fit_seconds": round(fit_seconds, 1), "fit_reused": reused,
           "predict_seconds": round(time.perf_counter() - t0, 1), "target_val_acc": tmeta["val_accuracy"],
           "dataset": a.dataset, "seed": a.seed,
           "device": f"cpu, {a.threads} thread{'s' * (a.threads > 1)}, {os.cpu_count()} cores, {platform.machine()}",
           "torch": torch.__version__,
           "command": "python " + " ".join(shlex.quote(s) for s in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])}
    with open(os.path.join(out_dir, f"{a.dataset}.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: row[k] for k in ("name", "undefended", a.baseline, "fit_seconds", "fit_reused")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
