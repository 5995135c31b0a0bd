"""Checks of the arguments that ``correct()`` and the baselines share.

Features, labels and a classifier ``(W, b)``, and ``(features, labels)`` pairs
for validation or test data: one set of checks, so every entry point names a
bad argument the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alphanet_fast._rows import RowSource
from alphanet_fast._validation import (
    float_dtype_of,
    float_matrix,
    float_vector,
    labels_array,
    require_finite,
)

__all__ = ["classifier_inputs", "data_pair"]


def _features(x: Any, name: str, d: int, row_sources: bool) -> Any:
    # A RowSource (Dask features) is read only through class_means and row gathers.
    arr = x if row_sources and isinstance(x, RowSource) else float_matrix(x, name)
    if arr.shape[1] != d:
        raise ValueError(f"{name}: expected {d} columns (as W), found shape {arr.shape}")
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
        raise TypeError(f"{name}: expected a (features, labels) pair, found {type(pair).__name__}")
    x = _features(pair[0], f"{name}[0] (features)", d, row_sources)
    y, _ = labels_array(pair[1], f"{name}[1] (labels)", n_rows=x.shape[0], n_classes=n_classes)
    return x, y
