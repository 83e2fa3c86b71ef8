"""
The named presets of :meth:`EvalConfig.preset <art_idfr.experiments.evaluation.config.EvalConfig.preset>`: ``cpu``
(every dataclass default: ``art-idfr demo --full`` and the CPU benchmarks), ``paper`` (the paper's protocol at full
scale, a GPU job), ``tiny`` (smoke tests) and ``demo`` (the default of ``art-idfr demo``: the ``cpu`` run at a
smaller scale, a few minutes on 2 CPU cores), each a dictionary of the values that differ from the defaults
(top-level fields and sub-config dictionaries). :mod:`~art_idfr.experiments.evaluation.config` re-exports
:data:`PRESETS`.
"""
from __future__ import annotations

from typing import Any, Dict

from art_idfr.experiments.evaluation.names import DEFENCES

#: The ``demo`` preset: what differs from ``cpu`` (printed by ``art-idfr demo``, see ``cli_commands._scale_line``):
#: fewer images (validation, ID / FR / adaptive training, evaluation, white-box, query), one or two epochs less for the
#: ID, FR and adaptive ID, Square with 100 queries in the gradient-masking check; the same models, threat models,
#: attacks, budgets, attack steps and checks. TotalVarMin is left out: its per-image SciPy solves under BPDA + EOT 4
#: took ~330 s of one core in the white-box table alone at n = 20 (benchmarks/results/demo_time).
DEMO: Dict[str, Any] = {
    "val_n": 200,
    "fit_n": 600,
    "id": {"nb_epochs": 2},
    "fr": {"nb_epochs": 1},
    "adaptive": {"nb_epochs": 1},
    "adaptive_fit_n": 300,
    "defences": tuple(d for d in DEFENCES if d != "tvm"),
    "eval_n": 200,
    "whitebox_n": 20,
    "query_n": 20,
    "sanity_square_iter": 100,
}

#: Preset values (every other field keeps its dataclass default, which is the ``cpu`` preset).
PRESETS: Dict[str, Dict[str, Any]] = {
    "cpu": {},
    "paper": {
        "dataset": "cifar10",
        "val_n": 2000,
        "target": {"model": "resnet18_cifar", "width": 1.0, "epochs": 60},
        "surrogate": {"model": "vgg16_bn_cifar", "epochs": 40},
        "id": {"width": 1.0, "nb_epochs": 100, "learning_rate": 1e-3, "gaussian_sigma": 0.05},
        "fr": {"nb_epochs": 80},
        "fit_n": None,
        "fast_at": {"nb_epochs": 15},
        "eps": (4 / 255, 8 / 255, 16 / 255),
        "eval_n": 10000,
        "whitebox_n": 1000,
        "query_n": 500,
        "query_iter": 1000,
        "attack_batch_size": 256,
    },
    "tiny": {
        "train_size": 2000,
        "test_size": 100,
        "val_n": 100,
        "target": {"width": 0.25, "epochs": 3},
        "surrogate": {"epochs": 2},
        "id": {"width": 0.25, "nb_epochs": 1},
        "fr": {"nb_epochs": 1},
        "fit_n": 100,
        "idfr_attacks": ("fgsm",),
        "fast_at": {"nb_epochs": 1},
        "adaptive": {"nb_epochs": 1, "max_iter": 2},
        "sanity_square_iter": 20,
        "autoattack_square_iter": 20,
        "tvm_max_iter": 2,
        "eval_n": 40,
        "whitebox_n": 16,
        "query_n": 8,
        "query_iter": 5,
        "attack_iter": 3,
    },
    # `art-idfr demo` without --full: the cpu run (same data, models, defences, threat models, attacks, budgets and
    # checks) at a smaller scale, so that a first run takes minutes on 2 CPU cores (benchmarks/results/demo_time)
    "demo": DEMO,
}
