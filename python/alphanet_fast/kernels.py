"""The four Rust kernels, with argument checks and dtype handling.

Arrays are passed to the extension without a copy when they are float32 or
float64 (any memory order, strided views and read-only memory maps included);
other numeric dtypes are converted once, here, at the edge. The kernels release
the GIL and run on a thread pool sized by ``ALPHANET_FAST_NUM_THREADS`` (or
:func:`set_num_threads`); their results do not depend on the number of threads.
"""

from __future__ import annotations

import warnings

import numpy as np

from alphanet_fast import _core
from alphanet_fast._memory import is_releasable, release_rows, row_chunks
from alphanet_fast._validation import (
    KernelError,
    fail,
    float_dtype_of,
    float_matrix,
    float_vector,
    int_array,
    labels_array,
    positive_int,
)
from alphanet_fast.settings import DISTANCES
from alphanet_fast.typing import ArrayLike, FeaturesLike, LabelsLike, WeightsLike

__all__ = [
    "KernelError",
    "class_means",
    "class_sums",
    "combine",
    "get_num_threads",
    "nearest_neighbors",
    "set_num_threads",
    "topk_scores",
]


def class_means(
    features: FeaturesLike, labels: LabelsLike, n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean feature vector and row count of every class.

    One pass over ``features``. Wide rows (4 KiB and up, e.g. d >= 1024 in
    float32) are grouped by class and each class's rows, read whole, are added
    into its float64 running sums, which stay in cache; narrower rows stream
    in order, each thread adding a stripe of columns of every row. Either way
    every sum is the plain sequential sum in row order (bitwise, whatever the
    thread count). Memory beyond the outputs is the ``n_classes x d`` float64
    sums plus, for wide rows, four bytes per row (at most 16 MiB); a memory map
    is read in chunks of about 256 MiB whose pages are released after use, so
    a file larger than RAM works.

    Parameters
    ----------
    features : array_like or path, shape (n, d)
        Feature rows, float32 or float64 (other numeric dtypes are converted
        to float64). C- or F-ordered arrays, strided views and
        ``np.load(..., mmap_mode="r")`` arrays are read in place; a path to a
        ``.npy`` file is memory-mapped. A memory-mapped file is read in chunks
        of about 256 MiB whose pages are released after use, so the process
        never holds more than one chunk of it.
    labels : array_like of int, shape (n,)
        Class of each row, in ``[0, n_classes)``.
    n_classes : int, optional
        Number of classes; ``labels.max() + 1`` when omitted.

    Returns
    -------
    means : ndarray, shape (n_classes, d)
        Per-class means in the features' dtype; a class with no rows gets a
        row of NaN.
    counts : ndarray of int64, shape (n_classes,)
        Rows per class.

    Raises
    ------
    TypeError
        Non-numeric or complex ``features``; non-integer ``labels`` dtype.
    ArgumentError
        (a ``ValueError``; ``.argument`` and ``.row`` name the culprit) Wrong
        ndim or empty ``features``; ``labels`` of the wrong length, negative,
        out of range or not integral (first bad entry named); NaN or infinity
        in ``features`` (first bad row named); sums beyond float64.
    MemoryError
        ``n_classes x d`` sums larger than the machine's memory (checked
        before allocating).

    Examples
    --------
    >>> import numpy as np, alphanet_fast as af
    >>> means, counts = af.class_means(np.array([[1.0, 2.0], [3.0, 4.0]]), [0, 0])
    >>> means, counts
    (array([[2., 3.]]), array([2]))
    """
    x = float_matrix(features, "features")
    y, n_classes = labels_array(labels, "labels", n_rows=x.shape[0], n_classes=n_classes)
    if is_releasable(x):
        sums, counts = _streamed_sums(x, y, n_classes)
        return _core.means_from_sums(sums, counts, x.dtype == np.float64), counts
    means, counts = _core.class_means(x, y, n_classes)
    return means, counts


def _streamed_sums(x: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sums of a file-mapped matrix, chunk by chunk, releasing each chunk's pages."""
    sums = np.zeros((n_classes, x.shape[1]), dtype=np.float64)
    counts = np.zeros(n_classes, dtype=np.int64)
    for start, end in row_chunks(x):
        # row_offset: an error names the row of the whole array, not of the chunk.
        _core.accumulate_class_sums(x[start:end], y[start:end], sums, counts, start)
        release_rows(x, start, end)
    return sums, counts


def class_sums(
    features: FeaturesLike, labels: LabelsLike, n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Float64 per-class sums and counts: the mergeable form of :func:`class_means`.

    Sums of several chunks of rows can be added and divided by the summed
    counts to get the means of the whole. Parameters and errors as for
    :func:`class_means`.

    Returns
    -------
    sums : ndarray of float64, shape (n_classes, d)
    counts : ndarray of int64, shape (n_classes,)
    """
    x = float_matrix(features, "features")
    y, n_classes = labels_array(labels, "labels", n_rows=x.shape[0], n_classes=n_classes)
    if is_releasable(x):
        return _streamed_sums(x, y, n_classes)
    return _core.class_sums(x, y, n_classes)


def nearest_neighbors(
    queries: FeaturesLike, pool: FeaturesLike, k: int = 5, metric: str = "euclidean"
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest rows of ``pool`` for every row of ``queries``.

    A matrix product in the inputs' precision (the ``gemm`` crate's AVX-512,
    AVX2+FMA or scalar micro-kernels, the widest the CPU has or the one
    ``ALPHANET_FAST_SIMD`` names, in tiles of queries x pool rows on the
    kernel's threads) proposes candidates, with a margin that provably covers
    its rounding (and underflow) error; the candidates' distances are then
    recomputed directly in float64, each sum scaled by a power of two so that
    rows of very different magnitudes (1e-200 beside 1) keep their digits. The
    result is exact (never approximate) and the same whatever the thread count
    and SIMD path; ordered by ascending distance, ties to the lower pool index.
    Memory beyond the outputs: at most 32 MiB of dot products.

    Parameters
    ----------
    queries : array_like, shape (q, d)
    pool : array_like, shape (m, d)
        Both float32 or float64; if their dtypes differ both are taken as the
        wider one.
    k : int
        Neighbours per query, ``1 <= k <= m``.
    metric : {"euclidean", "cosine"}
        Euclidean distance, or ``1 - cosine similarity`` (zero rows are an error).

    Returns
    -------
    indices : ndarray of int64, shape (q, k)
        Row numbers into ``pool``, nearest first.
    distances : ndarray, shape (q, k)
        The distances, in the inputs' dtype.

    Raises
    ------
    TypeError
        Non-numeric or complex input; ``k`` not an integer.
    ArgumentError
        (a ``ValueError``) Wrong ndim, empty input, differing column counts,
        NaN or infinity (first bad row named), ``k`` outside ``[1, m]``,
        unknown ``metric``, a zero row with ``metric="cosine"``, distances
        beyond the dtype's range. Inputs of huge or tiny magnitude are not an
        error: they are rescaled by powers of two (or, for float32, computed
        in float64), which leaves the result exact.

    Examples
    --------
    >>> import numpy as np, alphanet_fast as af
    >>> idx, dist = af.nearest_neighbors(np.zeros((1, 2)), np.array([[3.0, 4.0], [1.0, 0.0]]), k=2)
    >>> idx, dist
    (array([[1, 0]]), array([[1., 5.]]))
    """
    if metric not in DISTANCES:
        raise fail("metric", f"expected one of {DISTANCES}, found {metric!r}", value=metric)
    dtype = np.promote_types(float_dtype_of(queries, "queries"), float_dtype_of(pool, "pool"))
    q = float_matrix(queries, "queries", dtype=dtype)
    p = float_matrix(pool, "pool", dtype=dtype)
    if p.shape[1] != q.shape[1]:
        raise fail("pool", f"expected {q.shape[1]} columns (as queries), found shape {p.shape}")
    k = positive_int(k, "k", upper=p.shape[0], what="rows of pool")
    shift = _safe_exponent(q, p)
    if shift is None:
        return _core.nearest_neighbors(q, p, k, metric)
    if dtype == np.float32:
        # float64 holds every product of float32 values: the same neighbours and
        # (rounded back) the same distances as the float32 path would give.
        idx, dist = _core.nearest_neighbors(q.astype(np.float64), p.astype(np.float64), k, metric)
    elif metric == "cosine":
        # A row's scale does not change its cosine distances.
        idx, dist = _core.nearest_neighbors(_rows_near_one(q), _rows_near_one(p), k, metric)
    else:
        # One power of two for both: exact, and distances scale by it exactly.
        scaled = _core.nearest_neighbors(np.ldexp(q, -shift), np.ldexp(p, -shift), k, metric)
        idx, dist = scaled[0], np.ldexp(scaled[1], shift)
    with np.errstate(over="ignore"):
        dist = dist.astype(dtype, copy=False)
    bad = np.flatnonzero(~np.isfinite(dist).all(axis=1))
    if bad.size:
        row = int(bad[0])
        detail = f"row {row}: distances exceed the {dtype.name} range; rescale the inputs"
        raise fail("queries", detail, row)
    return idx, dist


#: Largest magnitude (a power of two) at which the dot products and float64
#: distances of each dtype can neither overflow nor lose digits to underflow.
_SAFE_MAGNITUDE = {np.dtype(np.float32): 40, np.dtype(np.float64): 400}


def _safe_exponent(q: np.ndarray, p: np.ndarray) -> int | None:
    """None when the inputs' magnitudes are safe, else the binary exponent of the largest."""
    top = max(float(np.abs(q).max()), float(np.abs(p).max()))
    if top == 0.0 or not np.isfinite(top):
        return None  # the kernel reports non-finite rows and zero vectors itself
    exponent = int(np.frexp(top)[1])
    return None if abs(exponent) <= _SAFE_MAGNITUDE[q.dtype] else exponent


def _rows_near_one(x: np.ndarray) -> np.ndarray:
    """Each row divided by the power of two that brings its largest magnitude into [0.5, 1)."""
    return np.ldexp(x, -np.frexp(np.abs(x).max(axis=1))[1][:, None])


def combine(
    W: WeightsLike, targets: ArrayLike, neighbors: ArrayLike, alphas: ArrayLike
) -> np.ndarray:
    """Rebuild rows of a classifier as combinations of its original rows.

    Returns a copy of ``W`` in which row ``targets[t]`` becomes
    ``alphas[t, 0] * W[targets[t]] + sum_i alphas[t, i] * W[neighbors[t, i-1]]``.
    Every term reads the original ``W``, so a target may also serve as another
    target's neighbour. Accumulated in float64, returned in ``W``'s dtype.

    Parameters
    ----------
    W : array_like, shape (C, d)
        Classifier weights, float32 or float64.
    targets : array_like of int, shape (F,)
        Distinct rows to replace.
    neighbors : array_like of int, shape (F, k)
        Source rows for each target.
    alphas : array_like, shape (F, k + 1)
        Coefficients; column 0 multiplies the target's own row.

    Returns
    -------
    ndarray, shape (C, d)
        The new weights (C order); ``W`` itself is not modified.

    Raises
    ------
    TypeError, ArgumentError
        Bad dtypes, shapes that disagree, indices out of ``[0, C)``, repeated
        targets, NaN or infinity in ``W`` or ``alphas``; a combined row
        beyond ``W``'s dtype range (``argument="alphas"``, ``row`` the target
        entry).

    Examples
    --------
    >>> import numpy as np, alphanet_fast as af
    >>> af.combine(np.eye(2), [0], [[1]], [[1.0, 0.5]])
    array([[1. , 0.5],
           [0. , 1. ]])
    """
    w = float_matrix(W, "W")
    t = int_array(targets, "targets")
    n = int_array(neighbors, "neighbors", ndim=2)
    a = float_matrix(alphas, "alphas", dtype=np.float64) if np.ndim(alphas) == 2 else None
    if a is None:
        raise fail("alphas", f"expected a 2-d array, found shape {np.shape(alphas)}")
    if n.shape[0] != t.shape[0]:
        raise fail(
            "neighbors", f"expected {t.shape[0]} rows (one per target), found shape {n.shape}"
        )
    if a.shape != (t.shape[0], n.shape[1] + 1):
        raise fail("alphas", f"expected shape ({t.shape[0]}, {n.shape[1] + 1}), found {a.shape}")
    return _core.combine(w, t, np.ascontiguousarray(n), a)


def topk_scores(
    features: FeaturesLike, W: WeightsLike, b: WeightsLike | None = None, k: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """The k highest-scoring classes of ``features @ W.T + b``, without the full score matrix.

    Rows are scored block by block (256 rows x 2048 classes at a time, on the
    ``gemm`` crate's AVX-512, AVX2+FMA or scalar micro-kernels as for
    :func:`nearest_neighbors`) and only each row's k best survive, so memory is
    O(n k) plus a few MiB of buffers, never O(n C). Scores are bitwise the same
    whatever the thread count; from one SIMD path to another they may differ
    in the last bits (the micro-kernels add in different orders).

    Parameters
    ----------
    features : array_like, shape (n, d)
        Float32 or float64 (never copied when it is one of these).
    W : array_like, shape (C, d)
        Classifier weights; converted to the features' dtype if needed.
    b : array_like, shape (C,), optional
        Biases; zeros when omitted.
    k : int
        Classes per row, ``1 <= k <= C``.

    Returns
    -------
    indices : ndarray of int64, shape (n, k)
        Class indices, best first, ties to the lower index.
    scores : ndarray, shape (n, k)
        Their scores, in the features' dtype.

    Raises
    ------
    TypeError, ArgumentError
        Bad dtypes or shapes, NaN or infinity (first bad row named), ``k``
        outside ``[1, C]``; scores that could exceed the dtype's range
        (``argument="features"``); ``features`` rewritten by another thread
        during the call (a non-finite value seen, then gone: the message says
        the array changed while the kernel read it).
    MemoryError
        An ``n x k`` result larger than the machine's memory.

    Examples
    --------
    >>> import numpy as np, alphanet_fast as af
    >>> af.topk_scores(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0], [2.0, 0.0]]), k=1)
    (array([[1]]), array([[2.]]))
    """
    x = float_matrix(features, "features")
    w = float_matrix(W, "W", dtype=x.dtype)
    if w.shape[1] != x.shape[1]:
        raise fail("W", f"expected {x.shape[1]} columns (as features), found shape {w.shape}")
    bias = None if b is None else float_vector(b, "b", length=w.shape[0], dtype=x.dtype)
    k = positive_int(k, "k", upper=w.shape[0], what="rows of W")
    if is_releasable(x):
        parts = []
        for start, end in row_chunks(x):
            parts.append(_core.topk_scores(x[start:end], w, bias, k, start))
            release_rows(x, start, end)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return _core.topk_scores(x, w, bias, k)


def get_num_threads() -> int:
    """Number of threads the Rust kernels use."""
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Set the Rust kernels' thread count (0 restores the default).

    The default comes from the environment variable ``ALPHANET_FAST_NUM_THREADS``,
    else ``RAYON_NUM_THREADS``, else the number of CPUs. Results do not depend
    on it. A process forked from one that used the kernels builds its own pool.

    The pool never starts more than 4 threads per available CPU: more only adds
    switching for these compute-bound kernels, and a typo such as ``10**6``
    would spawn threads until the machine stalls. A larger ``n`` (or a larger
    environment variable, when the pool is built) is lowered to that ceiling
    with a ``RuntimeWarning``.

    Parameters
    ----------
    n : int
        Number of threads, ``>= 0``.

    Raises
    ------
    ArgumentError
        ``n`` negative or not an integer.

    Examples
    --------
    >>> import alphanet_fast as af
    >>> af.set_num_threads(1); af.get_num_threads()
    1
    >>> af.set_num_threads(0)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise fail("n", f"expected a non-negative integer, found {n!r}", value=n)
    ceiling = _core.max_threads()
    if n > ceiling:
        warnings.warn(
            f"n: {n} threads is more than the {ceiling} allowed (4 per available CPU); "
            f"using {ceiling}",
            RuntimeWarning,
            stacklevel=2,
        )
        n = ceiling
    _core.set_num_threads(int(n))
