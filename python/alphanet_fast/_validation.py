"""Argument checks shared by the public entry points.

Every check raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError``
(wrong shape or value) with a message that starts with the argument's name and
says what was expected and what was found. Arrays are coerced at most once, and
only when the kernels cannot take them as they are.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

import numpy as np

from alphanet_fast._memory import as_array_or_path

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _as_array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (str, os.PathLike)):
        # A path to a .npy file: memory-mapped, never read whole.
        try:
            return as_array_or_path(x)
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"{name}: cannot read {os.fspath(x)!r} as a .npy array ({exc})"
            ) from exc
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - numpy's own message is kept
        raise TypeError(f"{name}: cannot be read as an array ({exc})") from exc
    return arr


def float_dtype_of(x: Any, name: str) -> np.dtype:
    """The float dtype the kernels will use for ``x`` (float32 or float64)."""
    arr = _as_array(x, name)
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name}: expected real numbers, found complex dtype {arr.dtype}")
    if kind not in "fiu":
        raise TypeError(f"{name}: expected a numeric array, found dtype {arr.dtype}")
    if kind == "f" and arr.dtype.itemsize == 4:
        return np.dtype(np.float32)
    if kind == "f" and arr.dtype.itemsize == 2:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def float_matrix(
    x: Any, name: str, *, dtype: np.dtype | None = None, ncols: int | None = None
) -> np.ndarray:
    """A 2-d float32/float64 array, non-empty, copied only if its dtype must change."""
    arr = _as_array(x, name)
    target = float_dtype_of(arr, name) if dtype is None else np.dtype(dtype)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-d array, found {arr.ndim}-d with shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty 2-d array, found shape {arr.shape}")
    if ncols is not None and arr.shape[1] != ncols:
        raise ValueError(f"{name}: expected {ncols} columns, found shape {arr.shape}")
    if arr.dtype != target or not arr.dtype.isnative:
        arr = arr.astype(target.newbyteorder("="))
    elif not arr.flags.aligned:
        # Buffers unpickled from another process can start at any byte; the
        # kernels need naturally aligned elements.
        arr = arr.copy()
    return arr


def float_vector(x: Any, name: str, *, length: int, dtype: np.dtype) -> np.ndarray:
    """A contiguous 1-d float array of the given length and dtype."""
    arr = _as_array(x, name)
    float_dtype_of(arr, name)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d array, found {arr.ndim}-d with shape {arr.shape}")
    if arr.shape[0] != length:
        raise ValueError(f"{name}: expected {length} entries, found {arr.shape[0]}")
    return np.require(arr, dtype=np.dtype(dtype).newbyteorder("="), requirements=["C", "A"])


def first_nonfinite_row(arr: np.ndarray) -> int | None:
    """Index of the first row (or entry, for 1-d) holding NaN or infinity."""
    bad = ~np.isfinite(arr)
    if arr.ndim > 1:
        bad = bad.reshape(arr.shape[0], -1).any(axis=1)
    idx = np.flatnonzero(bad)
    return int(idx[0]) if idx.size else None


def require_finite(arr: np.ndarray, name: str) -> None:
    row = first_nonfinite_row(arr)
    if row is not None:
        raise ValueError(f"{name}: row {row} contains NaN or infinity; all values must be finite")


def int_array(x: Any, name: str, *, ndim: int = 1) -> np.ndarray:
    """An int64 array of the given ndim. Float input is accepted when every value is integral."""
    arr = _as_array(x, name)
    kind = arr.dtype.kind
    if kind == "b":
        raise TypeError(f"{name}: expected integers, found dtype bool")
    if kind == "f":
        if arr.size:
            bad = np.flatnonzero(~np.isfinite(arr.ravel()) | (arr.ravel() != np.round(arr.ravel())))
            if bad.size:
                pos = int(bad[0]) // max(1, (arr.shape[1] if arr.ndim == 2 else 1))
                value = arr.ravel()[bad[0]]
                raise ValueError(f"{name}: entry {pos} is {value}, expected an integer")
    elif kind not in "iu":
        raise TypeError(f"{name}: expected integers, found dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(
            f"{name}: expected a {ndim}-d array, found {arr.ndim}-d with shape {arr.shape}"
        )
    if kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name}: values beyond the int64 range")
    return np.require(arr, dtype=np.int64, requirements=["C", "A"])


def labels_array(
    y: Any, name: str, *, n_rows: int, n_classes: int | None
) -> tuple[np.ndarray, int]:
    """Labels as contiguous int64, checked against the rows and the class count."""
    labels = int_array(y, name)
    if labels.shape[0] != n_rows:
        raise ValueError(
            f"{name}: expected {n_rows} labels (one per row of features), found {labels.shape[0]}"
        )
    negative = np.flatnonzero(labels < 0)
    if negative.size:
        i = int(negative[0])
        raise ValueError(f"{name}: entry {i} is {labels[i]}, labels must be non-negative")
    if n_classes is None:
        n_classes = int(labels.max()) + 1
    else:
        n_classes = positive_int(n_classes, "n_classes")
        over = np.flatnonzero(labels >= n_classes)
        if over.size:
            i = int(over[0])
            raise ValueError(
                f"{name}: entry {i} is {labels[i]}, expected an integer in [0, {n_classes})"
            )
    return labels, n_classes


def positive_int(value: Any, name: str, *, upper: int | None = None, what: str = "") -> int:
    """An int in [1, upper]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, found {type(value).__name__} {value!r}")
    value = int(value)
    if value < 1 or (upper is not None and value > upper):
        bound = f"[1, {upper}]" if upper is not None else ">= 1"
        suffix = f" ({what})" if what else ""
        raise ValueError(f"{name}: expected an integer in {bound}{suffix}, found {value}")
    return value
