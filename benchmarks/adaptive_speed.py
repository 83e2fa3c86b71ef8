"""
Speed of adaptive training on this CPU (issue 41, item 3): one optimizer step of :class:`AdaptiveDenoiserTrainer`
(PGD-5 inner attack through ID (+ FR / inner restorers) + the frozen target, then the update) in float32, under
bfloat16 autocast, and under bfloat16 autocast with channels-last images, at the two benchmark settings:

* ``fashion``: the small-CNN target of `fashion_mnist_adaptive` (1×28×28), the Table-6 U-Net at width 0.5, the FR
  trained jointly, batch 16 (the `trades_joint` recipe);
* ``cifar``: the ResNet-18 at width 0.25 of `cifar10_adaptive` (3×32×32), the U-Net at width 0.5, batch 32;
  and the same with rank-4 low-rank deltas on every layer of the target (``cifar+lora4``).

Also the inference time per image of the defended CIFAR-10 model (``--inference``): the bare target, ID+FR (the
Algorithm-1 defence's architecture), ID+FR with rank-4 deltas in the target, and the deltas alone, eval mode, batches
of 100, float32 (without gradients each delta is folded into its layer's weight: one convolution per layer).
``--settings ''`` measures the inference only (-> inference.{json,md} beside speed.{json,md}).

Untrained networks and generated images (the time of a step does not depend on the weights); the modes alternate,
each timed ``--repeats`` times after a warm-up step, and the fastest is kept. Accuracy is not measured here: the
validation screens in benchmarks/NOTES.md say whether bfloat16 keeps it.

    python benchmarks/adaptive_speed.py                 # -> benchmarks/results/adaptive_speed/speed.{json,md}
"""
from __future__ import annotations

import argparse
import copy
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

from art_idfr import FeatureRestorer, IDFRDenoiser, InnerRestorer  # noqa: E402
from art_idfr._utils import cpu_has_native_bf16  # noqa: E402
from art_idfr.experiments.evaluation.defences import wrap_model  # noqa: E402
from art_idfr.experiments.models import make_model  # noqa: E402
from art_idfr.training.adaptive import AdaptiveDenoiserTrainer  # noqa: E402
from art_idfr.training.adaptive_run import _AdaptiveRun  # noqa: E402

SETTINGS = {  # name: (input shape, target, width, batch, FR joint, inner spec)
    "fashion": ((1, 28, 28), "small_cnn", 1.0, 16, True, None),
    "cifar": ((3, 32, 32), "resnet18_cifar", 0.25, 32, False, None),
    "cifar+lora4": ((3, 32, 32), "resnet18_cifar", 0.25, 32, False, 4),
}
MODES = {"float32": {}, "bf16": {"autocast": "bf16"}, "bf16+channels_last": {"autocast": "bf16", "channels_last": True}}


def build(name: str, mode: dict):
    """A trainer for one setting and mode, and one batch of its inputs."""
    shape, model_name, width, batch, joint, rank = SETTINGS[name]
    torch.manual_seed(0)
    target = wrap_model(make_model(model_name, 10, shape, width=width).eval(), shape, 10, "cpu")
    den = IDFRDenoiser(input_shape=shape, width=0.5, device_type="cpu")
    fr = None
    if joint:
        fr = FeatureRestorer(device_type="cpu")
        fr.build(_embedding_dim(target, shape))
        fr.mark_fitted({"algorithm": "speed"})
    inner = None if rank is None else InnerRestorer(shape, rank=rank, device_type="cpu").build(target.model)
    trainer = AdaptiveDenoiserTrainer(target, den, fr, inner=inner, train_restorer=joint, eps=8 / 255, max_iter=5,
                                      trades_beta=6.0, identity_weight=0.0, fixed_weight=0.0, batch_size=batch,
                                      learning_rate=1e-3, **mode)
    x = torch.rand(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    return trainer, x, y


def _embedding_dim(target, shape) -> int:
    from art_idfr.embedding import embedding_of

    h, _ = embedding_of(target, torch.zeros(1, *shape))
    return int(h.shape[1])


def time_step(trainer, x, y, repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` optimizer steps (inner attack + update), after one warm-up step."""
    run = _AdaptiveRun(trainer, None)
    run.optimizer = torch.optim.Adam([p for n in run.trained for p in n.parameters()], lr=1e-3)
    run.scheduler = torch.optim.lr_scheduler.LambdaLR(run.optimizer, lambda _: 1.0)
    run.ddp_net, run.ema, run.kept = trainer.denoiser.network, None, None
    if trainer.channels_last:
        trainer.denoiser.network.to(memory_format=torch.channels_last)
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        run.train_step(x, y, None, None, None, len(x), trainer.eps)
        times.append(time.perf_counter() - t0)
    return min(times[1:])


def inference_times(repeats: int) -> dict:
    """Seconds per image of each defended CIFAR-10 model (module docstring), the fastest of ``repeats`` passes."""
    from art_idfr import defend

    shape = (3, 32, 32)
    torch.manual_seed(0)
    target = wrap_model(make_model("resnet18_cifar", 10, shape, width=0.25).eval(), shape, 10, "cpu")
    den = IDFRDenoiser(input_shape=shape, width=0.5, device_type="cpu")
    den.mark_fitted({"algorithm": "speed"})
    fr = FeatureRestorer(device_type="cpu")
    fr.build(_embedding_dim(target, shape))
    fr.mark_fitted({"algorithm": "speed"})
    inner = InnerRestorer(shape, rank=4, device_type="cpu").build(target.model)
    hooked = copy.deepcopy(inner)
    hooked.fold_at_inference = False  # the deltas as hooks (two extra convolutions per layer), for comparison
    models = {"target": target, "ID+FR": defend(target, den, fr), "ID+FR+lora4": defend(target, den, fr, inner=inner),
              "lora4": defend(target, inner=inner), "lora4 unfolded": defend(target, inner=hooked)}
    x = np.random.default_rng(0).random((100, *shape), dtype=np.float32)
    out = {}
    for name, clf in models.items():
        clf.predict(x, batch_size=100)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            clf.predict(x, batch_size=100)
            times.append(time.perf_counter() - t0)
        out[name] = round(min(times) / len(x) * 1000, 3)
    print(json.dumps({"inference ms/image": out}), flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--settings", default=",".join(SETTINGS), help="training-step settings ('' = none: inference only)")
    p.add_argument("--stem", default=None, help="file name of the results (default speed, or inference with "
                                                 "--settings ''): another CPU's table beside the committed one")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    inference = inference_times(a.repeats)
    rows = []
    for name in filter(None, a.settings.split(",")):
        times = {mode: time_step(*build(name, kw), a.repeats) for mode, kw in MODES.items()}
        row = {"setting": name, **{f"{m} s/step": round(t, 3) for m, t in times.items()},
               **{f"{m} speed-up": round(times["float32"] / t, 2) for m, t in times.items() if m != "float32"}}
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = os.path.join(HERE, "results", "adaptive_speed")
    os.makedirs(out, exist_ok=True)
    meta = {"device": f"cpu, {a.threads} thread(s), {os.cpu_count()} cores, {platform.machine()}, "
                      f"{platform.processor() or 'unknown'}, native bfloat16 (AVX-512 BF16 / AMX): "
                      f"{'yes' if cpu_has_native_bf16() else 'no'}", "torch": torch.__version__,
            "load_average_at_end": os.getloadavg(), "seed": 0, "data": "generated (uniform images, random labels)",
            "command": "python " + " ".join(shlex.quote(s) for s in ["benchmarks/adaptive_speed.py", *sys.argv[1:]])}
    stem = a.stem or ("speed" if rows else "inference")  # inference-only keeps the committed training-step table
    with open(os.path.join(out, f"{stem}.json"), "w") as f:
        json.dump({**meta, "rows": rows, "inference_ms_per_image": inference}, f, indent=2)
    with open(os.path.join(out, f"{stem}.md"), "w") as f:
        title = "Adaptive training step: float32 vs bfloat16 autocast vs + channels-last" if rows else \
            "Inference of the defended CIFAR-10 model"
        f.write(f"# {title}\n\n"
                f"Command: `{meta['command']}`; device: {meta['device']}; torch {meta['torch']}; load average at "
                f"the end {tuple(round(v, 2) for v in meta['load_average_at_end'])} (other jobs were running); "
                f"{meta['data']}; fastest of {a.repeats} steps after a warm-up.\n\n")
        keys = list(rows[0]) if rows else []
        if rows:
            f.write("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n")
        for row in rows:
            f.write("| " + " | ".join(str(row[k]) for k in keys) + " |\n")
        f.write("\nInference, CIFAR-10 ResNet-18 at width 0.25, float32, batches of 100, ms per image (fastest of "
                f"{a.repeats}):\n\n| " + " | ".join(inference) + " |\n|" + "---|" * len(inference) + "\n| "
                + " | ".join(str(v) for v in inference.values()) + " |\n")
    return 0


if __name__ == "__main__":
    np.random.seed(0)
    sys.exit(main())
