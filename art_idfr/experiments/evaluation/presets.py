"""
The named presets of :meth:`EvalConfig.preset <art_idfr.experiments.evaluation.config.EvalConfig.preset>`: ``cpu``
(the README demo, every dataclass default), ``paper`` (the paper's protocol at full scale, a GPU job) and ``tiny``
(smoke tests), each a dictionary of the values that differ from the defaults (top-level fields and sub-config
dictionaries). :mod:`~art_idfr.experiments.evaluation.config` re-exports :data:`PRESETS`.
"""
from __future__ import annotations

from typing import Any, Dict

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
}
