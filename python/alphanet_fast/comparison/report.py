"""What :func:`~alphanet_fast.compare` returns: the rows, their runs, the recommendation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alphanet_fast._errors import fail
from alphanet_fast.baselines._common import FeatureTransform, _plain
from alphanet_fast.evaluation import EvaluationReport, format_table
from alphanet_fast.splits import Splits

__all__ = ["PLAIN_LABEL", "ComparisonReport", "ComparisonRow", "ComparisonRun"]

#: The row label of the given classifier.
PLAIN_LABEL = "plain (given)"


def criterion_value(report: EvaluationReport, criterion: Mapping[str, float]) -> float:
    """The criterion's weighted sum of top-1 accuracies of one report."""
    return sum(w * report.accuracy[1][s] for s, w in criterion.items())


@dataclass(frozen=True, eq=False)
class ComparisonRun:
    """One run of one row of a comparison: a classifier to ship, and its figures.

    Attributes
    ----------
    name : str
        The row label, e.g. ``"tau-norm"`` or ``"cRT + AlphaNet (rho=0.5)"``.
    method : str
        ``"plain"`` (the given classifier), a baseline name (``"tau_norm"``,
        ...) or ``"alphanet"``.
    base : str or None
        For AlphaNet runs, the classifier it corrected (``"plain"`` or a baseline).
    rho : float or None
        For AlphaNet runs, its rho.
    settings : dict
        The settings used and chosen by this run: ``tau`` (tau-norm, logit
        adjustment), ``best_epoch`` and AlphaNet's settings, ``seed`` of the
        trained methods, ...
    W : ndarray, shape (C, d)
        The classifier's weights, in the shape and dtype of the given ``W``.
    b : ndarray, shape (C,)
        Its biases, in the same dtype.
    transform : FeatureTransform or None
        ``None`` except for nearest class mean with ``metric="euclidean",
        cl2n=True``, whose ``(W, b)`` scores ``transform(features)``, not the
        raw features: apply it first (or ship another row).
    val : EvaluationReport
        On the validation set.
    test : EvaluationReport or None
        On the test set; ``None`` without one.

    Examples
    --------
    >>> import alphanet_fast as af
    >>> d = af.datasets.make_long_tail("small", seed=0)
    >>> rep = af.compare((d.train_features, d.train_labels), d.W, d.b,
    ...                  val=(d.val_features, d.val_labels), methods=("logit_adjust",),
    ...                  alphanet_on=(), seeds=1)
    >>> best = rep.best
    >>> best.W.shape == d.W.shape and best.W.dtype == d.W.dtype
    True
    >>> again = af.evaluate(d.val_features, d.val_labels, best.W, best.b, splits=rep.splits)
    >>> again.hit_counts["accuracy"] == best.val.hit_counts["accuracy"]
    True
    """

    name: str
    method: str
    base: str | None
    rho: float | None
    settings: dict[str, Any]
    W: np.ndarray = field(repr=False)
    b: np.ndarray = field(repr=False)
    transform: FeatureTransform | None
    val: EvaluationReport = field(repr=False)
    test: EvaluationReport | None = field(repr=False)

    def score(self, criterion: Mapping[str, float]) -> float:
        """The criterion (weights of top-1 accuracy per split) on the validation set."""
        return criterion_value(self.val, criterion)

    def to_dict(self) -> dict[str, Any]:
        """The run without its arrays, JSON-ready: what it is, its settings, its figures.

        ``feature_transform`` is ``"cl2n"`` when ``transform`` is set, else ``None``.
        """
        return {
            "name": self.name,
            "method": self.method,
            "base": self.base,
            "rho": self.rho,
            "settings": _plain(self.settings),
            "feature_transform": None if self.transform is None else "cl2n",
            "val": self.val.to_dict(),
            "test": None if self.test is None else self.test.to_dict(),
        }


@dataclass(eq=False)
class ComparisonRow:
    """One method's runs: one per seed for the trained ones, else one.

    Attributes
    ----------
    name : str
        The row label, e.g. ``"cRT + AlphaNet (rho=0.5)"``.
    method : str
        ``"plain"``, a baseline name, or ``"alphanet"``.
    base : str or None
        For AlphaNet rows, the classifier it corrected ("plain" or a baseline).
    rho : float or None
    runs : list of ComparisonRun
        One per seed for the trained methods (and AlphaNet), else one; each
        keeps its ``W`` and ``b``.
    seconds : float
        Time of the runs themselves (the AlphaNet rows exclude their base's
        time; evaluation is not included).
    """

    name: str
    method: str
    base: str | None
    rho: float | None
    runs: list[ComparisonRun] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def settings(self) -> list[dict[str, Any]]:
        """Per run, the settings used and chosen (e.g. ``tau``, ``best_epoch``)."""
        return [r.settings for r in self.runs]

    @property
    def val(self) -> list[EvaluationReport]:
        """Per run, the validation report."""
        return [r.val for r in self.runs]

    @property
    def test(self) -> list[EvaluationReport]:
        """Per run, the test report (empty without a test set)."""
        return [r.test for r in self.runs if r.test is not None]

    def score(self, criterion: Mapping[str, float]) -> float:
        """Mean over runs of the criterion's weighted top-1 validation accuracies."""
        return float(np.mean([r.score(criterion) for r in self.runs]))

    def best_run(self, criterion: Mapping[str, float]) -> ComparisonRun:
        """The run with the highest validation criterion (the first seed on ties)."""
        scores = [r.score(criterion) for r in self.runs]
        return self.runs[int(np.argmax(scores))]


@dataclass(eq=False)
class ComparisonReport:
    """Every method's accuracies and the recommendation made on validation.

    Attributes
    ----------
    rows : list of ComparisonRow
        In table order: the given classifier, the baselines, AlphaNet rows.
    criterion : dict
        Weights of the top-1 validation accuracies per split that were maximised.
    recommended : str
        The name of the best row on validation by ``criterion`` (the first on ties).
    seeds : list of int
    seconds : float
        Wall time of the whole comparison.
    splits : Splits or None
        The few/medium/many classes of the reports (from the training counts),
        e.g. for ``af.evaluate(x, y, best.W, best.b, splits=report.splits)``.
    timings : dict
        Where the time went: ``checks`` (of the arguments), ``runs`` (the rows'
        own runs, the sum of their ``seconds``) and ``scoring`` (every run on
        val and test) in seconds; ``rows_scored`` (rows x runs, both sets) and
        ``rows_scored_again`` (of them, those whose top-k was in doubt under the
        shared products and came from the kernel on the run's own classifier).
    """

    rows: list[ComparisonRow]
    criterion: dict[str, float]
    recommended: str
    seeds: list[int]
    seconds: float
    splits: Splits | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def row(self, name: str) -> ComparisonRow:
        """The row called ``name``.

        Raises
        ------
        ArgumentError
            No such row (``.argument == "name"``; the message lists the rows).
        """
        for r in self.rows:
            if r.name == name:
                return r
        rows = [r.name for r in self.rows]
        raise fail("name", f"no row {name!r}; the rows are {rows}", value=name)

    def run(self, name: str) -> ComparisonRun:
        """The run of row ``name`` with the best validation criterion, to ship.

        With several seeds, the run (seed) of that row with the highest
        criterion on the validation set, the first on ties.

        Raises
        ------
        ArgumentError
            No such row (``.argument == "name"``; the message lists the rows).
        """
        return self.row(name).best_run(self.criterion)

    @property
    def best(self) -> ComparisonRun:
        """The recommended classifier: the recommended row's run to ship.

        The row is the best on validation by mean criterion over seeds; with
        several seeds, ``best`` is its run with the best validation criterion
        (the first seed on ties). Its ``W`` and ``b`` have the given
        classifier's shape and dtype; evaluating them on the test set gives
        exactly ``best.test`` (mind ``best.transform``, set only for Euclidean
        cl2n NCM).
        """
        return self.run(self.recommended)

    def table(self, on: str = "test", *, digits: int = 1) -> str:
        """A paper-style table (Method | Few | Med. | Many | Overall, top-1 and top-5).

        Rows with several runs show mean ± std over seeds; the recommended row
        is marked with ``*``. Two columns say what decided: the validation
        criterion (mean over seeds) and the settings chosen on validation
        (tau, AlphaNet's epoch) or set per row (rho). A last line says on what
        the recommendation was made, and another one follows when a different
        row is best on the test set by the same criterion.

        Parameters
        ----------
        on : {"test", "val"}
            Which set's accuracies to show.
        digits : int

        Returns
        -------
        str
        """
        self._check_on(on)
        reports = {
            ("* " if r.name == self.recommended else "  ") + r.name: getattr(r, on)
            for r in self.rows
        }
        text = _with_columns(
            format_table(reports, digits=digits),
            [
                ("Val. " + _criterion_text(self.criterion, short=True), self._val_cells(digits)),
                ("Chosen", [_chosen(r) for r in self.rows]),
            ],
        )
        crit = _criterion_text(self.criterion)
        lines = [
            text,
            f"* recommended: {self.recommended} (best top-1 {crit} on the validation set, "
            f"mean over {len(self.seeds)} seed(s))",
        ]
        if on == "test":
            lines += self._test_leader(digits)
        return "\n".join(lines)

    def _check_on(self, on: str) -> None:
        if on not in ("test", "val"):
            raise fail("on", f"expected 'test' or 'val', found {on!r}", value=on)
        if on == "test" and not self.rows[0].test:
            raise fail("on", "the comparison was run without a test set; use on='val'")

    def _val_cells(self, digits: int) -> list[str]:
        cells = []
        for r in self.rows:
            v = np.array([run.score(self.criterion) for run in r.runs]) * 100
            cell = f"{v.mean():.{digits}f}"
            if v.size > 1:
                cell += f" ± {v.std(ddof=1):.{digits}f}"
            cells.append(cell)
        return cells

    def _test_leader(self, digits: int) -> list[str]:
        """One line when another row leads on the test set by the same criterion."""

        def on_test(r: ComparisonRow) -> float:
            return float(np.mean([criterion_value(t, self.criterion) for t in r.test]))

        leader = max(self.rows, key=on_test)  # max keeps the first of equal scores
        chosen = self.row(self.recommended)
        if on_test(leader) <= on_test(chosen):
            return []
        return [
            f"  best on test: {leader.name} ({100 * on_test(leader):.{digits}f} against "
            f"{100 * on_test(chosen):.{digits}f}); the test set never chooses"
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: criterion, recommendation, and every row's runs (no arrays)."""
        return {
            "criterion": dict(self.criterion),
            "recommended": self.recommended,
            "seeds": list(self.seeds),
            "seconds": self.seconds,
            "timings": dict(self.timings),
            "rows": [
                {
                    "name": r.name,
                    "method": r.method,
                    "base": r.base,
                    "rho": r.rho,
                    "val_score": r.score(self.criterion),
                    "seconds": r.seconds,
                    "settings": r.settings,
                    "val": [rep.to_dict() for rep in r.val],
                    "test": [rep.to_dict() for rep in r.test],
                }
                for r in self.rows
            ],
        }

    def plot(self, path: Any, *, on: str = "test", k: int = 1) -> Any:
        """Write the few-split against overall accuracy plot (see :func:`plots.plot_tradeoff`).

        Colour by the classifier corrected (a baseline and AlphaNet on top of it
        share one), marker by rho, so no two rows are drawn alike.
        """
        from alphanet_fast.plots import plot_tradeoff

        self._check_on(on)
        points = {r.name: getattr(r, on) for r in self.rows}
        style = {r.name: (r.base or r.method, r.rho) for r in self.rows}
        return plot_tradeoff(
            points, path, k=k, highlight=self.recommended, style=style,
            title=f"Few-split vs overall top-{k} accuracy ({on} set)",
        )  # fmt: skip


def _criterion_text(criterion: Mapping[str, float], *, short: bool = False) -> str:
    parts = [s if w == 1 else f"{w:g} x {s}" for s, w in criterion.items() if w != 0]
    if short and len(parts) > 1:
        return "criterion"
    return " + ".join(parts)


def _chosen(row: ComparisonRow) -> str:
    """The settings that make the row: rho, and what was chosen on validation."""
    parts = [] if row.rho is None else [f"rho={row.rho:g}"]
    taus = [s["tau"] for s in row.settings if "tau" in s]
    if taus:
        parts.append("tau=" + "/".join(f"{t:g}" for t in taus))
    epochs = [s["best_epoch"] for s in row.settings if "best_epoch" in s]
    if epochs:
        parts.append(("epoch " if len(epochs) == 1 else "epochs ") + "/".join(map(str, epochs)))
    return ", ".join(parts) or "-"


def _with_columns(text: str, columns: Sequence[tuple[str, Sequence[str]]]) -> str:
    """``text`` (a :func:`format_table` table: two header lines, a rule, one line
    per row) with columns added on the right: numbers right-aligned, text left."""
    lines = text.split("\n")
    n_rows = len(columns[0][1])
    head, body, tail = lines[:3], lines[3 : 3 + n_rows], lines[3 + n_rows :]
    width = max(len(line) for line in head + body)
    widths = [max(len(h), *(len(c) for c in cells)) for h, cells in columns]

    def joined(first: str, parts: Sequence[str]) -> str:
        return (first.ljust(width) + " | " + " | ".join(parts)).rstrip()

    out = [
        joined(head[0], ["What decided".center(sum(widths) + 3 * (len(widths) - 1))]),
        joined(head[1], [h.rjust(w) if j == 0 else h.ljust(w)
                         for j, ((h, _), w) in enumerate(zip(columns, widths))]),
        head[2].ljust(width, "-") + "-+-" + "-+-".join("-" * w for w in widths),
    ]  # fmt: skip
    for i, line in enumerate(body):
        parts = [
            cells[i].rjust(w) if j == 0 else cells[i].ljust(w)
            for j, ((_, cells), w) in enumerate(zip(columns, widths))
        ]
        out.append(joined(line, parts))
    return "\n".join(out + tail)
