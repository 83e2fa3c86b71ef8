"""
What does freezing the target cost? The adaptive recipe of an ID screen applied to the *target itself* (no ID, no FR,
every weight of the target trained), on the same images, batch, steps and validation measure as the screen, so the
two differ only in what is trained. A diagnostic for "what limits it" in benchmarks/NOTES.md (issue: adaptive-robust
IDFR); never the test split.

    python benchmarks/unfrozen_bound.py fashion_mnist --nb-epochs 3                 # vs t6_b16_12k_ep3_frjoint_b20
    python benchmarks/unfrozen_bound.py cifar10 --eps 8/255 --learning-rate 1e-3 --adversarial-weight 0
    python benchmarks/unfrozen_bound.py cifar10 --adversarial-weight 0 --eps-warmup 0.3 --trained lora --rank 4

``--trained target`` (default) trains every weight of the target (the bound); ``--trained lora|adapter`` keeps the
target's tensors and BatchNorm statistics frozen and trains only an :class:`art_idfr.InnerRestorer` of that kind
inside it (rank ``--rank`` / width ``--width``, default places), with the same recipe, images and steps: the
curve of robustness against added parameters whose end is the bound (issue 41). ``--bf16``: the PGD and the update
under bfloat16 autocast.

Per batch, with f the target being trained and f0 a frozen copy of it at the start (the adaptive trainer's
``trades_reference="target"``): x' = PGD-``max_iter`` with a uniform random start in the ε-ball (step ``eps_step``,
default 2.5ε/steps as the trainer's ``eps_step=None``), crafted in eval mode, then in train mode
``w_adv · CE(f(x'), y) + w_clean · CE(f(x), y) + β · KL(f0(x) ‖ f(x'))``; Adam with the trainer's one-cycle
schedule (15 % warm-up); ε warm-up over the first ``--eps-warmup`` of the run as the trainer's. Settings:

* ``fashion_mnist``: `tune_adaptive.py`'s cached small-CNN target; 12,000 training images (the screens' subset);
  measured as `tune_adaptive.py` measures a screen (validation images 1000-1499: clean, ART APGD-CE + APGD-DLR at
  8/255 and 16/255 without Square, black-box FGSM/BIM from the surrogate); one line appended to
  benchmarks/results/tune_adaptive/tune.jsonl.
* ``cifar10``: `cifar10_adaptive.py`'s cached ResNet-18 target; 12,000 images (the screens' subset); per epoch, clean
  and PGD-20 at ε (step 2.5ε/20, random start) on validation images 0-499 as a screen's history; one line appended to
  benchmarks/results/tune_adaptive/cifar10_adaptive.jsonl.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shlex
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)


def pgd(model, x, y, eps, steps, step, generator):
    """L∞ PGD with a uniform random start in the ε-ball on CE (model in eval mode while crafting), images in [0, 1]."""
    x_adv = (x + eps * (torch.rand(x.shape, generator=generator) * 2 - 1)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + step * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def autocast(a):
    """bfloat16 autocast on the CPU with ``--bf16``, else nothing."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(getattr(a, "bf16", False)))


class FrozenTargetWithInner(torch.nn.Module):
    """The frozen target with an InnerRestorer's parts in it; ``train()`` reaches the parts only (BN stays eval)."""

    def __init__(self, model, inner):
        super().__init__()
        from art_idfr.defended import InnerRestoredModel

        for p in model.parameters():
            p.requires_grad_(False)
        self.wrapped = InnerRestoredModel(model.eval(), inner)

    def train(self, mode: bool = True):
        super().train(mode)
        self.wrapped.model.eval()
        return self

    def forward(self, x):
        return self.wrapped(x)


class TargetWithEvalNorms(torch.nn.Module):
    """The target, every weight trained, but its BatchNorms in eval mode throughout (running statistics frozen, the
    normalisation a frozen-target restorer sees): ``--eval-norms``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def forward(self, x):
        return self.model(x)


def trainable(model, a):
    """What ``--trained`` trains: the target itself, or an InnerRestorer inside the frozen target."""
    if a.trained == "target":
        n = sum(p.numel() for p in model.parameters())
        return (TargetWithEvalNorms(model) if a.eval_norms else model), {"trained_parameters": n}
    from art_idfr import InnerRestorer

    inner = InnerRestorer(tuple(a.input_shape), kind=a.trained, rank=a.rank, width=a.width, ranks=a.ranks,
                          norm_affine=a.norm_affine, device_type="cpu").build(model)
    n_target = sum(p.numel() for p in model.parameters())
    return FrozenTargetWithInner(model, inner), {
        "trained_parameters": inner.num_parameters(), "target_parameters": n_target,
        "added_fraction": round(inner.num_parameters() / n_target, 4), "added_macs": inner.macs(),
        "inner": inner.get_config()}


def trades(adv, clean, y, p0, a):
    """The adaptive trainer's terms on the AEs: w_adv · CE(f(x'), y) + β · KL(f0(x) ‖ f(x'))."""
    return (a.adversarial_weight * F.cross_entropy(adv, y)
            + a.trades_beta * F.kl_div(F.log_softmax(adv, dim=1), p0, reduction="batchmean"))


def mart(adv, clean, y, p0, a):
    """
    MART (Wang et al. 2020) with the frozen start's clean prediction as the KL's reference: the boosted CE
    w_adv · (CE(f(x'), y) − log(1 − max_{k≠y} f_k(x'))) + β · mean[KL(f0(x) ‖ f(x')) · (1 − f_y(x))], the weight
    from the trained model's clean prediction (no gradient through it).
    """
    p_adv = F.softmax(adv, dim=1)
    others = p_adv.masked_fill(F.one_hot(y, p_adv.shape[1]).bool(), 0.0)
    boosted = F.cross_entropy(adv, y) - torch.log(1.0001 - others.max(1).values).mean()
    kl = F.kl_div(F.log_softmax(adv, dim=1), p0, reduction="none").sum(1)
    weight = 1.0 - F.softmax(clean, dim=1).gather(1, y[:, None]).squeeze(1).detach()
    return a.adversarial_weight * boosted + a.trades_beta * (kl * weight).mean()


def train(model, x, y, a, log):
    """The recipe of the module docstring on ``model`` (in place); returns the per-epoch history."""
    reference = copy.deepcopy(model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(a.seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=a.learning_rate)
    nb = math.ceil(len(x) / a.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.learning_rate, total_steps=a.nb_epochs * nb,
                                                pct_start=0.15)
    step_frac = (a.eps_step or 2.5 * a.eps / a.max_iter) / a.eps
    x_t, y_t, history = torch.as_tensor(x), torch.as_tensor(y), []
    for epoch in range(a.nb_epochs):
        order, hits, loss_sum = torch.randperm(len(x), generator=gen), 0, 0.0
        for i in range(nb):
            idx = order[i * a.batch_size : (i + 1) * a.batch_size]
            xb, yb = x_t[idx], y_t[idx]
            progress = (epoch + i / nb) / a.nb_epochs
            eps = a.eps if progress >= a.eps_warmup else a.eps * max(progress / a.eps_warmup, 1e-3)
            model.eval()
            with autocast(a):
                x_adv = pgd(model, xb, yb, eps, a.max_iter, step_frac * eps, gen)
            model.train()
            with autocast(a):
                logits = model(torch.cat([x_adv, xb])).float()
            adv, clean = logits[: len(xb)], logits[len(xb) :]
            with torch.no_grad(), autocast(a):
                p0 = F.softmax(reference(xb).float(), dim=1)
            terms = mart if a.loss == "mart" else trades
            loss = a.clean_weight * F.cross_entropy(clean, yb) + terms(adv, clean, yb, p0, a)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            hits += (adv.argmax(1) == yb).sum().item()
            loss_sum += loss.item() * len(xb)
        model.eval()
        row = {"epoch": epoch + 1, "loss": loss_sum / len(x), "train_adv_acc": hits / len(x)} | log(model)
        print(json.dumps(row), flush=True)
        history.append(row)
    return history


def validation_pgd20(model, x, y, eps, seed=0):
    """Clean and PGD-20 (step 2.5ε/20, random start) accuracy, as the adaptive trainer's validation."""
    gen, clean, adv = torch.Generator().manual_seed(seed), 0, 0
    for s in range(0, len(x), 100):
        xb, yb = torch.as_tensor(x[s : s + 100]), torch.as_tensor(y[s : s + 100])
        with torch.no_grad():
            clean += (model(xb).argmax(1) == yb).sum().item()
        x_adv = pgd(model, xb, yb, eps, 20, 2.5 * eps / 20, gen)
        with torch.no_grad():
            adv += (model(x_adv).argmax(1) == yb).sum().item()
    return {"val_acc": clean / len(x), "val_adv_acc": adv / len(x)}


def fashion_mnist(a):
    """The Fashion-MNIST diagnostic, measured as a `tune_adaptive.py` screen."""
    import tune_adaptive as ta
    from art_idfr.experiments.attacks import make_attack
    from art_idfr.experiments.data import stratified_subset_indices
    from art_idfr.experiments.evaluation.defences import wrap_model
    from tune_id import _cached

    cfg, data, target_model, sur_model = ta.setup(a.threads)
    idx = stratified_subset_indices(data.y_train, a.fit_n, seed=1)  # tune_adaptive.fit_adaptive's subset
    a.input_shape = data.input_shape
    model, sizes = trainable(copy.deepcopy(target_model).eval(), a)
    x_v, y_v = data.x_val[:300], data.y_val[:300]
    t0 = time.perf_counter()
    history = train(model, data.x_train[idx], data.y_train[idx], a, lambda m: validation_pgd20(m, x_v, y_v, a.eps))
    seconds = time.perf_counter() - t0
    x_m, y_m = data.x_val[1000:1500], data.y_val[1000:1500]
    surrogate = wrap_model(sur_model, data.input_shape, data.num_classes, "cpu")
    onehot = np.eye(data.num_classes, dtype=np.float32)[y_m]
    bb = {f"{n} {round(e * 255)}/255": _cached(os.path.join(ta.RUN_DIR, f"adaptive_bb_{n}_{e:.4f}.npz"),
                                               lambda: make_attack(n, surrogate, e, seed=0).generate(x_m, onehot))
          for n, e in ta.BB}  # the screens' cached black-box AEs
    clf = wrap_model(model, data.input_shape, data.num_classes, "cpu")
    res = ta.measure({"target fine-tuned (unfrozen)": clf}, x_m, y_m, bb, square_iter=0)
    return "tune.jsonl", {"dataset": cfg.dataset, "val_n": len(y_m), **sizes, **res}, history, seconds


def cifar10(a):
    """The CIFAR-10 diagnostic, measured as a `screen_adaptive.py` screen's history."""
    from _run import cached_setup
    from art_idfr.experiments.data import stratified_subset_indices

    _, cfg, data, model, _, _ = cached_setup("cifar10_adaptive", ["--threads", str(a.threads)])
    idx = stratified_subset_indices(data.y_train, a.fit_n, seed=cfg.seed + 1)  # pipeline.fit_adaptive's subset
    a.input_shape = data.input_shape
    model, sizes = trainable(copy.deepcopy(model).eval(), a)
    x_v, y_v = data.x_val[:500], data.y_val[:500]
    start = validation_pgd20(model.eval(), x_v, y_v, a.eps)
    print(json.dumps({"epoch": 0, **start}), flush=True)
    t0 = time.perf_counter()
    history = train(model, data.x_train[idx], data.y_train[idx], a, lambda m: validation_pgd20(m, x_v, y_v, a.eps))
    return "cifar10_adaptive.jsonl", {"dataset": cfg.dataset, **sizes,
                                      "validation": "images 0-499 of the benchmark's validation split"}, \
        [{"epoch": 0, **start}, *history], time.perf_counter() - t0


def main() -> int:
    from art_idfr.experiments.evaluation.config import parse_eps
    from art_idfr.experiments.evaluation.knobs import parse_inner_ranks
    from art_idfr.experiments.evaluation.pipeline import set_up_cpu

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("setting", choices=("fashion_mnist", "cifar10"))
    p.add_argument("--name", help="the JSONL row's name (default: unfrozen_<setting>_<settings>)")
    p.add_argument("--eps", type=parse_eps, default=None, help="training ε (default 16/255 Fashion, 8/255 CIFAR)")
    p.add_argument("--eps-step", type=parse_eps, default=None)
    p.add_argument("--max-iter", type=int, default=5)
    p.add_argument("--eps-warmup", type=float, default=0.0)
    p.add_argument("--trades-beta", type=float, default=6.0)
    p.add_argument("--adversarial-weight", type=float, default=1.0)
    p.add_argument("--clean-weight", type=float, default=1.0)
    p.add_argument("--loss", choices=("trades", "mart"), default="trades",
                   help="the terms on the AEs: the adaptive trainer's (trades) or MART's")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--nb-epochs", type=int, default=3)
    p.add_argument("--fit-n", type=int, default=12000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--trained", choices=("target", "lora", "adapter"), default="target",
                   help="what trains: the target itself (the bound) or an InnerRestorer in the frozen target")
    p.add_argument("--rank", type=int, default=4, help="--trained lora: rank of every delta")
    p.add_argument("--ranks", type=parse_inner_ranks, default=None, metavar="NAME=R,...",
                   help="--trained lora: per-layer ranks overriding --rank (module names of the target)")
    p.add_argument("--width", type=float, default=0.25, help="--trained adapter: bottleneck width (fraction)")
    p.add_argument("--norm-affine", action="store_true",
                   help="--trained lora|adapter: also a scale and shift delta on every BatchNorm (norm_affine)")
    p.add_argument("--eval-norms", action="store_true",
                   help="--trained target: its BatchNorms stay in eval mode during the fit (running statistics frozen)")
    p.add_argument("--bf16", action="store_true", help="PGD and update under bfloat16 autocast")
    a = p.parse_args()
    a.eps = a.eps if a.eps is not None else (16 / 255 if a.setting == "fashion_mnist" else 8 / 255)
    set_up_cpu(a.threads)
    torch.manual_seed(a.seed)
    jsonl, measured, history, seconds = (fashion_mnist if a.setting == "fashion_mnist" else cifar10)(a)
    kind = "" if a.trained == "target" else (f"_lora{a.rank}" if a.trained == "lora" else f"_adapter{a.width:g}")
    kind += "_ranks" if a.ranks and a.trained == "lora" else ""
    kind += "_bn" if a.norm_affine and a.trained != "target" else ""
    kind += "_evalnorms" if a.eval_norms and a.trained == "target" else ""
    name = a.name or (f"{'unfrozen' if a.trained == 'target' else 'inner'}{kind}_{a.setting}_eps{round(a.eps * 255)}_b{a.batch_size}_lr{a.learning_rate:g}"
                      f"_adv{a.adversarial_weight:g}_{a.fit_n // 1000}k_ep{a.nb_epochs}"
                      + ("" if a.loss == "trades" else f"_{a.loss}")
                      + ("" if a.clean_weight == 1 else f"_clean{a.clean_weight:g}") + ("_bf16" if a.bf16 else ""))
    settings = {k: v for k, v in vars(a).items() if k not in ("setting", "name", "threads", "input_shape")}
    what = ("the target itself (no ID, no FR): the frozen-target bound diagnostic" if a.trained == "target" else
            f"an InnerRestorer ({a.trained}) inside the frozen target, nothing else (issue 41's curve)")
    row = {"name": name, "trained": what,
           "settings": settings, **measured, "history": history, "fit_seconds": round(seconds, 1),
           "seed": a.seed, "torch": torch.__version__,
           "device": f"cpu, {a.threads} thread(s), {os.cpu_count()} cores, {platform.machine()}",
           "command": "python " + " ".join(shlex.quote(s) for s in ["benchmarks/unfrozen_bound.py", *sys.argv[1:]])}
    with open(os.path.join(HERE, "results", "tune_adaptive", jsonl), "a") as f:
        f.write(json.dumps(row, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
