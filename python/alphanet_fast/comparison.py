"""Which post-hoc fix to ship: the baselines and AlphaNet on top of them, side by side.

:func:`compare` runs every baseline of :mod:`alphanet_fast.baselines` and
:func:`alphanet_fast.correct` on top of the chosen ones, evaluates each on the
validation and test sets, and recommends the row that is best on validation
by the user's criterion. The test set is only ever evaluated on: no setting,
epoch or recommendation reads it.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alphanet_fast._validation import positive_int
from alphanet_fast.baselines._common import check_inputs, check_val
from alphanet_fast.baselines.methods import METHODS, Method
from alphanet_fast.evaluation import SPLITS, EvaluationReport, evaluate, format_table
from alphanet_fast.splits import splits_from_counts

__all__ = ["METHODS", "ComparisonReport", "ComparisonRow", "compare"]

#: The label of the given classifier's row.
PLAIN_LABEL = "plain (given)"


def _label(base: str) -> str:
    return "plain" if base == "plain" else METHODS[base].label


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
    settings : list of dict
        Per run, the settings used and chosen (e.g. ``tau``, ``best_epoch``).
    val, test : list of EvaluationReport
        Per run; ``test`` is empty without a test set.
    seconds : float
        Time of the runs (the AlphaNet rows exclude their base's time).
    """

    name: str
    method: str
    base: str | None
    rho: float | None
    settings: list[dict[str, Any]] = field(default_factory=list)
    val: list[EvaluationReport] = field(default_factory=list)
    test: list[EvaluationReport] = field(default_factory=list)
    seconds: float = 0.0

    def score(self, criterion: Mapping[str, float]) -> float:
        """Mean over runs of the criterion's weighted top-1 validation accuracies."""
        values = [sum(w * rep.accuracy[1][s] for s, w in criterion.items()) for rep in self.val]
        return float(np.mean(values))


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
    """

    rows: list[ComparisonRow]
    criterion: dict[str, float]
    recommended: str
    seeds: list[int]
    seconds: float

    def row(self, name: str) -> ComparisonRow:
        """The row called ``name``."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"name: no row {name!r}; rows are {[r.name for r in self.rows]}")

    def table(self, on: str = "test", *, digits: int = 1) -> str:
        """A paper-style table (Method | Few | Med. | Many | Overall, top-1 and top-5).

        Rows with several runs show mean ± std over seeds; the recommended row
        is marked with ``*``, and a last line says on what it was chosen.

        Parameters
        ----------
        on : {"test", "val"}
            Which set's accuracies to show.
        digits : int

        Returns
        -------
        str
        """
        if on not in ("test", "val"):
            raise ValueError(f"on: expected 'test' or 'val', found {on!r}")
        if on == "test" and not self.rows[0].test:
            raise ValueError("on: the comparison was run without a test set; use on='val'")
        reports = {
            ("* " if r.name == self.recommended else "  ") + r.name: getattr(r, on)
            for r in self.rows
        }
        text = format_table(reports, digits=digits)
        crit = " + ".join(
            s if w == 1 else f"{w:g} x {s}" for s, w in self.criterion.items() if w != 0
        )
        return (
            f"{text}\n* recommended: {self.recommended} (best top-1 {crit} on the "
            f"validation set, mean over {len(self.seeds)} seed(s))"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: criterion, recommendation, and every row's runs."""
        return {
            "criterion": dict(self.criterion),
            "recommended": self.recommended,
            "seeds": list(self.seeds),
            "seconds": self.seconds,
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
        """Write the few-split against overall accuracy plot (see :func:`plots.plot_tradeoff`)."""
        from alphanet_fast.plots import plot_tradeoff

        if on not in ("test", "val"):
            raise ValueError(f"on: expected 'test' or 'val', found {on!r}")
        points = {r.name: getattr(r, on) for r in self.rows}
        return plot_tradeoff(
            points, path, k=k, highlight=self.recommended,
            title=f"Few-split vs overall top-{k} accuracy ({on} set)",
        )  # fmt: skip


def _criterion(criterion: Any) -> dict[str, float]:
    if isinstance(criterion, str):
        if criterion not in ("overall", "few"):
            raise ValueError(
                f"criterion: expected 'overall', 'few' or a mapping of split to weight, "
                f"found {criterion!r}"
            )
        return {criterion: 1.0}
    if not isinstance(criterion, Mapping) or not criterion:
        raise TypeError(f"criterion: expected 'overall', 'few' or a mapping, found {criterion!r}")
    out = {}
    for split, weight in criterion.items():
        if split not in SPLITS:
            raise ValueError(f"criterion: unknown split {split!r}, expected one of {SPLITS}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise TypeError(f"criterion[{split!r}]: expected a number, found {weight!r}")
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"criterion[{split!r}]: expected a weight >= 0, found {weight!r}")
        out[split] = float(weight)
    if sum(out.values()) == 0:
        raise ValueError("criterion: the weights sum to 0")
    return out


def _names(value: Any, name: str, allowed: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (Sequence, tuple)):
        raise TypeError(
            f"{name}: expected a sequence of names from {tuple(allowed)}, found {value!r}"
        )
    for v in value:
        if v not in allowed:
            raise ValueError(f"{name}: unknown method {v!r}, expected one of {tuple(allowed)}")
    return tuple(dict.fromkeys(value))


def _rhos(rhos: Any) -> tuple[float, ...]:
    if isinstance(rhos, (str, bytes)) or not isinstance(rhos, (Sequence, np.ndarray)):
        raise TypeError(f"rhos: expected a sequence of numbers, found {rhos!r}")
    out = []
    for i, r in enumerate(rhos):
        if isinstance(r, bool) or not isinstance(r, (int, float, np.number)):
            raise TypeError(f"rhos[{i}]: expected a number, found {r!r}")
        if not math.isfinite(r) or r < 0:
            raise ValueError(f"rhos[{i}]: expected a finite number >= 0, found {r!r}")
        out.append(float(r))
    if not out:
        raise ValueError("rhos: expected at least one rho")
    return tuple(dict.fromkeys(out))


def _options(options: Any, methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"options: expected a mapping of method to keywords, found {options!r}")
    for key, kw in options.items():
        if key not in METHODS:
            raise ValueError(f"options: unknown method {key!r}, expected one of {tuple(METHODS)}")
        if not isinstance(kw, Mapping):
            raise TypeError(f"options[{key!r}]: expected a mapping of keywords, found {kw!r}")
        if "seed" in kw or "val" in kw:
            raise ValueError(f"options[{key!r}]: seed and val are set by compare()")
    return {k: dict(v) for k, v in options.items() if k in methods}


class _Sets:
    """The checked train/val/test arrays, splits and the top-k values to report."""

    def __init__(self, train: Any, W: Any, b: Any, val: Any, test: Any, alphanet: dict) -> None:
        if not isinstance(train, (tuple, list)) or len(train) != 2:
            raise TypeError(
                f"train: expected a (features, labels) pair, found {type(train).__name__}"
            )
        inp = check_inputs(train[0], train[1], W, b)
        self.x, self.y, self.W, self.b = inp.x, inp.y, inp.W, inp.b
        n_classes, d = inp.W.shape
        if val is None:
            raise ValueError("val: compare() chooses on validation data; give val=(x, y)")
        self.val = check_val(val, d, n_classes)
        self.test = None
        if test is not None:
            try:
                self.test = check_val(test, d, n_classes, "test")
            except (TypeError, ValueError) as exc:
                raise type(exc)(str(exc).replace("val", "test")) from None
        self.splits = splits_from_counts(
            inp.counts,
            few_below=alphanet.get("few_below", 20),
            many_above=alphanet.get("many_above", 100),
        )
        self.ks = tuple(sorted({1, min(5, n_classes)}))

    def evaluate_into(self, row: ComparisonRow, W: Any, b: Any, transform: Any = None) -> None:
        for name, pair in (("val", self.val), ("test", self.test)):
            if pair is None:
                continue
            x = pair[0] if transform is None else transform(pair[0])
            getattr(row, name).append(evaluate(x, pair[1], W, b, splits=self.splits, k=self.ks))


def _run_baseline(method: Method, sets: _Sets, seed: int, kw: dict[str, Any]) -> Any:
    if method.seeded:
        kw = {**kw, "seed": seed}
    if method.needs_val and not any(t in kw for t in method.tunes):
        kw = {**kw, "val": sets.val}
    return method.function(sets.x, sets.y, sets.W, sets.b, **kw)


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
    is highest. ``test`` is only evaluated: permuting its labels changes no
    setting and no recommendation.

    Parameters
    ----------
    train : (features, labels)
        Training features (arrays, memory maps, ``.npy`` paths) and labels.
    W, b : the given classifier
    val : (features, labels)
        Chooses tau, AlphaNet's epoch, and the recommendation.
    test : (features, labels), optional
        Reported only.
    methods : sequence of str, default all of ``METHODS``
    alphanet_on : sequence of str, default ("plain", "crt", "lws")
        Bases AlphaNet corrects: "plain" or names in ``methods``.
    rhos : sequence of float, default (0.5, 1.0, 1.5)
    seeds : int, default 3
    criterion : "overall", "few", or mapping of split to weight, default "overall"
        Maximised on validation top-1, e.g. ``{"few": 0.5, "overall": 0.5}``.
    options : mapping of method to keywords, optional
        Passed to that baseline, over its ``Method.compare_options`` (LWS: 2 epochs of 32
        draws per class, cRT: 4 epochs of 64 starting from ``W``; at most ``n``
        draws an epoch).
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
    ValueError, TypeError
        Bad inputs (named), an unknown method, AlphaNet on a method that is not
        run, or on a classifier of transformed features (Euclidean cl2n NCM).

    Examples
    --------
    >>> import alphanet_fast as af
    >>> d = af.datasets.make_long_tail("small", seed=0)
    >>> rep = af.compare((d.train_features, d.train_labels), d.W, d.b,
    ...                  val=(d.val_features, d.val_labels), methods=("tau_norm",),
    ...                  alphanet_on=(), seeds=1)
    >>> [r.name for r in rep.rows]
    ['plain (given)', 'tau-norm']
    """
    t0 = time.perf_counter()
    methods = _names(methods, "methods", tuple(METHODS))
    alphanet_on = _names(alphanet_on, "alphanet_on", ("plain", *methods))
    rhos = _rhos(rhos) if alphanet_on else ()
    n_seeds = positive_int(seeds, "seeds")
    crit = _criterion(criterion)
    opts = _options(options, methods)
    an_opts = dict(alphanet_options or {})
    for key in ("rho", "seed", "val"):
        if key in an_opts:
            raise ValueError(f"alphanet_options: {key} is set by compare()")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, found {seed!r}")
    sets = _Sets(train, W, b, val, test, an_opts)
    seed_list = [int(seed) + i for i in range(n_seeds)]

    plain = ComparisonRow(PLAIN_LABEL, "plain", None, None, settings=[{}])
    sets.evaluate_into(plain, sets.W, sets.b)
    rows = [plain]
    bases: dict[str, list[Any]] = {"plain": [(sets.W, sets.b)] * n_seeds}
    for name in methods:
        method = METHODS[name]
        row = ComparisonRow(method.label, name, None, None)
        defaults = method.compare_defaults(sets.x.shape[0], sets.W.shape[0])
        kw = {**defaults, **opts.get(name, {})}
        if method.seeded:
            kw.setdefault("device", device)
        fits = []
        for s in seed_list if method.seeded else seed_list[:1]:
            start = time.perf_counter()
            res = _run_baseline(method, sets, s, kw)
            row.seconds += time.perf_counter() - start
            row.settings.append(res.settings)
            sets.evaluate_into(row, res.W, res.b, res.transform)
            fits.append(res)
        if name in alphanet_on and fits[0].transform is not None:
            raise ValueError(
                f"alphanet_on: {name} scores transformed features (metric='euclidean', "
                "cl2n=True); AlphaNet needs a classifier of the raw features"
            )
        bases[name] = [(f.W, f.b) for f in fits] * (n_seeds if len(fits) == 1 else 1)
        rows.append(row)
    rows += _alphanet_rows(sets, bases, alphanet_on, rhos, seed_list, an_opts, device)
    best = max(rows, key=lambda r: r.score(crit))  # max keeps the first of equal scores
    return ComparisonReport(rows, crit, best.name, seed_list, time.perf_counter() - t0)


def _alphanet_rows(
    sets: _Sets,
    bases: dict[str, list[Any]],
    alphanet_on: Sequence[str],
    rhos: Sequence[float],
    seed_list: list[int],
    an_opts: dict[str, Any],
    device: Any,
) -> list[ComparisonRow]:
    from alphanet_fast.training import correct

    rows = []
    an_opts = {"progress": False, "device": device, **an_opts}
    for base in alphanet_on:
        for rho in rhos:
            row = ComparisonRow(f"{_label(base)} + AlphaNet (rho={rho:g})", "alphanet", base, rho)
            for (Wb, bb), s in zip(bases[base], seed_list):
                start = time.perf_counter()
                with warnings.catch_warnings():
                    # "no class is few": the row is then its base, which the table shows.
                    warnings.simplefilter("ignore", UserWarning)
                    res = correct(sets.x, sets.y, Wb, bb, val=sets.val, rho=rho, seed=s, **an_opts)
                row.seconds += time.perf_counter() - start
                row.settings.append({**res.config, "best_epoch": res.best_epoch})
                sets.evaluate_into(row, res.W, res.b)
            rows.append(row)
    return rows
