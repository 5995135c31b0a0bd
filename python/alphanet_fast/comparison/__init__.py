"""Which post-hoc fix to ship: the baselines and AlphaNet on top of them, side by side.

:func:`compare` runs every baseline of :mod:`alphanet_fast.baselines` and
:func:`alphanet_fast.correct` on top of the chosen ones, evaluates each on the
validation and test sets, and recommends the row that is best on validation
by the user's criterion; :attr:`ComparisonReport.best` is that row's
classifier, ready to ship. The test set is only ever evaluated on: no
setting, epoch or recommendation reads it.

The arguments are checked once, here; the runs are evaluated afterwards,
each product of features and weights computed once per split and shared by
the runs that rescale it (:mod:`alphanet_fast.comparison._scoring`), with
figures equal to scoring each run alone.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alphanet_fast._errors import fail
from alphanet_fast._inputs import split_of_classes
from alphanet_fast._validation import positive_int
from alphanet_fast.baselines._common import check_inputs, check_val
from alphanet_fast.baselines.methods import METHODS, Method
from alphanet_fast.baselines.self_check import skipping
from alphanet_fast.comparison import _checks
from alphanet_fast.comparison._scoring import Family, derive, hits_report, score_split
from alphanet_fast.comparison.report import (
    PLAIN_LABEL,
    ComparisonReport,
    ComparisonRow,
    ComparisonRun,
)
from alphanet_fast.settings import FEW_BELOW, MANY_ABOVE
from alphanet_fast.splits import splits_from_counts

__all__ = [
    "METHODS",
    "PLAIN_LABEL",
    "ComparisonReport",
    "ComparisonRow",
    "ComparisonRun",
    "compare",
]


class _Sets:
    """The arrays, checked once: train, the given classifier, val, test; splits and k."""

    def __init__(self, train: Any, W: Any, b: Any, val: Any, test: Any, an_opts: dict) -> None:
        if not isinstance(train, (tuple, list)) or len(train) != 2:
            detail = f"expected a (features, labels) pair, found {type(train).__name__}"
            raise fail("train", detail, type_error=True)
        inp = check_inputs(train[0], train[1], W, b)
        self.x, self.y, self.W, self.b = inp.x, inp.y, inp.W, inp.b
        n_classes, d = inp.W.shape
        if val is None:
            raise fail("val", "compare() chooses on validation data; give val=(features, labels)")
        self.val = check_val(val, d, n_classes)
        self.test = None if test is None else check_val(test, d, n_classes, "test")
        few_below = an_opts.get("few_below", FEW_BELOW)
        many_above = an_opts.get("many_above", MANY_ABOVE)
        self.splits = splits_from_counts(inp.counts, few_below=few_below, many_above=many_above)
        self.split_of = split_of_classes(self.splits, n_classes)
        self.ks = tuple(sorted({1, min(5, n_classes)}))


@dataclass(eq=False)
class _Fit:
    """One run's classifier, and how its scores follow from a family's (see ``_scoring``)."""

    W: np.ndarray
    b: np.ndarray
    transform: Any
    settings: dict[str, Any]
    family: int
    scale: np.ndarray | None = None
    combos: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


@dataclass(eq=False)
class _Row:
    name: str
    method: str
    base: str | None
    rho: float | None
    fits: list[_Fit] = field(default_factory=list)
    seconds: float = 0.0


def _row_scales(W: np.ndarray, given: np.ndarray) -> np.ndarray:
    """Per class, the factor that best maps the given row onto ``W``'s (least squares)."""
    g = given.astype(np.float64)
    norms = np.einsum("ij,ij->i", g, g)
    dots = np.einsum("ij,ij->i", W.astype(np.float64), g)
    return np.divide(dots, norms, out=np.ones_like(dots), where=norms > 0)


def _baseline_row(
    method: Method, sets: _Sets, seeds: list[int], kw: dict[str, Any], families: list
) -> _Row:
    row = _Row(method.label, method.name, None, None)
    if method.needs_val and not any(t in kw for t in method.tunes):
        kw = {**kw, "val": sets.val}
    for s in seeds if method.seeded else seeds[:1]:
        run_kw = {**kw, "seed": s} if method.seeded else kw
        start = time.perf_counter()
        res = method.function(sets.x, sets.y, sets.W, sets.b, **run_kw)
        row.seconds += time.perf_counter() - start
        fit = _Fit(res.W, res.b, res.transform, res.settings, family=0)
        if method.rescales:
            fit.scale = _row_scales(res.W, sets.W)
        else:
            families.append((res.W, res.transform))
            fit.family = len(families) - 1
        row.fits.append(fit)
    return row


def _combos(res: Any, scale: np.ndarray | None) -> Any:
    """AlphaNet's few rows as combinations of its base's columns (see ``_scoring.derive``)."""
    if res.few_classes.size == 0:
        return None
    idx = np.column_stack([res.few_classes, res.neighbors]).astype(np.int64)
    coef = np.asarray(res.alphas, dtype=np.float64)
    if scale is not None:
        coef = coef * scale[idx]
    return res.few_classes, idx, coef


def _alphanet_fit(sets: _Sets, fit: _Fit, row: _Row, seed: int, an_opts: dict) -> _Fit:
    """One AlphaNet run on ``fit`` at ``row``'s rho; its time is added to the row's."""
    from alphanet_fast.training import correct

    start = time.perf_counter()
    # The baselines' own rows are in the table: no check inside correct().
    with warnings.catch_warnings(), skipping():
        # "no class is few": the row is then its base, which the table shows.
        warnings.simplefilter("ignore", UserWarning)
        res = correct(sets.x, sets.y, fit.W, fit.b, val=sets.val, rho=row.rho, seed=seed, **an_opts)
    row.seconds += time.perf_counter() - start
    settings = {**res.config, "best_epoch": res.best_epoch}
    combos = _combos(res, fit.scale)
    return _Fit(res.W, res.b, None, settings, fit.family, fit.scale, combos)


def _alphanet_rows(
    sets: _Sets,
    rows: dict[str, _Row],
    alphanet_on: Sequence[str],
    rhos: Sequence[float],
    seeds: list[int],
    an_opts: dict[str, Any],
) -> list[_Row]:
    from alphanet_fast.training.scoring import sharing_val_scores

    out = []
    for base in alphanet_on:
        fits = rows[base].fits
        fits = fits * len(seeds) if len(fits) == 1 else fits
        label = "plain" if base == "plain" else METHODS[base].label
        base_rows = [_Row(f"{label} + AlphaNet (rho={r:g})", "alphanet", base, r) for r in rhos]
        # A base's runs at every rho, one seed after another: consecutive runs on one
        # classifier, so they score the validation rows once (sharing_val_scores).
        for fit, s in zip(fits, seeds):
            with sharing_val_scores():
                for row in base_rows:
                    row.fits.append(_alphanet_fit(sets, fit, row, s, an_opts))
        out.extend(base_rows)
    return out


def _evaluate(
    sets: _Sets, rows: list[_Row], families: list, stats: dict[str, int]
) -> list[ComparisonRow]:
    """Every run's reports on val and test, each family's product computed once per split."""
    fits = [f for r in rows for f in r.fits]
    reports: dict[str, list[Any]] = {"val": [], "test": [None] * len(fits)}
    derived: dict[np.dtype, tuple[list[Family], list[Any]]] = {}
    for name in ("val", "test"):
        pair = getattr(sets, name)
        if pair is None:
            continue
        x, y = pair
        if x.dtype not in derived:  # the maps and bounds depend on the dtype scored in
            fams = [Family(np.ascontiguousarray(W, dtype=x.dtype)) for W, _ in families]
            runs = [derive(f.family, fams[f.family], f.W, f.b, f.scale, f.combos) for f in fits]
            derived[x.dtype] = (fams, runs)
        fams, runs = derived[x.dtype]
        features = [x if tr is None else tr(x) for _, tr in families]
        counts: dict[str, int] = {}
        hits = score_split(features, y, fams, runs, sets.ks, counts)
        for key, v in counts.items():
            stats[key] = stats.get(key, 0) + v
        reports[name] = [hits_report(h, y, sets.split_of, sets.ks) for h in hits]
    out, i = [], 0
    for r in rows:
        runs = []
        for fit in r.fits:
            runs.append(
                ComparisonRun(
                    r.name,
                    r.method,
                    r.base,
                    r.rho,
                    fit.settings,
                    fit.W,
                    fit.b,
                    fit.transform,
                    reports["val"][i],
                    reports["test"][i],
                )  # fmt: skip
            )
            i += 1
        out.append(ComparisonRow(r.name, r.method, r.base, r.rho, runs, r.seconds))
    return out


def compare(
    train: tuple[Any, Any],
    W: Any,
    b: Any = None,
    *,
    val: tuple[Any, Any],
    test: tuple[Any, Any] | None = None,
    methods: Sequence[str] = tuple(METHODS),
    alphanet_on: Sequence[str] = ("plain", "crt", "lws"),
    rhos: Sequence[float] = (0.5, 1.0, 1.5),
    seeds: int = 3,
    criterion: str | Mapping[str, float] = "overall",
    options: Mapping[str, Mapping[str, Any]] | None = None,
    alphanet_options: Mapping[str, Any] | None = None,
    device: Any = "auto",
    seed: int = 0,
) -> ComparisonReport:
    """Run the baselines and AlphaNet on top of them; recommend one on validation.

    Rows: the given classifier ("plain"), each of ``methods``, and
    :func:`alphanet_fast.correct` on top of each of ``alphanet_on`` at every
    rho. The trained methods (LWS, cRT, AlphaNet) run once per seed
    (``seed``, ``seed + 1``, ...; AlphaNet on a trained base uses that seed's
    base); the closed-form ones once. Every run is evaluated on ``val`` and
    ``test``; the recommendation is the row whose mean criterion on ``val``
    is highest, and ``report.best`` its classifier to ship. ``test`` is only
    evaluated: permuting its labels changes no setting and no recommendation.

    Parameters
    ----------
    train : (features, labels)
        Training features (arrays, memory maps, ``.npy`` paths) and labels.
    W, b : the given classifier
    val : (features, labels)
        Chooses tau, AlphaNet's epoch, and the recommendation.
    test : (features, labels), optional
        Reported only.
    methods : sequence of str, default every name in ``METHODS``
    alphanet_on : sequence of str, default ("plain", "crt", "lws")
        Bases AlphaNet corrects: "plain" or names in ``methods``.
    rhos : sequence of float, default (0.5, 1.0, 1.5)
    seeds : int, default 3
    criterion : "overall", "few", or mapping of split to weight, default "overall"
        Maximised on validation top-1, e.g. ``{"few": 0.5, "overall": 0.5}``.
    options : mapping of method to keywords, optional
        Passed to that baseline, over its ``METHODS[name].compare_options``
        (LWS: 2 epochs of 32 draws per class, cRT: 4 epochs of 64 starting from
        ``W``; at most ``n`` draws an epoch).
    alphanet_options : mapping, optional
        Keywords of :func:`alphanet_fast.correct` (not ``rho``, ``seed``, ``val``);
        ``few_below``/``many_above`` also set the reported splits.
    device : str, default "auto"
        For the trained methods unless their options say otherwise.
    seed : int, default 0
        The first seed.

    Returns
    -------
    ComparisonReport

    Raises
    ------
    ArgumentError
        (a ``ValueError``; ``ArgumentTypeError``, also a ``TypeError``, for a
        wrong kind of value) naming the argument in ``.argument``: bad arrays,
        an unknown method, criterion or option, AlphaNet on a method that is
        not run, or on a classifier of transformed features (Euclidean cl2n NCM).

    Examples
    --------
    >>> import alphanet_fast as af
    >>> d = af.datasets.make_long_tail("small", seed=0)
    >>> rep = af.compare((d.train_features, d.train_labels), d.W, d.b,
    ...                  val=(d.val_features, d.val_labels), methods=("tau_norm",),
    ...                  alphanet_on=(), seeds=1)
    >>> [r.name for r in rep.rows]
    ['plain (given)', 'tau-norm']
    >>> rep.best.method in ("plain", "tau_norm")
    True
    """
    t0 = time.perf_counter()
    methods = _checks.names(methods, "methods", tuple(METHODS))
    alphanet_on = _checks.names(alphanet_on, "alphanet_on", ("plain", *methods))
    rhos = _checks.rhos(rhos) if alphanet_on else ()
    n_seeds = positive_int(seeds, "seeds")
    crit = _checks.criterion(criterion)
    opts = _checks.options(options, methods)
    an_opts = {"progress": False, "device": device, **_checks.alphanet_options(alphanet_options)}
    seed_list = [_checks.seed(seed) + i for i in range(n_seeds)]
    sets = _Sets(train, W, b, val, test, an_opts)
    checked = time.perf_counter()

    families: list[tuple[np.ndarray, Any]] = [(sets.W, None)]
    rows = {"plain": _Row(PLAIN_LABEL, "plain", None, None, [_Fit(sets.W, sets.b, None, {}, 0)])}
    for name in methods:
        method = METHODS[name]
        kw = {**method.compare_defaults(sets.x.shape[0], sets.W.shape[0]), **opts.get(name, {})}
        if method.seeded:
            kw.setdefault("device", device)
        rows[name] = _baseline_row(method, sets, seed_list, kw, families)
        if name in alphanet_on and rows[name].fits[0].transform is not None:
            raise fail(
                "alphanet_on",
                f"{name} scores transformed features (metric='euclidean', cl2n=True); "
                "AlphaNet needs a classifier of the raw features",
                value=name,
            )
    plan = list(rows.values()) + _alphanet_rows(sets, rows, alphanet_on, rhos, seed_list, an_opts)
    scoring = time.perf_counter()
    stats: dict[str, int] = {}
    table = _evaluate(sets, plan, families, stats)
    best = max(table, key=lambda r: r.score(crit))  # max keeps the first of equal scores
    end = time.perf_counter()
    timings = {
        "checks": checked - t0,
        "runs": sum(r.seconds for r in plan),
        "scoring": end - scoring,
        "rows_scored": stats.get("rows", 0),
        "rows_scored_again": stats.get("rescored", 0),
    }
    return ComparisonReport(
        table, crit, best.name, seed_list, end - t0, splits=sets.splits, timings=timings
    )
