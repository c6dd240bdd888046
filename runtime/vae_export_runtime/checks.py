"""Checks of the runtime's arguments: counts, seeds, arrays, and class labels.

numpy only. Every bad argument is one `RuntimeInputError` naming it, what was expected and
what was found.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from vae_export_runtime.errors import RuntimeInputError
from vae_export_runtime.limits import MAX_SEED, MAX_TEMPERATURE

# A row of y may mix classes; it must still be a distribution. float32 sums of K values in
# [0, 1] are exact to about 1e-6, so this only refuses rows that were never meant to sum to 1.
ROW_SUM_TOLERANCE = 1e-3


def check_count(name: str, value: Any, low: int, high: int) -> int:
    """An integer argument in [low, high] (Python or numpy integers; not bool, not float)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise RuntimeInputError(f"{name}: expected an integer from {low} to {high}, found {type(value).__name__} {value!r}")
    if not low <= int(value) <= high:
        raise RuntimeInputError(f"{name}: expected an integer from {low} to {high}, found {value}")
    return int(value)


def check_seed(seed: Any) -> int | None:
    """None (fresh entropy) or a non-negative integer: numpy refuses negative seeds."""
    return None if seed is None else check_count("seed", seed, 0, MAX_SEED)


def check_temperature(value: Any) -> float:
    """The prior's scale for sampling, z ~ N(0, T^2 I): a finite number in (0, MAX_TEMPERATURE]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < float(value) <= MAX_TEMPERATURE:
        raise RuntimeInputError(f"temperature: expected a number in (0, {MAX_TEMPERATURE:g}], found {value!r}")
    return float(value)


def as_array(value: Any, what: str) -> np.ndarray:
    """np.asarray, with a ragged list or an object that is not array-like as one error."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise RuntimeInputError(f"{what}: expected an array, found {type(value).__name__} ({exc})") from None
    if array.dtype == object:
        raise RuntimeInputError(f"{what}: expected a numeric array, found {type(value).__name__} of Python objects")
    return array


def label_rows(labels: Any, num_classes: int, n: int, what: str = "labels") -> np.ndarray:
    """One-hot rows [n, K] from one class index (every row) or a sequence of n of them."""
    array = as_array(labels, what)
    if array.ndim == 0:
        array = np.full(n, array)
    if array.ndim != 1 or len(array) != n:
        raise RuntimeInputError(f"{what}: expected one class index or {n} of them, found shape {list(array.shape)}")
    if not np.issubdtype(array.dtype, np.integer) or array.size and (array.min() < 0 or array.max() >= num_classes):
        found = array.dtype if not np.issubdtype(array.dtype, np.integer) else f"{array.min()}..{array.max()}"
        raise RuntimeInputError(f"{what}: expected class indices 0..{num_classes - 1}, found {found}")
    rows = np.zeros((n, num_classes), np.float32)
    rows[np.arange(n), array] = 1.0
    return rows


def check_rows(y: Any, num_classes: int, n: int, what: str = "y") -> np.ndarray:
    """y as given: [n, K] float rows, each a distribution over the classes (>= 0, summing to 1)."""
    array = as_array(y, what)
    if array.ndim != 2 or array.shape != (n, num_classes):
        raise RuntimeInputError(f"{what}: expected shape [{n}, {num_classes}] (one row of {num_classes} class "
                                f"weights per item), found {list(array.shape)}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise RuntimeInputError(f"{what}: expected a real-valued array, found dtype {array.dtype}")
    rows = np.ascontiguousarray(array, dtype=np.float32)
    if not np.all(np.isfinite(rows)) or rows.min() < 0:
        raise RuntimeInputError(f"{what}: expected finite class weights >= 0")
    sums = rows.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1.0)))
    if abs(sums[worst] - 1.0) > ROW_SUM_TOLERANCE:
        raise RuntimeInputError(f"{what}: each row must sum to 1 (a one-hot row or a mix of classes), "
                                f"row {worst} sums to {sums[worst]:.4g}")
    return rows


def condition(y: Any, labels: Any, num_classes: int, n: int) -> np.ndarray | None:
    """The y rows of a call: from `labels` (class indices) or `y` (rows), exactly one of them for
    a conditional graph (num_classes > 0), neither for an unconditional one."""
    if not num_classes:
        if y is not None or labels is not None:
            raise RuntimeInputError(f"{'y' if y is not None else 'labels'}: this graph is not conditional "
                                    "(it takes no class)")
        return None
    if (y is None) == (labels is None):
        raise RuntimeInputError(f"labels: this graph is conditional on {num_classes} classes; pass labels= "
                                "(class indices) or y= (rows of class weights), one of them")
    return label_rows(labels, num_classes, n) if labels is not None else check_rows(y, num_classes, n)


__all__ = ["as_array", "check_count", "check_rows", "check_seed", "check_temperature", "condition", "label_rows"]
