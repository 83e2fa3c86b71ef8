"""
A second evaluator, not ours: torchattacks' APGD (CE and DLR losses, 100 steps, 1 restart) on the adaptive ID+FR of
an adaptive benchmark (or its restorers inside the target, ``--defences inner``: the ``idfr_inner`` fit of
cifar10_inner / fashion_mnist_inner) exported as a plain ``nn.Module`` (``art_idfr.as_module``), and on that
benchmark's Fast AT model (the goal's reference, judged the same way), at 8/255 and 16/255 on test images 0-199 (``--images
firstN``: 0 to N-1), beside ART's AutoAttack in that benchmark (n = 100). Only this cross-check reads the test
split; nothing is tuned on it. One JSON line per defence to benchmarks/results/<benchmark>/torchattacks.jsonl.

    python benchmarks/adaptive_torchattacks.py                 # after fashion_mnist_adaptive.py
    python benchmarks/adaptive_torchattacks.py cifar10_adaptive   # after cifar10_adaptive.py
    python benchmarks/adaptive_torchattacks.py --defences fast_at   # one of them (adaptive, inner, fast_at)
    python benchmarks/adaptive_torchattacks.py cifar10_inner --defences inner,fast_at --images whitebox
    python benchmarks/adaptive_torchattacks.py --images whitebox    # the benchmark's own 100 white-box images
    python benchmarks/adaptive_torchattacks.py --images first1000   # test images 0-999 (s.e. ≈ 1.4 points)
    python benchmarks/adaptive_torchattacks.py fashion_mnist_cpu --defences adp --images whitebox --eot-iter 20
    python benchmarks/adaptive_torchattacks.py fashion_mnist_cpu --defences adp --images whitebox --eps 8   # 8/255 only

``--defences adp`` judges the paper's ADP baseline of a ``*_cpu`` run (issue 42: Croce et al. 2022 break it with
APGD + EOT): its score network before the target as a plain module, APGD averaging ``--eot-iter`` gradients of
random draws per step; each prediction is one random draw, as in the run's tables.

``--images whitebox`` attacks exactly the images of the benchmark's white-box table (its ``EvalConfig``'s
stratified subset), so that this evaluator and ART's AutoAttack there are compared on the same images.
"""
import argparse
import json
import os
import platform
import re
import sys

import numpy as np
import torch

from _run import ROOT, cached_setup
from adaptive_fr_check import load_models


def apgd_accuracy(module, x, y, eps, eot_iter=1):
    """Accuracy after APGD-CE then APGD-DLR (an image counts as robust only if both fail); ``eot_iter`` gradients
    averaged per step (EOT, for a randomised defence)."""
    import torchattacks

    robust = torch.ones(len(y), dtype=torch.bool)
    for loss in ("ce", "dlr"):
        attack = torchattacks.APGD(module, norm="Linf", eps=eps, steps=100, n_restarts=1, loss=loss, seed=0,
                                   eot_iter=eot_iter)
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
                             **({"restarts": s["adaptive_restarts"]} if s.get("adaptive_restarts") else {}),
                             **({"curriculum_eps": s["adaptive_curriculum_eps"]}
                                if s.get("adaptive_curriculum_eps") else {}),
                             "weights": weights_digest(den.network)[:16], "fr_weights": weights_digest(fr.network)[:16]}}


def measure(module, x, y, eot_iter=1, eps=(8, 16)) -> dict:
    """Clean accuracy and APGD-CE+DLR accuracy at each ``eps`` (in /255) of ``module`` on ``x``, ``y`` (in %)."""
    with torch.no_grad():
        clean = round(float((module(x).argmax(1) == y).float().mean() * 100), 1)
    eot = f" (EOT {eot_iter})" if eot_iter > 1 else ""
    return {"clean": clean, **{f"torchattacks APGD-CE+DLR{eot} {e}/255": apgd_accuracy(module, x, y, e / 255, eot_iter)
                               for e in eps}}


class PurifiedModel(torch.nn.Module):
    """A baseline purifier (an ART ``PreprocessorPyTorch``) followed by the target network: a plain module."""

    def __init__(self, purifier, model) -> None:
        super().__init__()
        self.purifier, self.model = purifier, model

    def forward(self, x):
        return self.model(self.purifier.forward(x)[0])


def adp_module(benchmark: str, setup):
    """The benchmark's fitted ADP baseline before its target, as a plain module (random: one draw per call), with the
    record of its fit."""
    from art_idfr.experiments.baselines import ADP
    from art_idfr.experiments.evaluation.resume import weights_digest

    folder = os.path.join(ROOT, "runs", benchmark, "baselines", "adp")
    adp = ADP.load(os.path.join(folder, "adp.pt"), device_type="cpu")
    adp.reset_noise(0)
    with open(os.path.join(folder, "meta.json")) as f:
        settings = json.load(f)["settings"]
    record = {"adp": {**settings, "noise_std": adp.noise_std, "nb_steps": adp.nb_steps,
                      "weights": weights_digest(adp.network)[:16]}}
    return PurifiedModel(adp, setup.model.eval()), record


def fast_at_module(benchmark: str):
    """The benchmark's cached Fast AT model, with the record of how it was trained."""
    from art_idfr.experiments.evaluation.pipeline import load_model_dir
    from art_idfr.experiments.evaluation.resume import weights_digest

    model, meta = load_model_dir(os.path.join(ROOT, "runs", benchmark, "fast_at"), device="cpu")
    return model.eval(), {"fast_at": {**meta.get("settings", {}), "weights": weights_digest(model)[:16]}}


def image_choice(value: str) -> str:
    """``--images``: ``whitebox`` or ``firstN`` (N ≥ 1), checked here so that a typo is an argparse error."""
    if value == "whitebox" or (re.fullmatch(r"first[1-9][0-9]*", value) is not None):
        return value
    raise argparse.ArgumentTypeError(f"expected whitebox or firstN (e.g. first200), got {value!r}")


def test_images(cfg, data, which: str):
    """(indices into the test split, their description): test 0 to N-1 (``firstN``), or the benchmark's white-box
    images."""
    if which.startswith("first"):
        n = int(which[len("first"):])
        if n > len(data.y_test):
            raise SystemExit(f"--images {which}: the test split of {cfg.dataset} has {len(data.y_test)} images")
        return np.arange(n), f"test 0-{n - 1}"
    from art_idfr.experiments.evaluation.suite import threat_model_indices

    eval_idx, wb_idx, _ = threat_model_indices(cfg, data.y_test)
    return eval_idx[wb_idx], f"the benchmark's white-box images (seed {cfg.seed}, n = {len(wb_idx)})"


def inner_module(benchmark: str, setup):
    """The benchmark's ``idfr_inner`` defence (restorers inside the target, with its ID and FR if it has them) as a
    plain module, with the record of its fit (kind, size, recipe, weights' digest)."""
    from art_idfr import FeatureRestorer, as_module, defend
    from art_idfr.experiments.evaluation.defences import inner_label, wrap_model
    from art_idfr.experiments.evaluation.pipeline import INNER_DIR, load_inner_adaptive_fit
    from art_idfr.experiments.evaluation.resume import weights_digest

    idfr = os.path.join(ROOT, "runs", benchmark, "idfr")
    fr_file = os.path.join(idfr, "restorer.pt")
    fr = FeatureRestorer.load(fr_file, device_type="cpu") if os.path.isfile(fr_file) else None
    den, fr, inner, meta = load_inner_adaptive_fit(os.path.join(idfr, INNER_DIR), setup.model, fr, device_type="cpu")
    target = wrap_model(setup.model, setup.data.input_shape, setup.data.num_classes, "cpu")
    s, size = meta["settings"], meta["inner"]  # (after warm restarts: the first fit's epochs, then the restarts)
    record = {"inner_fit": {"images": meta["fit_n"], "epochs": s["adaptive_nb_epochs"],
                            **({"restarts": s["adaptive_restarts"]} if s.get("adaptive_restarts") else {}),
                            "batch_size": s["adaptive_batch_size"], "trades_beta": s["adaptive_trades_beta"],
                            "kind": size["kind"], "rank": size.get("rank"), "width": size.get("width"),
                            "parameters": size["parameters"], "alone": den is None,
                            "weights": weights_digest(inner.network)[:16]}}
    label = inner_label(den, fr).replace(" (not in paper)", "")  # the report's row label, as before in the jsonl
    return as_module(defend(target, den, fr, inner=inner)), label, record


def main(benchmark: str, defences, which: str = "first200", eot_iter: int = 20, eps=(8, 16), threads=None) -> int:
    from art_idfr import as_module, defend

    setup = cached_setup(benchmark, ("--threads", str(threads)) if threads else ())
    cfg, data = setup.cfg, setup.data
    idx, images = test_images(cfg, data, which)
    x, y = torch.as_tensor(data.x_test[idx]), torch.as_tensor(np.asarray(data.y_test[idx]), dtype=torch.long)
    import torchattacks

    for name in defences:
        if name == "adaptive":
            _, _, target, den, fr = load_models(benchmark)
            row = {"defence": "adaptive ID+FR", **measure(as_module(defend(target, den, fr)), x, y, eps=eps),
                   **adaptive_fit_record(benchmark, den, fr)}
        elif name == "inner":
            module, label, record = inner_module(benchmark, setup)
            row = {"defence": label, **measure(module, x, y, eps=eps), **record}
        elif name == "adp":
            module, record = adp_module(benchmark, setup)
            row = {"defence": f"ADP (EOT {eot_iter}, one draw per prediction)", **measure(module, x, y, eot_iter, eps),
                   **record}
        else:
            module, record = fast_at_module(benchmark)
            row = {"defence": "Fast AT", **measure(module, x, y, eps=eps), **record}
        print(row, flush=True)
        row |= {"dataset": cfg.dataset, "n": len(y), "images": images, "seed": 0, "torch": torch.__version__,
                "torchattacks": torchattacks.__version__,
                "device": f"cpu, {torch.get_num_threads()} threads, {os.cpu_count()} cores, {platform.machine()}",
                "command": " ".join(["python benchmarks/adaptive_torchattacks.py", *sys.argv[1:]])}
        with open(os.path.join(ROOT, "benchmarks", "results", benchmark, "torchattacks.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("benchmark", nargs="?", default="fashion_mnist_adaptive")
    p.add_argument("--defences", default="adaptive,fast_at",
                   type=lambda v: [d for d in v.split(",") if d],
                   help="comma-separated: adaptive (ID+FR adaptive), inner (idfr_inner), adp (the ADP baseline, "
                        "APGD with EOT), fast_at (default: adaptive, fast_at)")
    p.add_argument("--images", type=image_choice, default="first200",
                   help="firstN: test images 0 to N-1 (default first200), or whitebox: the benchmark's own white-box "
                        "images")
    p.add_argument("--eps", default=(8, 16), type=lambda v: tuple(int(e) for e in v.split(",") if e),
                   help="budgets in /255, comma-separated (default 8,16)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the benchmark's own)")
    p.add_argument("--eot-iter", type=int, default=20,
                   help="gradients averaged per APGD step for the randomised ADP (default 20)")
    a = p.parse_args()
    unknown = sorted(set(a.defences) - {"adaptive", "inner", "fast_at", "adp"})
    if unknown or not a.defences:
        p.error(f"--defences takes adaptive, inner, adp and/or fast_at, got {','.join(a.defences) or 'nothing'}")
    if a.eot_iter < 1:
        p.error(f"--eot-iter must be >= 1, got {a.eot_iter}")
    if not a.eps or min(a.eps) < 1:
        p.error(f"--eps takes budgets >= 1 (in /255), got {a.eps}")
    sys.exit(main(a.benchmark, a.defences, a.images, a.eot_iter, a.eps, a.threads))
