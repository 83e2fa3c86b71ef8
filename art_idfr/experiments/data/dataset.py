"""
The in-memory :class:`Dataset` every loader of :mod:`art_idfr.experiments.data` returns (float32 NCHW images in
``[0, 1]``, int64 labels), the :class:`DatasetNotFoundError` raised when data are missing, the names
:func:`~art_idfr.experiments.data.load_dataset` accepts, and the small helpers the loaders share: the default cache and
data directories and the uint8 -> float32 NCHW conversion.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, Tuple

import numpy as np

MNIST_CLASSES = tuple(str(i) for i in range(10))

_TORCHVISION_NAMES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn")
#: All names accepted by :func:`load_dataset`.
DATASET_NAMES = _TORCHVISION_NAMES + ("fashion_mnist_idx", "imagefolder", "cifar10_jpeg", "mnist5k")


class DatasetNotFoundError(FileNotFoundError, ValueError):
    """
    Raised when the files of a dataset are missing. It is both a :class:`FileNotFoundError` and a
    :class:`ValueError`, and its message says how to obtain the data.
    """


@dataclass
class Dataset:
    """
    An image-classification dataset held in memory.

    :param name: Name of the dataset (as passed to :func:`load_dataset`).
    :param x_train: Training images, ``float32``, shape ``(N, C, H, W)``, values in ``[0, 1]``.
    :param y_train: Training labels, ``int64`` class indices, shape ``(N,)``.
    :param x_test: Test images, same format as ``x_train``.
    :param y_test: Test labels, same format as ``y_train``.
    :param class_names: Human-readable class names; ``class_names[k]`` is the name of label ``k``.
    :param meta: Free-form provenance information (source path, cache file, whether the cache was hit, ...).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: Tuple[str, ...]
    meta: Dict[str, object] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one image."""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def describe(self) -> str:
        """
        One-line human-readable summary: name, split sizes, image shape and number of classes.

        :return: The summary string.
        """
        c, h, w = self.input_shape
        text = (
            f"{self.name}: {len(self.x_train)} train / {len(self.x_test)} test images, "
            f"shape {c}x{h}x{w} (CxHxW), {self.num_classes} classes, float32 in [0, 1]"
        )
        note = self.meta.get("note")
        if note:
            text += f" [{note}]"
        return text

    def __repr__(self) -> str:
        return f"Dataset({self.describe()})"



def default_cache_dir() -> str:
    """Cache directory for decoded datasets: ``$ART_IDFR_CACHE`` or ``~/.cache/art_idfr``."""
    return os.environ.get("ART_IDFR_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "art_idfr")


def default_data_root() -> str:
    """Download / lookup directory for torchvision datasets: ``$ART_IDFR_DATA`` or ``<cache dir>/torchvision``."""
    return os.environ.get("ART_IDFR_DATA") or os.path.join(default_cache_dir(), "torchvision")


def _to_float_nchw(images: np.ndarray, layout: str) -> np.ndarray:
    """uint8 images in ``NHW``, ``NHWC`` or ``NCHW`` layout -> float32 NCHW in [0, 1]."""
    images = np.asarray(images)
    if layout == "NHW":
        images = images[:, None, :, :]
    elif layout == "NHWC":
        images = images.transpose(0, 3, 1, 2)
    elif layout != "NCHW":  # pragma: no cover - internal misuse
        raise ValueError(f"Unknown layout {layout!r}.")
    out = np.empty(images.shape, dtype=np.float32)
    np.divide(images, 255.0, out=out, dtype=np.float32, casting="unsafe")
    return out


def _labels(y: Iterable) -> np.ndarray:
    return np.asarray(y, dtype=np.int64).reshape(-1)
