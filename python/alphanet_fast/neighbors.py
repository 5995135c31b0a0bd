"""Choosing each few class's neighbours: the one rule, used by every caller.

:func:`alphanet_fast.correct`, :func:`alphanet_fast.dask.correct` (through it)
and the command line's ``neighbors`` command all choose neighbours here:

* ``"euclidean"`` / ``"cosine"``: the ``k`` nearest base classes by the distance
  between class means (exact, see :func:`alphanet_fast.nearest_neighbors`);
* ``"random"``: ``k`` distinct base classes per few class, drawn from ``rng``
  (the paper's control);
* ``given``: the caller's own ``(F, k)`` table of base classes, checked.

A few class without training rows has no mean: ``empty="error"`` refuses it
(what ``correct()`` does, unless neighbours are given), ``empty="skip"`` leaves
it out and lists it in :attr:`Neighbors.skipped` (what a report can do).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from alphanet_fast._errors import fail
from alphanet_fast._rows import RowSource
from alphanet_fast._validation import int_array
from alphanet_fast.kernels import class_means, nearest_neighbors
from alphanet_fast.settings import METRICS
from alphanet_fast.splits import Splits

__all__ = ["Neighbors", "choose_neighbors"]


@dataclass(frozen=True)
class Neighbors:
    """Each few class's neighbour classes.

    Attributes
    ----------
    few : ndarray of int64, shape (F,)
        The few classes that have neighbours, ascending.
    classes : ndarray of int64, shape (F, k)
        Their neighbours (base class ids), nearest first.
    distances : ndarray of float64, shape (F, k)
        Distances between class means; NaN for random or given neighbours.
    skipped : ndarray of int64
        Few classes left out because they have no training row (``empty="skip"``).
    metric : str
        ``"euclidean"``, ``"cosine"``, ``"random"`` or ``"given"``.
    """

    few: np.ndarray
    classes: np.ndarray
    distances: np.ndarray
    skipped: np.ndarray
    metric: str


def _check_given(given: Any, few: np.ndarray, is_base: np.ndarray, k: int) -> np.ndarray:
    nb = int_array(given, "neighbors", ndim=2)
    if nb.shape != (few.size, k):
        raise fail(
            "neighbors",
            f"expected shape (F, k) = ({few.size}, {k}), one row per few class and "
            f"k={k} columns, found {nb.shape} (pass k=neighbors.shape[1])",
        )
    n_classes = is_base.size
    outside = np.argwhere((nb < 0) | (nb >= n_classes))
    if outside.size:
        row, col = outside[0]
        raise fail(
            "neighbors",
            f"entry ({row}, {col}) is {nb[row, col]}, expected a class id in [0, {n_classes})",
            int(row),
        )
    not_base = np.argwhere(~is_base[nb])
    if not_base.size:
        row, col = not_base[0]
        raise fail(
            "neighbors",
            f"entry ({row}, {col}) is class {nb[row, col]}, which is not a base "
            "(medium or many) class",
            int(row),
        )
    sorted_nb = np.sort(nb, axis=1)
    repeats = np.flatnonzero((sorted_nb[:, 1:] == sorted_nb[:, :-1]).any(axis=1))
    if repeats.size:
        row = int(repeats[0])
        raise fail("neighbors", f"row {row} (few class {few[row]}) repeats a class", row)
    return nb


def _few_with_rows(few: np.ndarray, counts: np.ndarray, empty: str) -> np.ndarray:
    """The few classes that have a training row; the others refused or skipped."""
    no_rows = few[counts[few] == 0]
    if no_rows.size and empty == "error":
        raise fail(
            "labels",
            f"few class {int(no_rows[0])} has no training samples (and "
            f"{no_rows.size - 1} more), so it has no mean to find neighbours by; "
            "pass neighbors=... to correct it",
        )
    return few[counts[few] > 0]


def choose_neighbors(
    features: Any,
    labels: np.ndarray,
    splits: Splits,
    k: int,
    *,
    metric: str = "euclidean",
    given: Any = None,
    rng: np.random.Generator | None = None,
    empty: str = "error",
    stage: Callable[[str], AbstractContextManager] | None = None,
) -> Neighbors:
    """Each few class's ``k`` neighbour base classes.

    Parameters
    ----------
    features : ndarray, shape (n, d), or RowSource
        Training features (read only for class means, and only for a distance).
    labels : ndarray of int, shape (n,)
        Checked training labels in ``[0, splits.n_classes)``.
    splits : Splits
        The classes' splits; neighbours are base (medium or many) classes.
    k : int
        Neighbours per few class, at most the number of base classes.
    metric : {"euclidean", "cosine", "random"}, default "euclidean"
        Ignored when ``given``.
    given : array_like of int, shape (F, k), optional
        The caller's neighbours, one row per few class in ascending class order;
        checked (class ids, base classes, no repeats in a row) and used as they are.
    rng : numpy.random.Generator, optional
        Draws random neighbours (required for ``metric="random"``).
    empty : {"error", "skip"}, default "error"
        A few class without a training row (and no ``given``): raise, or leave
        it out and list it in ``skipped``.
    stage : callable, optional
        ``stage(name)`` returns a context manager timing the ``"means"`` and
        ``"neighbors"`` work (a :class:`~alphanet_fast.training.stopwatch.Stopwatch`'s).

    Returns
    -------
    Neighbors

    Raises
    ------
    ValueError
        ``k`` above the number of base classes, a bad ``given`` table, a few
        class without training rows (``empty="error"``), an unknown ``metric``
        or ``empty``.

    Examples
    --------
    >>> import numpy as np, alphanet_fast as af
    >>> x = np.array([[0.0], [0.1], [5.0], [5.2], [9.0]] * 30)
    >>> y = np.array([0, 1, 2, 2, 2] * 30)
    >>> y[:60:5] = 1
    >>> splits = af.splits_from_counts(np.bincount(y), few_below=20, many_above=100)
    >>> nb = choose_neighbors(x, y, splits, 1)
    >>> nb.few.tolist(), nb.classes.tolist()
    ([0], [[1]])
    """
    if empty not in ("error", "skip"):
        raise fail("empty", f"expected 'error' or 'skip', found {empty!r}", value=empty)
    timed = stage if stage is not None else (lambda name: nullcontext())
    few, base = splits.few, splits.base
    is_base = np.zeros(splits.n_classes, dtype=bool)
    is_base[base] = True
    none = np.zeros(0, dtype=np.int64)
    if given is not None:
        nb = _check_given(given, few, is_base, k)
        return Neighbors(few, nb, np.full(nb.shape, np.nan), none, "given")
    if metric not in METRICS:
        raise fail("metric", f"expected one of {METRICS}, found {metric!r}", value=metric)
    if k > base.size:
        detail = f"expected at most {base.size} (the number of base classes), found {k}"
        raise fail("k", detail, value=k)
    counts = np.bincount(labels, minlength=splits.n_classes)
    kept = _few_with_rows(few, counts, empty)
    skipped = np.setdiff1d(few, kept)
    if kept.size == 0:
        return Neighbors(kept, np.zeros((0, k), np.int64), np.zeros((0, k)), skipped, metric)
    if metric == "random":
        if rng is None:
            raise fail("rng", "a numpy Generator is needed for random neighbours")
        with timed("neighbors"):
            nb = np.stack([rng.choice(base, size=k, replace=False) for _ in kept])
        return Neighbors(kept, nb, np.full(nb.shape, np.nan), skipped, metric)
    with timed("means"):
        if isinstance(features, RowSource):
            means, _ = features.class_means(labels, splits.n_classes)
        else:
            means, _ = class_means(features, labels, splits.n_classes)
    with timed("neighbors"):
        idx, dist = nearest_neighbors(means[kept], means[base], k, metric)
    return Neighbors(kept, base[idx], dist.astype(np.float64), skipped, metric)
