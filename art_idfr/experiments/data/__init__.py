"""
Datasets for the IDFR experiments.

Every loader returns a :class:`Dataset` whose images are ``float32`` arrays in ``NCHW`` layout with values in
``[0, 1]`` and whose labels are ``int64`` class indices. Normalisation (mean / standard deviation) is deliberately
*not* applied here: it belongs to the model (see :class:`art_idfr.experiments.models.Normalize`), so that attacks and defences
work in pixel space.

The single entry point is :func:`load_dataset`::

    from art_idfr.experiments.data import load_dataset, train_val_split

    ds = load_dataset("mnist5k")                      # 4000 train / 1000 test, no download needed
    ds = load_dataset("cifar10_jpeg", train_size=5000, test_size=1000, seed=0)
    x_tr, y_tr, x_val, y_val = train_val_split(ds.x_train, ds.y_train, val_size=0.1, seed=0)
    print(ds.describe())

Subsets (``train_size`` / ``test_size``) and validation splits are stratified by class whenever possible and are
fully determined by ``seed``. Tune hyper-parameters on a validation split, never on the test split.

The package holds one module per job: :mod:`~art_idfr.experiments.data.dataset` (the :class:`Dataset` class, names,
shared helpers), :mod:`~art_idfr.experiments.data.splits` (stratified subsets and splits),
:mod:`~art_idfr.experiments.data.torchvision_sets`, :mod:`~art_idfr.experiments.data.idx`,
:mod:`~art_idfr.experiments.data.folders` (ImageFolder trees, tarballs, the ``.npz`` cache) and
:mod:`~art_idfr.experiments.data.mnist5k` (one per source), and :mod:`~art_idfr.experiments.data.load`
(:func:`load_dataset`). The public names are re-exported here, so ``from art_idfr.experiments.data import ...``
works as before the split; private helpers are imported (or monkeypatched) from the module that defines them.
"""
from art_idfr.experiments.data.dataset import (  # noqa: F401  (re-exported)
    DATASET_NAMES,
    MNIST_CLASSES,
    Dataset,
    DatasetNotFoundError,
    default_cache_dir,
    default_data_root,
)
from art_idfr.experiments.data.folders import (  # noqa: F401  (re-exported)
    CROP_FRACTION,
    DEFAULT_CIFAR10_JPEG,
    HELD_OUT_FOLDERS,
    IMAGE_EXTENSIONS,
    load_image_folder,
    physical_memory,
)
from art_idfr.experiments.data.idx import (  # noqa: F401  (re-exported)
    DEFAULT_FASHION_MNIST_IDX_DIR,
    FASHION_MNIST_CLASSES,
    load_idx_dataset,
    read_idx,
)
from art_idfr.experiments.data.load import load_dataset
from art_idfr.experiments.data.mnist5k import MNIST5K_SPLIT_SEED  # noqa: F401  (re-exported)
from art_idfr.experiments.data.splits import stratified_subset_indices, train_val_split

__all__ = [
    "Dataset",
    "DatasetNotFoundError",
    "DATASET_NAMES",
    "DEFAULT_FASHION_MNIST_IDX_DIR",
    "DEFAULT_CIFAR10_JPEG",
    "load_dataset",
    "train_val_split",
    "stratified_subset_indices",
    "read_idx",
    "load_idx_dataset",
    "load_image_folder",
    "default_cache_dir",
    "default_data_root",
]
