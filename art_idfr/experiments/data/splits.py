"""
Subsets and splits of :mod:`art_idfr.experiments.data`: deterministic class-stratified subsets
(:func:`stratified_subset_indices`, what ``train_size`` / ``test_size`` draw) and the stratified train / validation
split (:func:`train_val_split`); sizes are counts or fractions, and every draw is a function of the labels and the seed.
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

import numpy as np


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
