"""Dask front-ends: the same results over ``dask.array`` inputs, for data sharded
over many machines (install with ``pip install "alphanet_fast[dask]"``).

Each chunk of rows is reduced where it lives by the Rust kernels (per-class
float64 sums and counts, or per-row top-k), and only those small partial
results travel: partial sums are merged pairwise in a fixed binary tree, so no
worker holds more than one chunk plus two ``C x d`` sums, and the result does
not depend on which worker ran what. ``correct`` computes the class means
through Dask and gathers to the training process only the rows training
actually uses (the few-split rows and the class-balanced draws of base rows).

Numpy inputs that every chunk reads (``W``, ``b``, numpy labels, ``evaluate``'s
keyword arguments) travel once, not once per task: with a ``distributed``
Client active they are scattered to the workers before the graph is sent (so
the graph holds only their keys), otherwise each is one graph key shared by all
tasks.
"""

from __future__ import annotations

from typing import Any, TypeGuard

import numpy as np

try:
    import dask
    import dask.array as da
    from dask.base import get_scheduler
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('alphanet_fast.dask needs Dask: pip install "alphanet_fast[dask]"') from exc

from alphanet_fast import _core, kernels
from alphanet_fast._errors import fail
from alphanet_fast._rows import RowSource
from alphanet_fast._validation import float_dtype_of
from alphanet_fast.typing import ArrayLike, FeaturesLike, LabelsLike, WeightsLike

__all__ = ["class_means", "class_sums", "correct", "evaluate", "is_dask_array", "topk_scores"]


def is_dask_array(x: Any) -> TypeGuard[da.Array]:
    """Whether ``x`` is a ``dask.array.Array``."""
    return isinstance(x, da.Array)


def _distributed_client() -> Any:
    """The ``distributed`` Client that ``dask.compute`` would use now, or None."""
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - dask without distributed
        return None
    scheduler = get_scheduler()
    scheduler = getattr(scheduler, "__self__", scheduler)  # a bound ``Client.get``
    return scheduler if isinstance(scheduler, Client) else None


def _shared(*values: Any) -> list:
    """Stand-ins for values that many tasks read, so each travels once.

    With a distributed Client, the values are scattered to every worker
    (``broadcast=True``) and the tasks refer to the futures' keys: the graph
    sent to the scheduler stays small. Without one, each value becomes a single
    graph key (``dask.delayed(value, pure=True)``) that all tasks share. None
    stays None. Keep the returned objects alive until the graph is computed.
    """
    keep = [i for i, v in enumerate(values) if v is not None]
    out = list(values)
    if not keep:
        return out
    client = _distributed_client()
    if client is not None:
        # hash=False: a fresh key per call (hashed keys can be cancelled under
        # a nested scatter, dask/distributed#3703); released with the futures.
        futures = client.scatter([values[i] for i in keep], broadcast=True, hash=False)
        for i, f in zip(keep, futures):
            out[i] = f
    else:
        for i in keep:
            out[i] = dask.delayed(values[i], pure=True, traverse=False)
    return out


def _take_rows(labels: np.ndarray, start: int, stop: int) -> np.ndarray:
    return labels[start:stop]


def _row_blocks(
    features: Any, labels: Any = None, *, align: bool = False
) -> tuple[list, list | None]:
    """Delayed row chunks of the features (whole rows) and the matching labels.

    With ``align``, row chunks are made multiples of the top-k kernel's row
    block, so that scoring chunk by chunk is bitwise the same as scoring the
    whole array at once. Numpy labels are shared once (see :func:`_shared`)
    and cut into chunks where the tasks run. Without labels, the second list
    is None.
    """
    if not is_dask_array(features):
        detail = f"expected a dask array, found {type(features).__name__}"
        raise fail("features", detail, type_error=True)
    if features.ndim != 2:
        raise fail("features", f"expected a 2-d array, found shape {features.shape}")
    if features.shape[0] == 0:
        raise fail("features", f"the dask array has no rows (shape {features.shape})")
    x = features.rechunk({1: -1}) if len(features.chunks[1]) > 1 else features
    block = _core.TOPK_ROW_BLOCK
    if align and any(c % block for c in x.chunks[0][:-1]):
        size = max(block, round(np.mean(x.chunks[0]) / block) * block)
        x = x.rechunk({0: size})
    xs = list(x.to_delayed().ravel())
    if labels is None:
        return xs, None
    y = labels if is_dask_array(labels) else np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        detail = f"expected {x.shape[0]} labels (one per row of features), found shape {y.shape}"
        raise fail("labels", detail)
    if is_dask_array(y):
        return xs, list(y.rechunk((x.chunks[0],)).to_delayed().ravel())
    [shared] = _shared(y)
    stops = np.cumsum(x.chunks[0]).tolist()
    starts = [0, *stops[:-1]]
    take = dask.delayed(_take_rows, pure=True)
    return xs, [take(shared, start, stop) for start, stop in zip(starts, stops)]


def _merge(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]):
    return a[0] + b[0], a[1] + b[1]


def _tree(parts: list) -> Any:
    """Pairwise merge in a fixed order: the same additions whatever the scheduling."""
    while len(parts) > 1:
        merged = [dask.delayed(_merge)(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        if len(parts) % 2:
            merged.append(parts[-1])
        parts = merged
    return parts[0]


def _classes_from_labels(labels: Any) -> int:
    """``labels.max() + 1``, with a label that is no class id (NaN, 1.5, 1e30) named."""
    top = labels.max().compute() if is_dask_array(labels) else np.max(np.asarray(labels))
    value = top.item() if isinstance(top, np.generic) else top
    if isinstance(value, float) and value != value:
        raise fail("labels", "contains NaN; expected integer class ids")
    if isinstance(value, float) and np.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not -1 <= value < 2**63 - 1:
        raise fail("labels", f"the largest label is {value!r}; expected integer class ids")
    return int(value) + 1


def class_sums(features: da.Array, labels: da.Array | ArrayLike, n_classes: int | None = None):
    """Per-class float64 sums and counts of a dask array of features.

    Parameters
    ----------
    features : dask.array.Array, shape (n, d)
        Float32 or float64 rows, chunked along rows (column chunks are merged).
    labels : dask.array.Array or array_like of int, shape (n,)
    n_classes : int, optional
        Computed as ``labels.max() + 1`` (one extra pass over the labels) when
        omitted.

    Returns
    -------
    sums : ndarray of float64, shape (n_classes, d)
    counts : ndarray of int64, shape (n_classes,)

    Raises
    ------
    TypeError, ValueError
        As :func:`alphanet_fast.class_sums`, with row numbers counted within
        the offending chunk.
    """
    xs, ys = _row_blocks(features, labels)
    if n_classes is None:
        n_classes = _classes_from_labels(labels)
    parts = [dask.delayed(kernels.class_sums)(x, y, n_classes) for x, y in zip(xs, ys)]
    sums, counts = _tree(parts).compute()
    return sums, counts


def class_means(features: da.Array, labels: da.Array | ArrayLike, n_classes: int | None = None):
    """Per-class means and counts of a dask array; see :func:`alphanet_fast.class_means`.

    Returns
    -------
    means : ndarray, shape (n_classes, d)
        In the dtype of the in-memory kernel's means (the features' float32 or
        float64; float32 for float16, float64 for integers); NaN rows for
        classes with no rows.
    counts : ndarray of int64, shape (n_classes,)

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> from alphanet_fast import dask as afd
    >>> x = da.from_array(np.arange(8.0).reshape(4, 2), chunks=(2, 2))
    >>> afd.class_means(x, np.array([0, 1, 0, 1]))[0]
    array([[2., 3.],
           [4., 5.]])
    """
    sums, counts = class_sums(features, labels, n_classes)
    # The in-memory kernel's dtype (float16 -> float32, integers -> float64) and its
    # own division: the same means as the in-memory path.
    wide = float_dtype_of(np.empty(0, dtype=features.dtype), "features") == np.float64
    return _core.means_from_sums(sums, counts, wide), counts


def topk_scores(features: da.Array, W: WeightsLike, b: WeightsLike | None = None, k: int = 5):
    """Per-row top-k classes of a dask array of features; see :func:`alphanet_fast.topk_scores`.

    Each chunk is scored by the Rust kernel where it lives; only the ``n x k``
    results are gathered.
    """
    xs, _ = _row_blocks(features, align=True)
    w, b = _shared(np.asarray(W), b)
    parts = [dask.delayed(kernels.topk_scores)(x, w, b, k) for x in xs]
    results = dask.compute(*parts)
    return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])


def evaluate(
    features: da.Array,
    labels: da.Array | ArrayLike,
    W: WeightsLike,
    b: WeightsLike | None = None,
    **kwargs: Any,
):
    """:func:`alphanet_fast.evaluate` over a dask array of features.

    Every chunk is evaluated where it lives (fused top-k, then per-split and
    per-class hit counts); only the counts travel, and they are summed. The
    result equals the in-memory evaluation of the whole array.

    Parameters
    ----------
    features : dask.array.Array, shape (n, d)
    labels : dask.array.Array or array_like of int, shape (n,)
    W, b, **kwargs
        As for :func:`alphanet_fast.evaluate` (``splits`` is required).

    Returns
    -------
    EvaluationReport
    """
    from alphanet_fast.evaluation import EvaluationReport

    if "splits" not in kwargs:
        raise fail("splits", "evaluate() needs this keyword argument", type_error=True)
    splits = kwargs["splits"]
    if kwargs.get("neighbors") is None and hasattr(splits, "few_classes"):
        kwargs["neighbors"] = (np.asarray(splits.few_classes), np.asarray(splits.neighbors))
    if hasattr(splits, "splits") and not hasattr(splits, "few"):
        kwargs["splits"] = splits.splits  # ship the splits, not the whole result
    xs, ys = _row_blocks(features, labels, align=True)
    w, b, kw = _shared(np.asarray(W), b, kwargs)
    parts = [dask.delayed(_evaluate_chunk)(x, y, w, b, kw) for x, y in zip(xs, ys)]
    reports: list[EvaluationReport] = list(dask.compute(*parts))
    return _merge_reports(reports)


def _evaluate_chunk(x: np.ndarray, y: np.ndarray, W: Any, b: Any, kwargs: dict) -> Any:
    from alphanet_fast.evaluation import evaluate as evaluate_in_memory

    return evaluate_in_memory(x, y, W, b, **kwargs)


def _merge_reports(reports: list) -> Any:
    """One report from reports of disjoint chunks of rows, by summing integer hit counts."""
    from alphanet_fast.evaluation import EvaluationReport

    first = reports[0]
    n_samples = {s: sum(r.n_samples[s] for r in reports) for s in first.n_samples}
    class_counts = np.sum([r.class_counts for r in reports], axis=0)
    hits = {
        "accuracy": {},
        "per_class": {},
        "group_accuracy": {} if first.group_accuracy is not None else None,
    }

    def fractions(kind: str, kk: int) -> dict[str, float]:
        total = {s: sum(r.hit_counts[kind][kk][s] for r in reports) for s in n_samples}
        hits[kind][kk] = total
        return {s: total[s] / n if (n := n_samples[s]) else float("nan") for s in n_samples}

    accuracy, per_class, group_accuracy = {}, {}, {}
    for kk in first.ks:
        accuracy[kk] = fractions("accuracy", kk)
        hits["per_class"][kk] = np.sum([r.hit_counts["per_class"][kk] for r in reports], axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class[kk] = hits["per_class"][kk] / class_counts
        if first.group_accuracy is not None:
            group_accuracy[kk] = fractions("group_accuracy", kk)
    few_errors = None
    if first.few_errors is not None:
        few_errors = {o: sum(r.few_errors[o] for r in reports) for o in first.few_errors}
    return EvaluationReport(
        ks=first.ks,
        n_classes=first.n_classes,
        accuracy=accuracy,
        n_samples=n_samples,
        per_class=per_class,
        class_counts=class_counts,
        split_of=first.split_of,
        few_errors=few_errors,
        group_accuracy=group_accuracy if first.group_accuracy is not None else None,
        hit_counts=hits,
    )


class DaskRows(RowSource):
    """A dask array seen by :func:`alphanet_fast.correct`: means through the
    cluster, rows gathered on request."""

    def __init__(self, array: Any):
        if not is_dask_array(array) or array.ndim != 2:
            detail = f"expected a 2-d dask array, found {type(array).__name__}"
            raise fail("features", detail, type_error=True)
        kind = np.dtype(array.dtype).kind
        if kind not in "fiu":
            detail = f"expected a numeric array, found dtype {array.dtype}"
            raise fail("features", detail, type_error=True)
        dtype = array.dtype if array.dtype in (np.float32, np.float64) else np.float64
        super().__init__(array.shape, dtype)
        self.array = array

    def gather(self, rows: np.ndarray) -> np.ndarray:
        block = self.array[rows].compute()
        return np.asarray(block, dtype=self.dtype)

    def class_means(self, labels: np.ndarray, n_classes: int):
        return class_means(self.array, labels, n_classes)


def correct(
    features: da.Array | FeaturesLike,
    labels: da.Array | LabelsLike,
    W: WeightsLike,
    b: WeightsLike | None = None,
    *,
    val: tuple[da.Array | FeaturesLike, da.Array | LabelsLike] | None = None,
    **kwargs: Any,
):
    """:func:`alphanet_fast.correct` with training (and validation) features as dask arrays.

    Class means are reduced on the cluster; only the few-split rows, the
    class-balanced draws of base rows and the validation rows are gathered to
    this process, which trains (on its GPU, if it has one). Labels are
    brought here (one integer per row). Other arguments as for
    :func:`alphanet_fast.correct`; the result is the same as for the same data
    in memory, to float tolerance.

    Returns
    -------
    AlphaNetResult
    """
    from alphanet_fast.training import correct as correct_in_memory

    # A DaskRows is a RowSource, which correct() reads besides the public array types.
    x: Any = DaskRows(features) if is_dask_array(features) else features
    y = np.asarray(labels.compute() if is_dask_array(labels) else labels)
    rows: Any = val
    if val is not None and isinstance(val, (tuple, list)) and len(val) == 2:
        vx = DaskRows(val[0]) if is_dask_array(val[0]) else val[0]
        vy = val[1].compute() if is_dask_array(val[1]) else val[1]
        rows = (vx, vy)
    return correct_in_memory(x, y, W, b, val=rows, **kwargs)
