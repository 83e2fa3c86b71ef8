"""
A second evaluator, not ours: torchattacks' APGD (CE and DLR losses, 100 steps, 1 restart) on the adaptive ID+FR of
an adaptive benchmark exported as a plain ``nn.Module`` (``art_idfr.as_module``), at 8/255 and 16/255 on test images
0-199, beside ART's AutoAttack in that benchmark (n = 100). Only this cross-check reads the test split; nothing is
tuned on it. One JSON line to benchmarks/results/<benchmark>/torchattacks.jsonl.

    python benchmarks/adaptive_torchattacks.py                 # after fashion_mnist_adaptive.py
    python benchmarks/adaptive_torchattacks.py cifar10_adaptive   # after cifar10_adaptive.py
"""
import json
import os
import platform
import sys

import numpy as np
import torch

from _run import ROOT
from adaptive_fr_check import load_models


def apgd_accuracy(module, x, y, eps):
    """Accuracy after APGD-CE then APGD-DLR (an image counts as robust only if both fail)."""
    import torchattacks

    robust = torch.ones(len(y), dtype=torch.bool)
    for loss in ("ce", "dlr"):
        attack = torchattacks.APGD(module, norm="Linf", eps=eps, steps=100, n_restarts=1, loss=loss, seed=0)
        x_adv = attack(x, y)
        with torch.no_grad():
            robust &= module(x_adv).argmax(1) == y
    return round(float(robust.float().mean() * 100), 1)


def adaptive_fit_record(benchmark: str, den, fr) -> dict:
    """Which adaptive ID ``den`` (and FR ``fr``) is judged: its recipe (images, epochs, batch, TRADES β, FR trained
    jointly or not) and the weights' digests."""
    from art_idfr.experiments.evaluation.resume import weights_digest

    with open(os.path.join(ROOT, "runs", benchmark, "idfr", "adaptive", "adaptive.json")) as f:
        fit = json.load(f)
    s = fit["settings"]
    return {"adaptive_fit": {"images": fit["fit_n"], "epochs": s["adaptive_nb_epochs"],
                             "batch_size": s["adaptive_batch_size"], "trades_beta": s["adaptive_trades_beta"],
                             "fr_joint": bool(s.get("adaptive_train_restorer", False)),
                             "weights": weights_digest(den.network)[:16], "fr_weights": weights_digest(fr.network)[:16]}}


def main(benchmark: str = "fashion_mnist_adaptive") -> int:
    from art_idfr import as_module, defend

    cfg, data, target, den, fr = load_models(benchmark)
    module = as_module(defend(target, den, fr))
    x, y = torch.as_tensor(data.x_test[:200]), torch.as_tensor(np.asarray(data.y_test[:200]), dtype=torch.long)
    with torch.no_grad():
        clean = round(float((module(x).argmax(1) == y).float().mean() * 100), 1)
    row = {"defence": "adaptive ID+FR", "clean": clean,
           **{f"torchattacks APGD-CE+DLR {e}/255": apgd_accuracy(module, x, y, e / 255) for e in (8, 16)}}
    print(row, flush=True)
    import torchattacks

    row |= adaptive_fit_record(benchmark, den, fr)
    row |= {"dataset": cfg.dataset, "n": len(y), "images": "test 0-199", "seed": 0, "torch": torch.__version__,
            "torchattacks": torchattacks.__version__,
            "device": f"cpu, 2 threads, {os.cpu_count()} cores, {platform.machine()}",
            "command": " ".join(["python benchmarks/adaptive_torchattacks.py", *sys.argv[1:]])}
    with open(os.path.join(ROOT, "benchmarks", "results", benchmark, "torchattacks.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
