"""
Does the frozen FR help or hurt the adaptive ID? On `fashion_mnist_adaptive`'s cached models (run that first), on
the benchmark's 500 *validation* images (never the test split; the same images chose the adaptive ID's best epoch
through ID + FR, which favours that path if anything): clean accuracy and white-box PGD-20 (ART, one random start,
step 2.5·ε/20) at 8/255 and 16/255 through adaptive ID + FR (the `idfr_adaptive` defence, what the adaptive ID was
trained through) and through the adaptive ID alone. One JSON line to benchmarks/results/tune_adaptive/fr_check.jsonl.

    python benchmarks/adaptive_fr_check.py
"""
import json
import os
import platform
import sys

import numpy as np
import torch
from art.attacks.evasion import ProjectedGradientDescent

from _run import ROOT, cached_setup


def pgd_accuracy(classifier, x, y, eps, steps=20):
    np.random.seed(0)
    attack = ProjectedGradientDescent(classifier, eps=eps, eps_step=2.5 * eps / steps, max_iter=steps,
                                      num_random_init=1, batch_size=250, verbose=False)
    x_adv = attack.generate(x, y=np.eye(classifier.nb_classes, dtype=np.float32)[y])
    return round(float((classifier.predict(x_adv).argmax(1) == y).mean() * 100), 1)


def load_models(benchmark: str = "fashion_mnist_adaptive"):
    """The data, bare target, adaptive ID and FR that ``benchmarks/<benchmark>.py`` cached in runs/<benchmark>."""
    from art_idfr import FeatureRestorer
    from art_idfr.experiments.evaluation.defences import wrap_model
    from art_idfr.experiments.evaluation.pipeline import load_adaptive_fit

    run = os.path.join(ROOT, "runs", benchmark)
    if not os.path.exists(os.path.join(run, "idfr", "adaptive", "denoiser.pt")):
        raise FileNotFoundError(f"no adaptive ID in {run}: run `python benchmarks/{benchmark}.py` first.")
    setup = cached_setup(benchmark)
    cfg, data, model = setup.cfg, setup.data, setup.model
    target = wrap_model(model, data.input_shape, data.num_classes, "cpu")
    fr = FeatureRestorer.load(os.path.join(run, "idfr", "restorer.pt"), device_type="cpu")
    den, fr, _ = load_adaptive_fit(os.path.join(run, "idfr", "adaptive"), fr, device_type="cpu")  # FR: joint if so
    return cfg, data, target, den, fr


def main() -> int:
    from art_idfr import defend

    cfg, data, target, den, fr = load_models()
    x, y = data.x_val[:500], data.y_val[:500]
    row = {}
    for name, clf in (("adaptive ID + FR", defend(target, den, fr)), ("adaptive ID alone", defend(target, den))):
        row[name] = {"clean": round(float((clf.predict(x).argmax(1) == y).mean() * 100), 1),
                     **{f"PGD-20 {e}/255": pgd_accuracy(clf, x, y, e / 255) for e in (8, 16)}}
        print(name, row[name], flush=True)
    row |= {"dataset": cfg.dataset, "n": len(y), "images": "validation 0-499 (also the best-epoch images)", "seed": 0, "torch": torch.__version__,
            "device": f"cpu, 2 threads, {os.cpu_count()} cores, {platform.machine()}",
            "command": "python benchmarks/adaptive_fr_check.py"}
    out = os.path.join(ROOT, "benchmarks", "results", "tune_adaptive", "fr_check.jsonl")
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
