"""
ImageFolder trees (``imagefolder``, ``cifar10_jpeg``): ``[<top folder>/]{train,test or val}/<class>/<image>`` read
from a directory or streamed from a ``.tar`` / ``.tar.gz``, listed, subset (stratified, before decoding where
possible), decoded with PIL (optionally resized and centre-cropped to ``image_size``), and cached as uint8 ``.npz``
keyed by the source's path, size and modification time: :func:`load_image_folder`.
"""
from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import tarfile
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np

from art_idfr.experiments.data.dataset import Dataset, DatasetNotFoundError, _to_float_nchw, default_cache_dir
from art_idfr.experiments.data.splits import _resolve_size, _subset, stratified_subset_indices

logger = logging.getLogger(__name__)

#: The offline CIFAR-10 JPEG (quality 75) copy in ImageFolder layout (where this project's machines keep it; set
#: ``ART_IDFR_CIFAR10_JPEG`` or pass ``root`` / ``--data-root`` elsewhere).
DEFAULT_CIFAR10_JPEG = os.environ.get("ART_IDFR_CIFAR10_JPEG", "/work/shared/data/cifar10-jpeg.tar.gz")

#: File extensions decoded by the ImageFolder loader (as in :mod:`torchvision.datasets.folder`).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
_CACHE_VERSION = 1

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
