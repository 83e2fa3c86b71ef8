"""
MNIST-style IDX files (``fashion_mnist_idx``): :func:`read_idx` parses one (optionally gzip-compressed) file and
:func:`load_idx_dataset` loads the four train / test image and label files of a directory, by default where
``apt-get install -y dataset-fashion-mnist`` puts Fashion-MNIST.
"""
from __future__ import annotations

import gzip
import os
import struct
from typing import Sequence

import numpy as np

from art_idfr.experiments.data.dataset import Dataset, DatasetNotFoundError, _labels, _to_float_nchw

#: Where ``apt-get install -y dataset-fashion-mnist`` puts the four IDX gz files.
DEFAULT_FASHION_MNIST_IDX_DIR = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte"),
}

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
    """
    Read one IDX file (optionally gzip-compressed, detected by the ``.gz`` suffix).

    :param path: Path of the file.
    :return: The array stored in the file, in native byte order.
    :raises ValueError: If the header is malformed or the payload has the wrong length.
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(f"{path}: file too short to be an IDX file.")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex()}).")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header.")
    shape = struct.unpack(">" + "I" * ndim, data[4:header])
    dtype = np.dtype(_IDX_DTYPES[dtype_code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: IDX payload has {len(data) - header} bytes, expected {expected} for shape {shape}."
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx_file(root: str, key: str) -> str:
    for candidate in _IDX_FILES[key]:
        path = os.path.join(root, candidate)
        if os.path.isfile(path):
            return path
    raise DatasetNotFoundError(
        f"Missing IDX file {_IDX_FILES[key][0]!r} (or its uncompressed version) in {root!r}. Expected the four "
        f"files {[v[0] for v in _IDX_FILES.values()]}; for Fashion-MNIST run `apt-get install -y "
        f"dataset-fashion-mnist`, which puts them in {DEFAULT_FASHION_MNIST_IDX_DIR}."
    )


def load_idx_dataset(
    root: str, name: str = "fashion_mnist_idx", class_names: Sequence[str] = FASHION_MNIST_CLASSES
) -> Dataset:
    """
    Load an MNIST-style dataset from the four IDX files in ``root``.

    :param root: Directory holding ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
                 ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (or the uncompressed files).
    :param name: Name stored in the returned dataset.
    :param class_names: Class names (default: Fashion-MNIST).
    :return: The dataset, images of shape ``(N, 1, H, W)``.
    """
    if not os.path.isdir(root):
        raise DatasetNotFoundError(
            f"IDX directory {root!r} does not exist. For Fashion-MNIST run `apt-get install -y "
            f"dataset-fashion-mnist` (files go to {DEFAULT_FASHION_MNIST_IDX_DIR})."
        )
    arrays = {key: read_idx(_find_idx_file(root, key)) for key in _IDX_FILES}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{root}: inconsistent {split} IDX files: images {images.shape}, labels {labels.shape}."
            )
        if images.dtype != np.uint8:
            raise ValueError(f"{root}: expected uint8 {split} images, got {images.dtype}.")
    n_classes = int(max(arrays["train_labels"].max(), arrays["test_labels"].max())) + 1
    if len(class_names) < n_classes:
        class_names = tuple(str(i) for i in range(n_classes))
    return Dataset(
        name,
        _to_float_nchw(arrays["train_images"], "NHW"),
        _labels(arrays["train_labels"]),
        _to_float_nchw(arrays["test_images"], "NHW"),
        _labels(arrays["test_labels"]),
        tuple(class_names),
        meta={"root": os.path.abspath(root)},
    )
