"""``alphanet-fast neighbors``, and the splits-and-neighbours step shared with ``evaluate``."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from alphanet_fast._memory import memory_limit_bytes
from alphanet_fast.files.data_files import InputError, class_names_of, load_class_names
from alphanet_fast.settings import DISTANCES

from . import report
from .common import guard_outputs, label, load_result_checked, load_set, warn
from .parser import add_class_names, add_common, add_keys, add_labels_file, add_split_settings

__all__ = ["class_count", "register", "run_neighbors", "splits_and_neighbors"]

# Distances are printed with this many significant digits, everywhere.
DISTANCE_DIGITS = 4


def register(sub: Any) -> None:
    """Add ``neighbors`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "neighbors",
        help="list each few class's nearest base classes with distances",
        description="For every few class, its k nearest base (medium or many) classes by "
        "the distance between training class means, nearest first.",
    )
    p.add_argument("train", type=Path, nargs="?", help="training features (and labels)")
    add_labels_file(p, "train")
    p.add_argument(
        "--result",
        type=Path,
        metavar="PATH",
        help="show the neighbours a saved result used instead",
    )
    p.add_argument(
        "--n-classes",
        type=int,
        metavar="C",
        help="number of classes (default: class names, else the largest label + 1)",
    )
    add_class_names(p)
    add_keys(p)
    add_split_settings(p, metrics=DISTANCES)
    p.add_argument("--report", type=Path, metavar="PATH", help="also write them as JSON")
    add_common(p)
    p.set_defaults(func=run_neighbors, result_is_input=True)


def splits_and_neighbors(X: np.ndarray, y: np.ndarray, n_classes: int, args: argparse.Namespace):
    """Splits from training counts, and each few class's k nearest base classes by class mean.

    Neighbours come from :func:`alphanet_fast.neighbors.choose_neighbors`, the
    rule :func:`alphanet_fast.correct` uses, with ``empty="skip"``: few classes
    without a training row have no mean and are left out with a warning.

    Returns
    -------
    splits : Splits
    (few, neighbors) : the few classes that have neighbours, and their ``(F, k)`` table
    distances : ndarray of float64, shape (F, k)
    counts : ndarray of int64, the training rows per class
    """
    from alphanet_fast.neighbors import choose_neighbors
    from alphanet_fast.splits import splits_from_counts

    counts = np.bincount(y, minlength=n_classes)
    splits = splits_from_counts(counts, few_below=args.few_below, many_above=args.many_above)
    if splits.base.size == 0:
        raise InputError(
            f"no base class: every class has fewer than --few-below={args.few_below} "
            "training samples"
        )
    # Checked here too so that the message names the flag.
    if not 1 <= args.k <= splits.base.size:
        raise InputError(
            f"-k/--k: expected 1 to {splits.base.size} (the number of base classes), found {args.k}"
        )
    nb = choose_neighbors(X, y, splits, args.k, metric=args.metric, empty="skip")
    if nb.skipped.size:
        warn(
            f"{nb.skipped.size} few classes have no training samples and no neighbours "
            f"(first: class {nb.skipped[0]})"
        )
    return splits, (nb.few, nb.classes), nb.distances, counts


def class_count(y: np.ndarray, d: int, given: int | None, source: Path) -> int:
    """The number of classes: ``given``, else the largest label + 1, checked before allocating.

    Raises :class:`InputError` for a label at or above ``given``, an inferred
    count above the number of rows (a stray label such as 10**15), or class
    means that would not fit in memory.
    """
    top = int(y.max())
    if given is not None and top >= given:
        i = int(np.argmax(y >= given))
        raise InputError(f"{source}: label {i} is {y[i]}, but there are {given} classes")
    if given is None and top >= y.size:
        i = int(np.argmax(y == top))
        raise InputError(
            f"{source}: label {i} is {top}, more than the {y.size} rows could hold; give "
            "--n-classes (or --class-names) if there really are that many classes"
        )
    C = top + 1 if given is None else given
    if C * (d + 2) * 8 > memory_limit_bytes():
        raise InputError(f"--n-classes: {C} classes of {d}-d means would not fit in memory")
    return C


def _distance(d: float) -> str:
    return "" if math.isnan(d) else f" {d:.{DISTANCE_DIGITS}f}"


def run_neighbors(args: argparse.Namespace) -> int:
    """``alphanet-fast neighbors``: each few class's nearest base classes, printed (and JSON)."""
    if (args.train is None) == (args.result is None):
        raise InputError("give exactly one of a training file or --result")
    guard_outputs(args, [("--report", args.report, False)])
    if args.result is not None:
        res = load_result_checked(args.result)
        C = res.splits.n_classes
        few, nb, dist, counts = res.few_classes, res.neighbors, res.neighbor_distances, res.counts
        metric = res.config.get("metric", "?")
    else:
        X, y = load_set(args, args.train, args.train_labels, "train", "--train-labels")
        given = args.n_classes
        if given is None and args.class_names is not None:
            given = len(load_class_names(args.class_names))
        C = class_count(y, X.shape[1], given, args.train)
        _, (few, nb), dist, counts = splits_and_neighbors(X, y, C, args)
        metric = args.metric
    if args.class_names is not None:
        names = load_class_names(args.class_names, C)
    else:  # a class_names entry of a .npz training file, if it has one
        names = None if args.train is None else class_names_of(args.train, C)
    k = nb.shape[1] if nb.ndim == 2 else 0
    print(f"{few.size} few classes, {k} nearest base classes each ({metric} distance between "
          "class means):")  # fmt: skip
    for i, f in enumerate(few.tolist()):
        parts = ", ".join(f"{label(int(c), names)}{_distance(d)}" for c, d in zip(nb[i], dist[i]))
        where = f"class {f}, " if names is not None else ""
        print(f"{label(f, names)} ({where}{int(counts[f])} training samples): {parts}")
    if args.report is not None:
        rows = report.few_class_rows(few, counts, nb, dist, names)
        report.write(args.report, "neighbors", metric=metric, few_classes=rows)
        print(f"\nwrote {args.report}")
    return 0
