"""
Speed of the batched epsilon-bounded C&W L-inf attack vs ART's CarliniLInfMethod.

Both attacks run with ``max_iter`` (default 20) iterations against the same briefly trained ``small_cnn`` on the
same MNIST-5k test images (ours on ``--n-ours`` images, ART's on the first ``--n-art`` of them, since ART's attack
takes about a second per image). Prints seconds per image and the ratio, and writes JSON + Markdown to
``benchmarks/results/cw_speed/``.

Usage::

    python benchmarks/cw_speed.py                    # defaults: 64 / 16 images, 20 iterations, eps 0.3, 1 thread
    python benchmarks/cw_speed.py --n-ours 256 --n-art 8 --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "cw_speed")


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (fallback: platform.processor())."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=os.path.dirname(os.path.abspath(__file__)),
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or None
    except Exception:
        return None


class ForwardCounter:
    """Counts forward calls and forwarded samples of a module (via a forward hook)."""

    def __init__(self, module: torch.nn.Module):
        self.calls = 0
        self.samples = 0
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.calls += 1
        self.samples += int(inputs[0].shape[0])

    def reset(self):
        self.calls = self.samples = 0

    def remove(self):
        self._handle.remove()


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-ours", type=int, default=64, help="images attacked by CarliniWagnerLInfPGD")
    parser.add_argument("--n-art", type=int, default=16, help="images attacked by ART's CarliniLInfMethod")
    parser.add_argument("--max-iter", type=int, default=20, help="iterations of both attacks")
    parser.add_argument("--eps", type=float, default=0.3, help="L-inf budget of CarliniWagnerLInfPGD")
    parser.add_argument("--eps-step", type=float, default=0.03, help="step of CarliniWagnerLInfPGD")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of the small CNN")
    parser.add_argument("--width", type=float, default=0.5, help="width of the small CNN")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for training and both attacks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if not 1 <= args.n_art <= args.n_ours:
        parser.error("need 1 <= --n-art <= --n-ours (ART's images are the first --n-art of ours)")
    return args


def train_small_cnn(args):
    """``(dataset, classifier, model record)``: the small CNN trained on MNIST-5k, timed."""
    from art.estimators.classification import PyTorchClassifier

    from art_idfr.experiments.data import load_dataset
    from art_idfr.experiments.models import accuracy, make_model, train_model

    ds = load_dataset("mnist5k", seed=args.seed)
    model = make_model("small_cnn", 10, ds.input_shape, width=args.width, seed=args.seed)
    history, train_s = timed(
        lambda: train_model(model, ds.x_train, ds.y_train, epochs=args.epochs, device="cpu", seed=args.seed,
                            verbose=False)
    )
    clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=ds.input_shape, nb_classes=10,
                            clip_values=(0.0, 1.0), device_type="cpu")
    record = {"name": "small_cnn", "width": args.width, "epochs": args.epochs, "train_seconds": train_s,
              "clean_test_accuracy": accuracy(model, ds.x_test, ds.y_test, device="cpu"),
              "train_loss": history["loss"]}
    return ds, clf, record


def attack_summary(clf, x_clean, x_adv, labels) -> dict:
    pred = clf.predict(x_adv).argmax(1)
    linf = np.abs(x_adv - x_clean).reshape(len(x_clean), -1).max(1)
    return {"n_images": int(len(x_clean)), "adv_accuracy": float((pred == labels).mean()),
            "linf_max": float(linf.max()), "linf_mean": float(linf.mean())}


def time_ours(args, clf, counter, x, y, x_art, y_art) -> dict:
    """CarliniWagnerLInfPGD on all ``--n-ours`` images, then on ART's ``--n-art`` alone, after a warm-up."""
    from art_idfr.experiments.attacks import CarliniWagnerLInfPGD

    ours = CarliniWagnerLInfPGD(clf, eps=args.eps, eps_step=args.eps_step, max_iter=args.max_iter, batch_size=128,
                                verbose=False)
    ours.generate(x[:2], y[:2])  # warm-up (first-call overheads)
    counter.reset()
    x_adv, t_ours = timed(ours.generate, x, y)
    calls, samples = counter.calls, counter.samples
    counter.reset()
    _, t_same = timed(ours.generate, x_art, y_art)
    return {"attack": "art_idfr.experiments.attacks.CarliniWagnerLInfPGD",
            "params": {"eps": args.eps, "eps_step": args.eps_step, "max_iter": args.max_iter, "batch_size": 128},
            "seconds": t_ours, "seconds_per_image": t_ours / len(x), "forward_calls": calls,
            "forwarded_samples_per_image": samples / len(x), **attack_summary(clf, x, x_adv, y),
            "same_images_as_art": {"seconds": t_same, "seconds_per_image": t_same / len(x_art)}}


def time_art(args, clf, counter, x_art, y_art) -> dict:
    """ART's CarliniLInfMethod, one image at a time, on the first ``--n-art`` images."""
    from art.attacks.evasion import CarliniLInfMethod

    art_attack = CarliniLInfMethod(clf, max_iter=args.max_iter, batch_size=1, verbose=False)
    counter.reset()
    x_adv, t_art = timed(art_attack.generate, x_art, y_art)
    return {"attack": "art.attacks.evasion.CarliniLInfMethod",
            "params": {"max_iter": args.max_iter, "batch_size": 1, "other": "ART 1.20 defaults (no eps parameter)"},
            "seconds": t_art, "seconds_per_image": t_art / len(x_art), "forward_calls": counter.calls,
            "forwarded_samples_per_image": counter.samples / len(x_art), **attack_summary(clf, x_art, x_adv, y_art)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    from art import __version__ as art_version

    torch.set_num_threads(args.threads)
    load_start = list(os.getloadavg())
    ds, clf, model_record = train_small_cnn(args)
    x, y = ds.x_test[: args.n_ours], ds.y_test[: args.n_ours]
    x_art, y_art = x[: args.n_art], y[: args.n_art]
    counter = ForwardCounter(clf.model)
    ours = time_ours(args, clf, counter, x, y, x_art, y_art)
    art = time_art(args, clf, counter, x_art, y_art)
    counter.remove()
    result = {
        "benchmark": "cw_speed",
        "description": (
            "seconds per image of art_idfr CarliniWagnerLInfPGD (batched, eps-bounded) vs ART CarliniLInfMethod "
            "(one image at a time, unbounded minimum-norm), same small_cnn, same MNIST-5k test images, same max_iter"
        ),
        "command": "python " + shlex.join(sys.argv if argv is None else [sys.argv[0], *argv]),
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_revision": git_revision(),
        "device": {"type": "cpu", "cpu_model": cpu_model(), "logical_cpus": os.cpu_count(),
                   "torch_threads": torch.get_num_threads(), "load_average_at_start": load_start,
                   "load_average_at_end": list(os.getloadavg())},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "art": art_version,
                     "numpy": np.__version__},
        "seed": args.seed,
        "config": vars(args),
        "dataset": ds.describe(),
        "model": model_record,
        "ours": ours,
        "art": art,
        "speedup": art["seconds_per_image"] / ours["seconds_per_image"],
        "speedup_same_images": art["seconds_per_image"] / ours["same_images_as_art"]["seconds_per_image"],
    }
    write_reports(result, args.out_dir)
    return result


def save_report(result: dict, markdown_text: str, out_dir: str, stem: str) -> None:
    """``<stem>.json`` (the record) and ``<stem>.md`` (its Markdown) in ``out_dir``; shared with speed.py."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{stem}.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    with open(os.path.join(out_dir, f"{stem}.md"), "w") as f:
        f.write(markdown_text)


def write_reports(result: dict, out_dir: str) -> None:
    save_report(result, markdown(result), out_dir, "cw_speed")
    o, a = result["ours"], result["art"]
    n_art = a["n_images"]
    print(
        f"ours: {o['seconds_per_image'] * 1e3:.2f} ms/image ({o['n_images']} images), "
        f"{o['same_images_as_art']['seconds_per_image'] * 1e3:.2f} ms/image on ART's {n_art} images\n"
        f"ART CarliniLInfMethod: {a['seconds_per_image']:.3f} s/image ({n_art} images)\n"
        f"speed-up: {result['speedup']:.0f}x ({result['speedup_same_images']:.0f}x on the same {n_art} images)\n"
        f"results written to {out_dir}"
    )


def markdown(r: dict) -> str:
    o, a = r["ours"], r["art"]
    return f"""# C&W L-inf attack speed: art_idfr vs ART

- Command: `{r["command"]}`
- Date (UTC): {r["timestamp_utc"]}; git revision: {r["git_revision"] or "n/a"}
- Device: {r["device"]["cpu_model"]} ({r["device"]["logical_cpus"]} logical CPUs, torch threads \
{r["device"]["torch_threads"]}, load average at start \
{", ".join(f"{v:.2f}" for v in r["device"]["load_average_at_start"])}, at end \
{", ".join(f"{v:.2f}" for v in r["device"]["load_average_at_end"])})
- Versions: Python {r["versions"]["python"]}, torch {r["versions"]["torch"]}, ART {r["versions"]["art"]}, \
numpy {r["versions"]["numpy"]}; seed {r["seed"]}
- Data: {r["dataset"]}
- Model: small_cnn (width {r["model"]["width"]}), {r["model"]["epochs"]} epochs, clean test accuracy \
{r["model"]["clean_test_accuracy"]:.4f}

| attack | images | max_iter | s / image | forward passes / image | adv. accuracy | max L-inf | mean L-inf |
|---|---:|---:|---:|---:|---:|---:|---:|
| art_idfr `CarliniWagnerLInfPGD` (eps {o["params"]["eps"]}, step {o["params"]["eps_step"]}) | {o["n_images"]} | \
{o["params"]["max_iter"]} | {o["seconds_per_image"]:.5f} | {o["forwarded_samples_per_image"]:.1f} | \
{o["adv_accuracy"]:.3f} | {o["linf_max"]:.4f} | {o["linf_mean"]:.4f} |
| ART `CarliniLInfMethod` (no eps) | {a["n_images"]} | {a["params"]["max_iter"]} | {a["seconds_per_image"]:.4f} | \
{a["forwarded_samples_per_image"]:.1f} | {a["adv_accuracy"]:.3f} | {a["linf_max"]:.4f} | {a["linf_mean"]:.4f} |

**Speed-up: {r["speedup"]:.0f}x** per image (ours on {o["n_images"]} images, batched);
{r["speedup_same_images"]:.0f}x when ours runs on the same {a["n_images"]} images as ART
({o["same_images_as_art"]["seconds_per_image"]:.5f} s / image).

Notes: both attacks use `max_iter={o["params"]["max_iter"]}`, but ART's `max_iter` counts Adam steps of *each* inner
problem of its minimum-norm search (a loop over the constant `c` inside a loop over the bound `tau`), one image at a
time, so it runs many more forward passes per image; it has no `eps` and returns perturbations of whatever size it
found. Ours is a fixed-budget, eps-bounded attack. Forward passes are counted with a forward hook on the model.
"""


if __name__ == "__main__":
    main()
