"""
The run's data and process set-up: :func:`set_up_cpu` (:func:`limit_threads`, torch and BLAS thread counts, and
:func:`flush_denormals`), :class:`PreparedData` (the
dataset with the train / validation split every training step of a run uses), :func:`prepare_data` (load and split)
and :func:`data_settings` (the config fields that determine the split, stored with every model).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, Tuple

import numpy as np
import torch

from art_idfr.experiments.evaluation.config import EvalConfig
from art_idfr.training import distributed as ddp

logger = logging.getLogger(__name__)


_THREAD_LIMITS: list = []


def limit_threads(n: int) -> None:
    """
    Use ``n`` threads in torch and one in the BLAS pools of NumPy and SciPy (via ``threadpoolctl``), for the rest of
    the process. The NumPy/SciPy work here is many tiny arrays (ART's ``TotalVarMin`` solves one small L-BFGS-B
    problem per image), where BLAS threads only add overhead: the MNIST-5k demo's TotalVarMin cells took ~10% longer
    with two BLAS threads than with one on 2 idle cores, and on 2 busy cores oversubscribed pools made ``TotalVarMin``
    25x and a 28x28 U-Net forward 70x slower.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}.")
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        _THREAD_LIMITS.append(threadpool_limits(limits=1, user_api="blas"))
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn, a dependency
        logger.warning("threadpoolctl is not installed: NumPy/SciPy BLAS threads are not limited.")


def flush_denormals() -> None:
    """
    Flush denormal floats to zero in torch's CPU kernels, for the rest of the process. A network whose activations
    or gradients underflow computes on denormals at a fraction of the normal speed: a ComDefend fit that had
    collapsed took 7.5 s per Fashion-MNIST training step instead of 1.0 s on one thread here, and flushing brought it
    back to 1.0 s (healthy networks: unchanged). The values flushed are below 1.2e-38, far under any weight or pixel
    resolution that changes a prediction.
    """
    torch.set_flush_denormal(True)


def set_up_cpu(threads: int) -> None:
    """The process's CPU set-up for a run: :func:`limit_threads` (``threads``) and :func:`flush_denormals`."""
    limit_threads(threads)
    flush_denormals()


@dataclass
class PreparedData:
    """The dataset plus the train / validation split used by every training step of a run."""

    dataset: Any
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return int(self.dataset.num_classes)

    @property
    def x_test(self) -> np.ndarray:
        return self.dataset.x_test

    @property
    def y_test(self) -> np.ndarray:
        return self.dataset.y_test


def prepare_data(config: EvalConfig, verbose: bool = True) -> PreparedData:
    """
    Load ``config.dataset`` (errors from :func:`art_idfr.experiments.data.load_dataset` propagate: unknown name, missing files,
    no ``train/`` and ``test/`` folders) and split ``config.val_n`` validation images off the training set.
    """
    from art_idfr.experiments.data import load_dataset, train_val_split

    later = bool(config.download) and not ddp.is_main_process()  # distributed: rank 0 downloads, then the others
    if later:
        ddp.barrier()
    ds = load_dataset(config.dataset, root=config.data_root, train_size=config.train_size,
                      test_size=config.test_size, seed=config.seed, download=config.download, verbose=verbose,
                      image_size=config.image_size)
    if config.download and ddp.is_main_process():
        ddp.barrier()
    if config.val_n >= len(ds.y_train):
        raise ValueError(f"val_n={config.val_n} leaves no training images ({len(ds.y_train)} in {ds.name}).")
    x_tr, y_tr, x_val, y_val = train_val_split(ds.x_train, ds.y_train, val_size=config.val_n, seed=config.seed)
    return PreparedData(ds, x_tr, y_tr, x_val, y_val)


def data_settings(config: EvalConfig) -> Dict[str, Any]:
    """The config fields that determine the data split (stored with every model, reused by ``fit`` / ``evaluate``)."""
    return {"dataset": config.dataset, "data_root": config.data_root, "train_size": config.train_size,
            "test_size": config.test_size, "val_n": config.val_n, "seed": config.seed,
            "image_size": config.image_size}
