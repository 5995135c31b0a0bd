"""Accuracy per split and per class, the paper's error breakdown, and tables.

:func:`evaluate` scores a classifier with the fused top-k kernel
(:func:`alphanet_fast.topk_scores`), so memory stays O(n k) however many
classes there are; the n x C score matrix is never formed. The result, an
:class:`EvaluationReport`, holds everything the paper reports for one model:
top-1/top-5 accuracy on the few, medium and many splits and overall, per-class
accuracy, the share of few-split errors that go to one of the class's nearest
base classes (the paper's Figure 1) and, given class groups, the same
accuracies counted at the group level. :func:`format_table` puts several
reports side by side as in the paper's tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from alphanet_fast._errors import fail
from alphanet_fast._inputs import group_ids, k_values, neighbor_pairs, split_of_classes
from alphanet_fast._validation import float_matrix, float_vector, labels_array
from alphanet_fast.kernels import topk_scores
from alphanet_fast.splits import SPLIT_NAMES
from alphanet_fast.typing import ArrayLike, FeaturesLike, LabelsLike, WeightsLike

if TYPE_CHECKING:
    from alphanet_fast.result import AlphaNetResult
    from alphanet_fast.splits import Splits

__all__ = ["OUTCOMES", "SPLITS", "EvaluationReport", "evaluate", "format_table"]

#: Split names in table order; "overall" is every sample.
SPLITS = (*SPLIT_NAMES, "overall")
_HEADERS = {"few": "Few", "medium": "Med.", "many": "Many", "overall": "Overall"}
#: Outcomes of a few-split sample's top-1 prediction (the paper's Figure 1).
OUTCOMES = ("correct", "neighbor", "other")


@dataclass(frozen=True, eq=False)  # eq=False: comparing array fields has no single truth
class EvaluationReport:
    """Accuracies of one classifier on one labelled set.

    All accuracies are fractions in [0, 1], counted over samples: the
    accuracy of a split is the share of that split's samples whose true class
    is among the top-k predictions. (On a class-balanced test set, as in
    ImageNet-LT, this equals the mean of the per-class accuracies that the
    paper's code reports.) A split with no samples has accuracy NaN.

    Attributes
    ----------
    ks : tuple of int
        The k of every top-k accuracy, ascending.
    n_classes : int
    accuracy : dict
        ``accuracy[k][split]`` for ``k`` in ``ks`` and ``split`` in
        ``("few", "medium", "many", "overall")``.
    n_samples : dict
        Samples per split.
    per_class : dict
        ``per_class[k]``: array (n_classes,) of per-class top-k accuracy, NaN
        for classes without samples.
    class_counts : ndarray of int64, shape (n_classes,)
        Samples per class in the evaluated set.
    split_of : ndarray of str, shape (n_classes,)
        "few", "medium" or "many" for every class.
    few_errors : dict or None
        With neighbours: counts of few-split samples whose top-1 prediction is
        ``"correct"``, wrong as one of the true class's nearest base classes
        (``"neighbor"``), or wrong as any ``"other"`` class; see
        :meth:`few_error_shares`.
    hit_counts : dict or None
        The integer counts behind the accuracies: ``hit_counts["accuracy"][k][split]``,
        ``hit_counts["per_class"][k]`` (int64 per class) and
        ``hit_counts["group_accuracy"][k][split]``; reports of disjoint rows merge
        exactly by summing them (see :mod:`alphanet_fast.dask`).
    group_accuracy : dict or None
        With groups: ``group_accuracy[k][split]``, a prediction counted right
        when its class is in the true class's group.
    """

    ks: tuple[int, ...]
    n_classes: int
    accuracy: dict[int, dict[str, float]]
    n_samples: dict[str, int]
    per_class: dict[int, np.ndarray] = field(repr=False)
    class_counts: np.ndarray = field(repr=False)
    split_of: np.ndarray = field(repr=False)
    few_errors: dict[str, int] | None = None
    group_accuracy: dict[int, dict[str, float]] | None = None
    hit_counts: dict[str, Any] | None = field(default=None, repr=False)

    def few_error_shares(self) -> dict[str, float] | None:
        """Shares (summing to 1) of few-split samples per outcome, or None without neighbours."""
        if self.few_errors is None:
            return None
        total = sum(self.few_errors[o] for o in OUTCOMES)
        return {o: (self.few_errors[o] / total if total else math.nan) for o in OUTCOMES}

    def classes_of(self, split: str) -> np.ndarray:
        """Class ids of one split ("few", "medium" or "many")."""
        if split not in SPLIT_NAMES:
            raise fail("split", f"expected one of {SPLIT_NAMES}, found {split!r}", value=split)
        return np.flatnonzero(self.split_of == split)

    def table(self, *others: EvaluationReport, names: Sequence[str] | None = None) -> str:
        """This report and ``others`` side by side as a paper-style table.

        Parameters
        ----------
        *others : EvaluationReport
            More methods, one row each (e.g. the corrected classifier).
        names : sequence of str, optional
            One row label per report; "model 1", "model 2", ... by default.

        Returns
        -------
        str
            See :func:`format_table`.
        """
        reports = (self, *others)
        if names is None:
            names = ["model"] if not others else [f"model {i + 1}" for i in range(len(reports))]
        if len(names) != len(reports):
            raise fail("names", f"expected {len(reports)} names, found {len(names)}")
        return format_table(dict(zip(names, reports)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN written as None); :meth:`from_dict` reads it back."""
        out: dict[str, Any] = {
            "ks": list(self.ks),
            "n_classes": self.n_classes,
            "n_samples": dict(self.n_samples),
            "accuracy": {f"top{k}": _clean(self.accuracy[k]) for k in self.ks},
            "per_class": {
                "count": self.class_counts.tolist(),
                "split": self.split_of.tolist(),
                **{f"top{k}": _clean_list(self.per_class[k]) for k in self.ks},
            },
            "few_errors": None if self.few_errors is None else dict(self.few_errors),
            "group_accuracy": None
            if self.group_accuracy is None
            else {f"top{k}": _clean(self.group_accuracy[k]) for k in self.ks},
        }
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationReport:
        """Rebuild a report written by :meth:`to_dict`."""
        ks = tuple(int(k) for k in data["ks"])

        def floats(d: Mapping[str, Any]) -> dict[str, float]:
            return {s: math.nan if v is None else float(v) for s, v in d.items()}

        per = data["per_class"]
        group = data.get("group_accuracy")
        errors = data.get("few_errors")
        return cls(
            ks=ks,
            n_classes=int(data["n_classes"]),
            accuracy={k: floats(data["accuracy"][f"top{k}"]) for k in ks},
            n_samples={s: int(v) for s, v in data["n_samples"].items()},
            per_class={
                k: np.array([math.nan if v is None else v for v in per[f"top{k}"]], dtype=float)
                for k in ks
            },
            class_counts=np.asarray(per["count"], dtype=np.int64),
            split_of=np.asarray(per["split"], dtype="<U6"),
            few_errors=None if errors is None else {o: int(errors[o]) for o in OUTCOMES},
            group_accuracy=None if group is None else {k: floats(group[f"top{k}"]) for k in ks},
        )


def _clean(d: Mapping[str, float]) -> dict[str, float | None]:
    return {s: (None if math.isnan(v) else float(v)) for s, v in d.items()}


def _clean_list(a: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in a.tolist()]


def evaluate(
    features: FeaturesLike,
    labels: LabelsLike,
    W: WeightsLike,
    b: WeightsLike | None = None,
    *,
    splits: Splits | AlphaNetResult,
    k: int | Sequence[int] = (1, 5),
    neighbors: AlphaNetResult | tuple[ArrayLike, ArrayLike] | None = None,
    groups: ArrayLike | None = None,
) -> EvaluationReport:
    """Top-k accuracy of ``features @ W.T + b`` per split and per class.

    One call to the fused top-k kernel with ``max(k)``; the full score matrix
    is never formed.

    Parameters
    ----------
    features : array_like, shape (n, d)
        Rows to classify, float32 or float64 (memory maps are read in place).
    labels : array_like of int, shape (n,)
        True classes, in ``[0, C)``.
    W : array_like, shape (C, d)
        Classifier weights (e.g. ``result.W`` of a :func:`correct` result).
    b : array_like, shape (C,), optional
        Biases; zeros when omitted.
    splits : Splits or AlphaNetResult
        Which classes are few, medium and many, from the *training* counts
        (:func:`alphanet_fast.splits_from_counts`), or a :func:`correct`
        result, whose splits and, unless ``neighbors`` is given, neighbours
        are used.
    k : int or sequence of int
        The top-k accuracies to compute, default top-1 and top-5.
    neighbors : AlphaNetResult or (few_classes, neighbors), optional
        Each few class's nearest base classes: a result, or a pair of arrays
        (F,) and (F, k). Enables the few-split error breakdown.
    groups : array_like, shape (C,), optional
        A group label per class (ints or strings, e.g. super-classes); adds
        accuracies that count a prediction right when it is in the true
        class's group.

    Returns
    -------
    EvaluationReport

    Raises
    ------
    TypeError, ValueError
        Bad shapes or dtypes (the argument is named), labels outside
        ``[0, C)``, splits for another number of classes, a few class that
        occurs in ``labels`` but has no neighbour list, NaN or infinity.

    Examples
    --------
    >>> import numpy as np, alphanet_fast as af
    >>> splits = af.splits_from_counts([30, 5], few_below=20, many_above=100)
    >>> rep = af.evaluate(np.eye(2), [0, 1], np.eye(2), splits=splits, k=1)
    >>> rep.accuracy[1]["overall"]
    1.0
    """
    x = float_matrix(features, "features")
    w = float_matrix(W, "W", dtype=x.dtype)
    n_classes = w.shape[0]
    if w.shape[1] != x.shape[1]:
        raise fail("W", f"expected {x.shape[1]} columns (as features), found shape {w.shape}")
    bias = None if b is None else float_vector(b, "b", length=n_classes, dtype=x.dtype)
    y, _ = labels_array(labels, "labels", n_rows=x.shape[0], n_classes=n_classes)
    ks = k_values(k, n_classes)
    if neighbors is None and hasattr(splits, "few_classes") and hasattr(splits, "neighbors"):
        neighbors = cast("AlphaNetResult", splits)
    if hasattr(splits, "splits") and not hasattr(splits, "few"):
        splits = splits.splits
    split_of = split_of_classes(splits, n_classes)
    groups_of = None if groups is None else group_ids(groups, n_classes)
    nb_arrays = None if neighbors is None else neighbor_pairs(neighbors, n_classes)
    top, _ = topk_scores(x, w, bias, k=max(ks))
    return _report(top, y, ks, split_of, groups_of, nb_arrays)


def _report(
    top: np.ndarray,
    y: np.ndarray,
    ks: tuple[int, ...],
    split_of: np.ndarray,
    groups_of: np.ndarray | None,
    nb_arrays: tuple[np.ndarray, np.ndarray] | None,
) -> EvaluationReport:
    """The report of checked labels ``y`` and their top classes ``top`` (best first)."""
    n_classes = split_of.shape[0]
    sample_split = split_of[y]
    masks = {s: sample_split == s for s in SPLIT_NAMES}
    masks["overall"] = np.ones(y.shape[0], dtype=bool)
    n_samples = {s: int(m.sum()) for s, m in masks.items()}
    class_counts = np.bincount(y, minlength=n_classes).astype(np.int64)

    def split_means(hit: np.ndarray) -> dict[str, float]:
        return {s: (float(hit[m].mean()) if n_samples[s] else math.nan) for s, m in masks.items()}

    def split_hits(hit: np.ndarray) -> dict[str, int]:
        return {s: int(np.count_nonzero(hit[m])) for s, m in masks.items()}

    accuracy: dict[int, dict[str, float]] = {}
    per_class: dict[int, np.ndarray] = {}
    group_accuracy: dict[int, dict[str, float]] = {}
    hit_counts: dict[str, Any] = {"accuracy": {}, "per_class": {}, "group_accuracy": {}}
    for kk in ks:
        hit = (top[:, :kk] == y[:, None]).any(axis=1)
        accuracy[kk] = split_means(hit)
        hit_counts["accuracy"][kk] = split_hits(hit)
        class_hits = np.bincount(y, weights=hit, minlength=n_classes)
        hit_counts["per_class"][kk] = class_hits.astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class[kk] = class_hits / class_counts
        if groups_of is not None:
            ghit = (groups_of[top[:, :kk]] == groups_of[y][:, None]).any(axis=1)
            group_accuracy[kk] = split_means(ghit)
            hit_counts["group_accuracy"][kk] = split_hits(ghit)
    few_errors = None
    if nb_arrays is not None:
        few_errors = _few_breakdown(y, top[:, 0], masks["few"], *nb_arrays, n_classes)
    return EvaluationReport(
        ks=ks,
        n_classes=n_classes,
        accuracy=accuracy,
        n_samples=n_samples,
        per_class=per_class,
        class_counts=class_counts,
        split_of=split_of,
        few_errors=few_errors,
        group_accuracy=group_accuracy if groups_of is not None else None,
        hit_counts=hit_counts,
    )


def _few_breakdown(
    y: np.ndarray,
    pred: np.ndarray,
    few_mask: np.ndarray,
    few_classes: np.ndarray,
    nb: np.ndarray,
    n_classes: int,
) -> dict[str, int]:
    row_of = np.full(n_classes, -1, dtype=np.int64)
    row_of[few_classes] = np.arange(few_classes.shape[0])
    yf, pf = y[few_mask], pred[few_mask]
    rows = row_of[yf]
    if np.any(rows < 0):
        missing = int(yf[np.flatnonzero(rows < 0)[0]])
        raise fail("neighbors", f"few class {missing} occurs in labels but has no neighbour list")
    correct = pf == yf
    near = ~correct & (nb[rows] == pf[:, None]).any(axis=1)
    return {
        "correct": int(correct.sum()),
        "neighbor": int(near.sum()),
        "other": int((~correct & ~near).sum()),
    }


def _cell(values: Sequence[float], digits: int) -> str:
    """One table cell: a percentage, or mean ± std over several runs."""
    vals = np.array([v for v in values if not math.isnan(v)], dtype=float) * 100
    if vals.size == 0:
        return "-"
    if len(values) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{vals.mean():.{digits}f} ± {vals.std(ddof=1) if vals.size > 1 else 0.0:.{digits}f}"


def format_table(
    reports: Mapping[str, EvaluationReport | Sequence[EvaluationReport]],
    *,
    digits: int = 1,
    groups: bool = False,
) -> str:
    """Several methods side by side: Method | Few | Med. | Many | Overall, per top-k.

    Parameters
    ----------
    reports : mapping of str to EvaluationReport or sequence of them
        One row per entry, in order. A sequence (e.g. one report per seed) is
        shown as mean ± sample standard deviation.
    digits : int
        Decimals of the percentages.
    groups : bool
        Show the group-level accuracies instead (every report needs them).

    Returns
    -------
    str
        A text table, accuracies in percent; columns for every k that all
        reports share. When every report has the few-split error breakdown, a
        second block gives its shares (correct / wrong as a nearest base
        class / wrong as another class).
    """
    rows = {
        name: [r] if isinstance(r, EvaluationReport) else list(r) for name, r in reports.items()
    }
    if not rows or any(not r for r in rows.values()):
        raise fail("reports", "expected at least one report per row")
    ks = sorted(set.intersection(*(set(r.ks) for rs in rows.values() for r in rs)))
    if not ks:
        raise fail("reports", "the reports share no top-k accuracy")
    if groups and any(r.group_accuracy is None for rs in rows.values() for r in rs):
        raise fail("reports", "groups=True needs reports evaluated with groups")

    def acc(r: EvaluationReport, kk: int) -> dict[str, float]:
        return r.group_accuracy[kk] if groups else r.accuracy[kk]  # type: ignore[index]

    blocks = []
    for kk in ks:
        title = f"Top-{kk} {'group ' if groups else ''}accuracy (%)"
        cells = [
            [_cell([acc(r, kk)[s] for r in rs], digits) for s in SPLITS] for rs in rows.values()
        ]
        blocks.append((title, [_HEADERS[s] for s in SPLITS], cells))
    text = _render(list(rows), blocks)
    if all(r.few_errors is not None for rs in rows.values() for r in rs):
        # A second table: where the few-split samples' top-1 predictions go.
        shares = [[r.few_error_shares() for r in rs] for rs in rows.values()]
        cells = [[_cell([sh[o] for sh in s], digits) for o in OUTCOMES] for s in shares]  # type: ignore[index]
        title = "Few-split samples, top-1 prediction (%)"
        headers = ["Correct", "Wrong: near base", "Wrong: other"]
        text += "\n\n" + _render(list(rows), [(title, headers, cells)])
    return text


def _render(names: list[str], blocks: list[tuple[str, list[str], list[list[str]]]]) -> str:
    name_w = max(len("Method"), *(len(n) for n in names))
    widths = []
    for title, headers, cells in blocks:
        w = [max(len(h), *(len(row[j]) for row in cells)) for j, h in enumerate(headers)]
        # Widen the last column if the block title is longer than the columns.
        span = sum(w) + 2 * (len(w) - 1)
        if len(title) > span:
            w[-1] += len(title) - span
        widths.append(w)

    def line(first: str, parts: list[str]) -> str:
        return (first.ljust(name_w) + " | " + " | ".join(parts)).rstrip()

    spans = [sum(w) + 2 * (len(w) - 1) for w in widths]
    out = [line("", [t.center(s) for (t, _, _), s in zip(blocks, spans)])]
    out.append(
        line(
            "Method",
            ["  ".join(h.rjust(x) for h, x in zip(hs, w)) for (_, hs, _), w in zip(blocks, widths)],
        )
    )
    out.append("-" * name_w + "-+-" + "-+-".join("-" * s for s in spans))
    for i, name in enumerate(names):
        parts = [
            "  ".join(c.rjust(x) for c, x in zip(cells[i], w))
            for (_, _, cells), w in zip(blocks, widths)
        ]
        out.append(line(name, parts))
    return "\n".join(out)
