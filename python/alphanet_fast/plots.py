"""PNG figures of what a correction did, in the style of the paper's figures.

Each function takes the data and an output path, writes one PNG (to a
temporary name, then renamed) and returns the path. The figures are drawn on
matplotlib ``Figure`` objects with the Agg renderer, never through
``pyplot``, so they work without a display and leave no global state behind.
An image is exactly ``size[0] * dpi`` by ``size[1] * dpi`` pixels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alphanet_fast._errors import fail
from alphanet_fast.evaluation import OUTCOMES, SPLITS, EvaluationReport
from alphanet_fast.files._atomic import atomic_write, open_temp

__all__ = [
    "pearson_r",
    "plot_error_breakdown",
    "plot_gain_vs_distance",
    "plot_rho_sweep",
    "plot_split_accuracies",
    "plot_tradeoff",
    "tradeoff_styles",
]

_SPLIT_LABELS = {"few": "Few", "medium": "Medium", "many": "Many", "overall": "Overall"}
_OUTCOME_LABELS = {
    "correct": "correct",
    "neighbor": "wrong: a nearest base class",
    "other": "wrong: another class",
}
_OUTCOME_COLORS = {"correct": "#4c9f70", "neighbor": "#e08a3c", "other": "#b9b9b9"}


def _figure(size: tuple[float, float], dpi: int) -> Any:
    from matplotlib.figure import Figure

    # A plain Figure uses the Agg canvas for PNG output; no pyplot, no display.
    return Figure(figsize=size, dpi=dpi, layout="constrained")


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    # No bbox_inches="tight": the image keeps exactly the requested pixel size.
    with atomic_write(path) as tmp, open_temp(tmp) as f:
        fig.savefig(f, format="png", dpi=fig.dpi)
    return Path(path)


def _check_reports(
    reports: Mapping[Any, EvaluationReport], name: str = "reports", where: str = ""
) -> None:
    """Reports, each an :class:`EvaluationReport`; ``where``: the entry of ``name`` they are."""
    if not reports:
        raise fail(name, f"{where}expected at least one report")
    for key, rep in reports.items():
        if not isinstance(rep, EvaluationReport):
            found = type(rep).__name__
            detail = f"{where}entry {key!r}: expected an EvaluationReport, found {found}"
            raise fail(name, detail, type_error=True)


def plot_split_accuracies(
    reports: Mapping[str, EvaluationReport],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    size: tuple[float, float] = (10.0, 4.0),
    dpi: int = 100,
) -> Path:
    """Grouped bars of accuracy per split (few, medium, many, overall), one panel per top-k.

    Parameters
    ----------
    reports : mapping of str to EvaluationReport
        One bar colour per method, e.g. ``{"baseline": before, "AlphaNet": after}``.
    path : path-like
        The PNG to write.
    title : str, optional
    size : (width, height) in inches
    dpi : int
        Pixels per inch.

    Returns
    -------
    Path
    """
    _check_reports(reports)
    ks = sorted(set.intersection(*(set(r.ks) for r in reports.values())))
    fig = _figure(size, dpi)
    axes = fig.subplots(1, len(ks), squeeze=False)[0]
    x = np.arange(len(SPLITS))
    width = 0.8 / len(reports)
    for ax, k in zip(axes, ks):
        for i, (name, rep) in enumerate(reports.items()):
            vals = np.array([rep.accuracy[k][s] for s in SPLITS]) * 100
            bars = ax.bar(
                x + (i - (len(reports) - 1) / 2) * width, np.nan_to_num(vals), width, label=name
            )
            ax.bar_label(
                bars, labels=[("" if math.isnan(v) else f"{v:.1f}") for v in vals], fontsize=7
            )
        ax.set_xticks(x, [_SPLIT_LABELS[s] for s in SPLITS])
        ax.set_ylabel(f"top-{k} accuracy (%)")
        ax.set_ylim(0, 105)
        ax.set_title(f"Top-{k}")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def pearson_r(x: Any, y: Any) -> float:
    """Pearson correlation of the finite pairs of ``x`` and ``y``; NaN if undefined."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def plot_gain_vs_distance(
    distance: Any,
    gain: Any,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    xlabel: str = "mean distance to the nearest base classes",
    ylabel: str = "change in top-1 accuracy (points)",
    size: tuple[float, float] = (6.0, 4.5),
    dpi: int = 100,
) -> Path:
    """Per-class accuracy change against neighbour distance, with a fitted line (paper's Fig. 4).

    Parameters
    ----------
    distance : array_like, shape (F,) or (F, k)
        Per few class, the distance to its nearest base classes; a 2-d array
        (``result.neighbor_distances``) is averaged over its k columns.
    gain : array_like, shape (F,)
        Per few class, accuracy after minus before, as fractions (plotted in
        points, i.e. x 100). Pairs with NaN (classes absent from the
        evaluated set) are left out.
    path : path-like
        The PNG to write.
    title, xlabel, ylabel : str, optional
    size : (width, height) in inches
    dpi : int

    Returns
    -------
    Path
        The legend gives the least-squares line and Pearson r.
    """
    d = np.asarray(distance, dtype=float)
    if d.ndim == 2:
        d = d.mean(axis=1)
    g = np.asarray(gain, dtype=float).reshape(-1) * 100
    if d.ndim != 1 or d.shape != g.shape:
        raise fail(
            "distance",
            f"expected one value (or row) per entry of gain ({g.shape[0]}), "
            f"found shape {np.shape(distance)}",
        )
    keep = np.isfinite(d) & np.isfinite(g)
    d, g = d[keep], g[keep]
    fig = _figure(size, dpi)
    ax = fig.subplots()
    ax.axhline(0, color="0.6", lw=0.8)
    ax.scatter(d, g, s=18, alpha=0.7, color="#3b6fb6", label=f"few classes (n={d.size})")
    r = pearson_r(d, g)
    if not math.isnan(r):
        slope, intercept = np.polyfit(d, g, 1)
        xs = np.linspace(d.min(), d.max(), 2)
        ax.plot(
            xs,
            slope * xs + intercept,
            color="#c0392b",
            label=f"fit: slope {slope:.2f}, r = {r:.2f}",
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or "Accuracy change vs. neighbour distance")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_rho_sweep(
    sweep: Mapping[float, Sequence[EvaluationReport]],
    path: str | os.PathLike[str],
    *,
    baseline: EvaluationReport | None = None,
    k: int = 1,
    title: str | None = None,
    size: tuple[float, float] = (6.5, 4.5),
    dpi: int = 100,
) -> Path:
    """Few-split and overall top-k accuracy against rho, mean and std over seeds as error bars.

    Parameters
    ----------
    sweep : mapping of float to sequence of EvaluationReport
        For each rho, one report per seed.
    path : path-like
        The PNG to write.
    baseline : EvaluationReport, optional
        Drawn as dashed horizontal lines.
    k : int
        Which top-k accuracy.
    title : str, optional
    size : (width, height) in inches
    dpi : int

    Returns
    -------
    Path
    """
    if not sweep or any(len(v) == 0 for v in sweep.values()):
        raise fail("sweep", "expected at least one report for every rho")
    rhos = np.array(sorted(float(r) for r in sweep))
    by_rho = {float(r): list(v) for r, v in sweep.items()}
    fig = _figure(size, dpi)
    ax = fig.subplots()
    colors = {"few": "#c0392b", "overall": "#3b6fb6"}
    for split in ("few", "overall"):
        vals = [np.array([rep.accuracy[k][split] for rep in by_rho[r]]) * 100 for r in rhos]
        mean = np.array([v.mean() for v in vals])
        std = np.array([v.std(ddof=1) if v.size > 1 else 0.0 for v in vals])
        ax.errorbar(
            rhos,
            mean,
            yerr=std,
            marker="o",
            capsize=4,
            color=colors[split],
            label=f"{_SPLIT_LABELS[split]} (AlphaNet)",
        )
        if baseline is not None:
            ax.axhline(
                baseline.accuracy[k][split] * 100,
                ls="--",
                color=colors[split],
                alpha=0.7,
                label=f"{_SPLIT_LABELS[split]} (baseline)",
            )
    ax.set_xlabel("rho (base samples per few sample)")
    ax.set_ylabel(f"top-{k} accuracy (%)")
    ax.set_xticks(rhos)
    ax.set_title(title or "Trade-off between few-split and overall accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_error_breakdown(
    reports: Mapping[str, EvaluationReport],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    size: tuple[float, float] = (6.0, 4.5),
    dpi: int = 100,
) -> Path:
    """Stacked bars of where few-split samples' top-1 predictions go (paper's Fig. 1).

    One bar per method: correct, wrong as one of the class's nearest base
    classes, wrong as any other class, in percent of the few-split samples.

    Parameters
    ----------
    reports : mapping of str to EvaluationReport
        Each evaluated with neighbours (``report.few_errors`` set).
    path : path-like
        The PNG to write.
    title : str, optional
    size : (width, height) in inches
    dpi : int

    Returns
    -------
    Path
    """
    _check_reports(reports)
    missing = [name for name, rep in reports.items() if rep.few_errors is None]
    if missing:
        detail = f"entry {missing[0]!r} has no few-split breakdown; evaluate with neighbors="
        raise fail("reports", detail)
    fig = _figure(size, dpi)
    ax = fig.subplots()
    names = list(reports)
    x = np.arange(len(names))
    bottom = np.zeros(len(names))
    for outcome in OUTCOMES:
        share = np.array([(reports[n].few_error_shares() or {})[outcome] for n in names]) * 100
        share = np.nan_to_num(share)
        bars = ax.bar(
            x,
            share,
            0.6,
            bottom=bottom,
            color=_OUTCOME_COLORS[outcome],
            label=_OUTCOME_LABELS[outcome],
        )
        ax.bar_label(
            bars,
            labels=[f"{v:.1f}" if v >= 3 else "" for v in share],
            label_type="center",
            fontsize=8,
        )
        bottom += share
    ax.set_xticks(x, names)
    ax.set_ylabel("few-split test samples (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or "Top-1 predictions of few-split samples")
    # Below the axes: the bars fill the plot up to 100%.
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    return _save(fig, path)


#: Markers of the rho values (in order of appearance) in :func:`plot_tradeoff`;
#: points without a rho are circles.
TRADEOFF_MARKERS = ("^", "s", "D", "v", "P", "X", "<", ">", "p", "h")


def tradeoff_styles(
    names: Sequence[str], style: Mapping[str, tuple[Any, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """How :func:`plot_tradeoff` draws each series: ``color``, ``marker``, ``linestyle``.

    With ``style`` (name to ``(group, rho)``), the colour says the group (e.g. the
    classifier AlphaNet corrected, shared with that classifier's own point) and
    the marker the rho (a circle without one); past the tenth group or rho the
    colours and markers go on as generated ones, so no two names are drawn
    alike as long as their ``(group, rho)`` differ. Without ``style``, every
    name gets its own colour and marker.

    Parameters
    ----------
    names : sequence of str
    style : mapping of str to (hashable, float or None), optional

    Returns
    -------
    dict of str to dict
    """
    if style is None:
        style = {n: (n, None) for n in names}
    missing = [n for n in names if n not in style]
    if missing:
        raise fail("style", f"no (group, rho) for {missing[0]!r}", value=missing[0])
    groups = list(dict.fromkeys(style[n][0] for n in names))
    rhos = list(dict.fromkeys(style[n][1] for n in names if style[n][1] is not None))
    out = {}
    for n in names:
        group, rho = style[n]
        g = groups.index(group)
        color = f"C{g}" if g < 10 else _generated_color(g)
        if rho is None:
            marker: Any = "o"
        else:
            i = rhos.index(rho)
            # Beyond the list: stars with ever more points, each distinct.
            marker = TRADEOFF_MARKERS[i] if i < len(TRADEOFF_MARKERS) else (i - 4, 1, 0)
        out[n] = {"color": color, "marker": marker, "linestyle": "none"}
    return out


def _generated_color(i: int) -> tuple[float, float, float]:
    # Golden-angle hues: far apart from each other and from the ten C0..C9.
    import colorsys

    return colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75, 0.6 + 0.3 * (i % 2))


def plot_tradeoff(
    points: Mapping[str, Sequence[EvaluationReport]],
    path: str | os.PathLike[str],
    *,
    k: int = 1,
    highlight: str | None = None,
    style: Mapping[str, tuple[Any, Any]] | None = None,
    title: str | None = None,
    size: tuple[float, float] = (7.0, 5.0),
    dpi: int = 100,
) -> Path:
    """Every method as a point of few-split against overall top-k accuracy.

    The trade-off users choose on: up is better overall, right is better on the
    rare classes. Points are means over runs, with the standard deviation as
    error bars when there are several runs. No two series are drawn alike
    (see :func:`tradeoff_styles`).

    Parameters
    ----------
    points : mapping of str to sequence of EvaluationReport
        Per method (e.g. a :class:`alphanet_fast.compare` row), one report per run.
    path : path-like
        The PNG to write.
    k : int
        Which top-k accuracy.
    highlight : str, optional
        A method drawn larger, ringed in black (e.g. the recommended one).
    style : mapping of str to (group, rho), optional
        Colour by group, marker by rho (e.g. a comparison's rows: the classifier
        corrected and AlphaNet's rho). Default: a colour and marker per method.
    title : str, optional
    size : (width, height) in inches
    dpi : int

    Returns
    -------
    Path
    """
    if not points or any(len(v) == 0 for v in points.values()):
        raise fail("points", "expected at least one report for every method")
    for name, reps in points.items():
        _check_reports(dict(enumerate(reps)), "points", f"entry {name!r}: ")
    styles = tradeoff_styles(list(points), style)
    fig = _figure(size, dpi)
    ax = fig.subplots()
    for name, reps in points.items():
        few = np.array([r.accuracy[k]["few"] for r in reps]) * 100
        overall = np.array([r.accuracy[k]["overall"] for r in reps]) * 100
        marked = name == highlight
        ax.errorbar(
            few.mean(),
            overall.mean(),
            xerr=_sample_std(few),
            yerr=_sample_std(overall),
            markersize=13 if marked else 7,
            markeredgecolor="black" if marked else styles[name]["color"],
            markeredgewidth=2.0 if marked else 1.0,
            capsize=3,
            label=name + (" (recommended)" if marked else ""),
            **styles[name],
        )
    ax.set_xlabel(f"few-split top-{k} accuracy (%)")
    ax.set_ylabel(f"overall top-{k} accuracy (%)")
    ax.set_title(title or "Few-split vs overall accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def _sample_std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if values.size > 1 else 0.0
