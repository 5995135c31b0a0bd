"""Checks of the arguments that ``correct()``, the baselines and ``evaluate()`` take.

Features, labels and a classifier ``(W, b)``, ``(features, labels)`` pairs for
validation or test data, and :func:`~alphanet_fast.evaluate`'s splits,
neighbours, ``k`` and groups: one set of checks, so every entry point names a
bad argument the same way. An argument made of parts (a pair, a result's
splits) is named as the argument, its part in the message:
``"val: labels: entry 3 is 9, ..."``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from alphanet_fast._errors import ArgumentError, fail
from alphanet_fast._rows import RowSource
from alphanet_fast._validation import (
    float_dtype_of,
    float_matrix,
    float_vector,
    int_array,
    labels_array,
    require_finite,
)
from alphanet_fast.splits import SPLIT_NAMES

__all__ = [
    "classifier_inputs",
    "data_pair",
    "group_ids",
    "k_values",
    "neighbor_pairs",
    "split_of_classes",
]


@contextmanager
def _parts_of(argument: str) -> Iterator[None]:
    """An error about a part of ``argument`` (checked under the part's own name) names
    ``argument``, with the part's name and what is wrong in the message."""
    try:
        yield
    except ArgumentError as exc:
        detail = f"{exc.argument}: {exc.detail}"
        kind = isinstance(exc, TypeError)
        raise fail(argument, detail, exc.row, value=exc.value, type_error=kind) from None


def _features(x: Any, name: str, d: int, row_sources: bool) -> Any:
    # A RowSource (Dask features) is read only through class_means and row gathers.
    arr = x if row_sources and isinstance(x, RowSource) else float_matrix(x, name)
    if arr.shape[1] != d:
        raise fail(name, f"expected {d} columns (as W), found shape {arr.shape}")
    return arr


def classifier_inputs(
    features: Any, labels: Any, W: Any, b: Any, *, row_sources: bool = False
) -> tuple[np.ndarray, Any, np.ndarray, np.ndarray]:
    """``(W, features, labels, bias)`` checked: a finite float ``W`` (C x d), features
    with d columns (a ``RowSource`` kept as it is when ``row_sources``), labels in
    ``[0, C)`` one per row, and a finite bias (a copy; zeros when ``b`` is None)."""
    W_arr = float_matrix(W, "W")
    n_classes, d = W_arr.shape
    x = _features(features, "features", d, row_sources)
    y, _ = labels_array(labels, "labels", n_rows=x.shape[0], n_classes=n_classes)
    require_finite(W_arr, "W")
    if b is None:
        bias = np.zeros(n_classes, dtype=W_arr.dtype)
    else:
        bias = float_vector(b, "b", length=n_classes, dtype=float_dtype_of(b, "b")).copy()
        require_finite(bias, "b")
    return W_arr, x, y, bias


def data_pair(
    pair: Any, name: str, d: int, n_classes: int, *, row_sources: bool = False
) -> tuple[Any, np.ndarray]:
    """``pair`` (the argument ``name``) as checked ``(features, labels)``."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        detail = f"expected a (features, labels) pair, found {type(pair).__name__}"
        raise fail(name, detail, type_error=True)
    with _parts_of(name):
        x = _features(pair[0], "features", d, row_sources)
        y, _ = labels_array(pair[1], "labels", n_rows=x.shape[0], n_classes=n_classes)
    return x, y


def split_of_classes(splits: Any, n_classes: int) -> np.ndarray:
    """Per-class split names from anything with ``few``/``medium``/``many`` class-id arrays."""
    if not all(hasattr(splits, s) for s in SPLIT_NAMES):
        raise fail(
            "splits",
            "expected a Splits (see alphanet_fast.splits_from_counts) or a correct() "
            f"result, found {type(splits).__name__}",
            type_error=True,
        )
    declared = getattr(splits, "n_classes", None)
    if declared is not None and int(declared) != n_classes:
        raise fail("splits", f"made for {int(declared)} classes, but W has {n_classes} rows")
    split_of = np.full(n_classes, "", dtype="<U6")
    for name in SPLIT_NAMES:
        with _parts_of("splits"):
            ids = int_array(getattr(splits, name), name)
        if ids.size and (ids.min() < 0 or ids.max() >= n_classes):
            raise fail("splits", f"{name}: class ids must lie in [0, {n_classes})")
        if np.any(split_of[ids] != ""):
            raise fail("splits", f"{name}: a class is in more than one split")
        split_of[ids] = name
    missing = np.flatnonzero(split_of == "")
    if missing.size:
        raise fail("splits", f"class {int(missing[0])} is in no split")
    return split_of


def neighbor_pairs(neighbors: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(few_classes (F,), neighbors (F, k)) from a result or a pair of arrays."""
    if hasattr(neighbors, "few_classes") and hasattr(neighbors, "neighbors"):
        few, nb = neighbors.few_classes, neighbors.neighbors
    elif isinstance(neighbors, (tuple, list)) and len(neighbors) == 2:
        few, nb = neighbors
    else:
        raise fail(
            "neighbors",
            "expected a correct() result or a pair (few_classes, neighbors), "
            f"found {type(neighbors).__name__}",
            type_error=True,
        )
    with _parts_of("neighbors"):
        few = int_array(few, "few classes")
        nb = int_array(nb, "neighbour ids", ndim=2)
    if nb.shape[0] != few.shape[0]:
        detail = f"{few.shape[0]} few classes but {nb.shape[0]} rows of neighbour ids"
        raise fail("neighbors", detail)
    for arr, what in ((few, "few classes"), (nb, "neighbour ids")):
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise fail("neighbors", f"{what} must lie in [0, {n_classes})")
    return few, nb


def k_values(k: Any, n_classes: int) -> tuple[int, ...]:
    """The distinct top-k values asked for, ascending, each in ``[1, n_classes]``."""
    ks = tuple(k) if isinstance(k, (tuple, list, np.ndarray)) else (k,)
    if not ks:
        raise fail("k", "expected at least one value")
    out = []
    for v in ks:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            detail = f"expected integers, found {type(v).__name__} {v!r}"
            raise fail("k", detail, value=v, type_error=True)
        if not 1 <= int(v) <= n_classes:
            raise fail("k", f"expected values in [1, {n_classes}] (rows of W), found {v}", value=v)
        out.append(int(v))
    return tuple(sorted(set(out)))


def group_ids(groups: Any, n_classes: int) -> np.ndarray:
    """Each class's group as a small int (any labels, ints or strings; only equality matters)."""
    g = np.asarray(groups)
    if g.ndim != 1 or g.shape[0] != n_classes:
        raise fail("groups", f"expected one group per class ({n_classes}), found shape {g.shape}")
    return np.unique(g, return_inverse=True)[1].reshape(-1)
