"""Argument checks shared by the public entry points.

Every check raises through :func:`~alphanet_fast._errors.fail`: an
:class:`~alphanet_fast._errors.ArgumentTypeError` (also a ``TypeError``: wrong
kind of object or dtype) or an :class:`~alphanet_fast._errors.ArgumentError`
(a ``ValueError``: wrong shape or value), with ``.argument`` set and a
message that starts with the argument's name and says what was expected and
what was found. The Rust kernels raise the same ``ArgumentError``. Arrays
are coerced at most once, and only when the kernels cannot take them as they
are.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from alphanet_fast._errors import ArgumentError, fail
from alphanet_fast._memory import as_array_or_path

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
#: Largest integer each float dtype holds exactly, and every integer below it.
_EXACT_INTEGERS = {np.dtype(np.float32): 2**24, np.dtype(np.float64): 2**53}


#: The former name of :class:`ArgumentError`, kept as an alias.
KernelError = ArgumentError


def _as_array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (str, os.PathLike)):
        # A path to a .npy file: memory-mapped, never read whole.
        try:
            return as_array_or_path(x)
        except (OSError, ValueError) as exc:
            raise fail(name, f"cannot read {os.fspath(x)!r} as a .npy array ({exc})") from exc
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
        x = _tensor_to_numpy(x, name)
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - numpy's own message is kept
        raise fail(name, f"cannot be read as an array ({exc})", type_error=True) from exc
    return arr


def _tensor_to_numpy(t: Any, name: str) -> np.ndarray:
    """A torch tensor as numpy; float types numpy lacks (bfloat16, float8) widen to float32."""
    t = t.detach().cpu()
    try:
        return t.numpy()
    except (TypeError, RuntimeError) as exc:
        if t.is_floating_point():
            return t.float().numpy()  # exact: every bfloat16/float8 value is a float32
        raise fail(
            name, f"torch dtype {t.dtype} has no numpy equivalent ({exc})", type_error=True
        ) from None


def float_dtype_of(x: Any, name: str) -> np.dtype:
    """The float dtype the kernels will use for ``x`` (float32 or float64)."""
    arr = _as_array(x, name)
    kind = arr.dtype.kind
    if kind == "c":
        raise fail(name, f"expected real numbers, found complex dtype {arr.dtype}", type_error=True)
    if kind not in "fiu":
        raise fail(name, f"expected a numeric array, found dtype {arr.dtype}", type_error=True)
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
    natural = float_dtype_of(arr, name)  # also rejects complex and non-numeric dtypes
    target = natural if dtype is None else np.dtype(dtype)
    if arr.ndim != 2:
        raise fail(name, f"expected a 2-d array, found {arr.ndim}-d with shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise fail(name, f"expected a non-empty 2-d array, found shape {arr.shape}")
    if ncols is not None and arr.shape[1] != ncols:
        raise fail(name, f"expected {ncols} columns, found shape {arr.shape}")
    if arr.dtype.kind in "iu":
        _require_exact_in(arr, name, target)
    elif arr.dtype.itemsize > target.itemsize:
        _require_within(arr, name, target)
    if arr.dtype != target or not arr.dtype.isnative:
        arr = arr.astype(target.newbyteorder("="))
    elif not arr.flags.aligned:
        # Buffers unpickled from another process can start at any byte; the
        # kernels need naturally aligned elements.
        arr = arr.copy()
    return arr


def _require_exact_in(arr: np.ndarray, name: str, target: np.dtype) -> None:
    """Integers must convert to ``target`` without rounding (weights stored as int64)."""
    limit = _EXACT_INTEGERS[np.dtype(target)]
    # Compared as integers: a float comparison would round 2**53 + 1 down first.
    _reject_rows(
        (arr > limit) | (arr < -limit),
        name,
        f"holds integers beyond {limit}, which {np.dtype(target).name} cannot represent "
        f"exactly; pass a float array",
    )


def _require_within(arr: np.ndarray, name: str, target: np.dtype) -> None:
    """Finite values must stay finite when narrowed to ``target`` (float64 to float32)."""
    with np.errstate(invalid="ignore"):
        over = np.isfinite(arr) & (np.abs(arr) > np.finfo(target).max)
    detail = f"holds values beyond the {np.dtype(target).name} range it is computed in"
    _reject_rows(over, name, f"{detail}; pass float64 inputs")


def _reject_rows(bad: np.ndarray, name: str, detail: str) -> None:
    """Raise ``"{name}: row R {detail}"`` for the first row R of ``bad`` holding True."""
    rows = np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))
    if rows.size:
        row = int(rows[0])
        raise fail(name, f"row {row} {detail}", row)


def float_vector(x: Any, name: str, *, length: int, dtype: np.dtype) -> np.ndarray:
    """A contiguous 1-d float array of the given length and dtype."""
    arr = _as_array(x, name)
    float_dtype_of(arr, name)
    if arr.ndim != 1:
        raise fail(name, f"expected a 1-d array, found {arr.ndim}-d with shape {arr.shape}")
    if arr.shape[0] != length:
        raise fail(name, f"expected {length} entries, found {arr.shape[0]}")
    if arr.dtype.kind in "iu":
        _require_exact_in(arr, name, np.dtype(dtype))
    elif arr.dtype.itemsize > np.dtype(dtype).itemsize:
        _require_within(arr, name, np.dtype(dtype))
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
        raise fail(name, f"row {row} contains NaN or infinity; all values must be finite", row)


def int_array(x: Any, name: str, *, ndim: int = 1) -> np.ndarray:
    """An int64 array of the given ndim. Float input is accepted when every value is integral."""
    arr = _as_array(x, name)
    kind = arr.dtype.kind
    if kind == "b":
        raise fail(name, "expected integers, found dtype bool", type_error=True)
    if kind not in "iuf":
        raise fail(name, f"expected integers, found dtype {arr.dtype}", type_error=True)
    if arr.ndim != ndim:
        raise fail(name, f"expected a {ndim}-d array, found {arr.ndim}-d with shape {arr.shape}")
    if kind == "f":
        _require_integral(arr, name)
    if kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        row = int(np.flatnonzero((arr > np.iinfo(np.int64).max).reshape(len(arr), -1).any(1))[0])
        raise fail(name, f"entry {row} is beyond the int64 range", row)
    return np.require(arr, dtype=np.int64, requirements=["C", "A"])


def _require_integral(arr: np.ndarray, name: str) -> None:
    """Float indices must be whole numbers inside the int64 range, checked before casting."""
    # 2**63 is the first float beyond int64; every float below it in magnitude casts exactly.
    arr = arr.astype(np.float64, copy=False)  # float16 cannot even hold the bound
    bad = ~np.isfinite(arr) | (arr != np.round(arr)) | (np.abs(arr) >= 2.0**63)
    rows = np.flatnonzero(bad.reshape(len(arr), -1).any(axis=1)) if arr.size else []
    if len(rows):
        row = int(rows[0])
        value = arr[row][bad[row]].flat[0] if arr.ndim > 1 else arr[row]
        raise fail(name, f"entry {row} is {value}, expected an integer within the int64 range", row)


def _still_bad(
    labels: np.ndarray, found: np.ndarray, bad: Callable[[int], bool]
) -> tuple[int, int] | None:
    """The first of the entries ``found`` bad that is still bad when read for the message.

    Labels are read in place, so another thread may change an entry between the
    vectorised check and the message; a message must never show a valid value.
    """
    for i in found:
        value = int(labels[i])
        if bad(value):
            return int(i), value
    return None


def labels_array(
    y: Any, name: str, *, n_rows: int, n_classes: int | None
) -> tuple[np.ndarray, int]:
    """Labels as contiguous int64, checked against the rows and the class count."""
    labels = int_array(y, name)
    if labels.shape[0] != n_rows:
        raise fail(
            name, f"expected {n_rows} labels (one per row of features), found {labels.shape[0]}"
        )
    negative = _still_bad(labels, np.flatnonzero(labels < 0), lambda v: v < 0)
    if negative is not None:
        i, value = negative
        raise fail(name, f"entry {i} is {value}, labels must be non-negative", i)
    if n_classes is None:
        n_classes = int(labels.max()) + 1
    else:
        n_classes = positive_int(n_classes, "n_classes", upper=np.iinfo(np.int64).max)
        over = _still_bad(labels, np.flatnonzero(labels >= n_classes), lambda v: v >= n_classes)
        if over is not None:
            i, value = over
            raise fail(name, f"entry {i} is {value}, expected an integer in [0, {n_classes})", i)
    return labels, n_classes


def positive_int(value: Any, name: str, *, upper: int | None = None, what: str = "") -> int:
    """An int in [1, upper]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise fail(
            name,
            f"expected an integer, found {type(value).__name__} {value!r}",
            value=value,
            type_error=True,
        )
    value = int(value)
    if value < 1 or (upper is not None and value > upper):
        bound = f"in [1, {upper}]" if upper is not None else ">= 1"
        suffix = f" ({what})" if what else ""
        raise fail(name, f"expected an integer {bound}{suffix}, found {value}", value=value)
    return value
