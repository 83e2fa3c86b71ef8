"""The committed benchmark scripts' flag lists parse into valid configurations (a typo fails here, not hours into a run)."""
import os
import sys

import pytest

from art_idfr.experiments.cli import _config, build_parser

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def _demo_args(module: str):
    sys.path.insert(0, BENCHMARKS)
    try:
        mod = __import__(module)
    finally:
        sys.path.remove(BENCHMARKS)
    if module == "cifar10_paper":
        return [*mod.COMMON, "--model", "resnet18_cifar", "--surrogate-model", "vgg16_bn_cifar"]
    return mod.ARGS


@pytest.mark.parametrize("module", ["fashion_mnist_cpu", "fashion_mnist_adaptive", "cifar10_cpu", "cifar10_adaptive", "cifar10_paper"])
def test_benchmark_flags_build_a_config(module):
    args = build_parser().parse_args(["demo", *_demo_args(module), "--out", "unused"])
    cfg = _config(args)
    assert "idfr_adaptive" in cfg.defences and "autoattack" in cfg.attacks
    # the adaptive recipe of the fourth tuning session (benchmarks/NOTES.md) reaches the trainer's keywords
    kw = cfg.adaptive.kwargs()
    assert (kw["trades_beta"], kw["identity_weight"], kw["fixed_weight"]) == (6.0, 0.0, 0.0)
    # ... and fashion_mnist_adaptive's later one (fifth session): every training image at batch 16,
    # twice since the eleventh session
    assert kw["batch_size"] == (16 if module == "fashion_mnist_adaptive" else 32)
    if module == "fashion_mnist_adaptive":
        assert (kw["nb_epochs"], cfg.adaptive_fit_n) == (2, 60000)
        # ... with the FR trained jointly (sixth session)
        assert kw["train_restorer"] is True


def test_adaptive_benchmark_trains_the_same_models_as_fashion_mnist_cpu():
    """fashion_mnist_adaptive reuses fashion_mnist_cpu's cached models: every training flag but the adaptive recipe
    must be shared."""
    cpu, adaptive = (_config(build_parser().parse_args(["demo", *_demo_args(m), "--out", "unused"]))
                     for m in ("fashion_mnist_cpu", "fashion_mnist_adaptive"))
    for sub in ("target", "surrogate", "id", "fr", "fast_at", "train"):
        assert getattr(cpu, sub) == getattr(adaptive, sub), sub
    assert (cpu.fit_n, cpu.idfr_eps) == (adaptive.fit_n, adaptive.idfr_eps)
    assert cpu.adaptive != adaptive.adaptive and cpu.adaptive.trades_beta == adaptive.adaptive.trades_beta
