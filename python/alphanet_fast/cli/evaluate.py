"""``alphanet-fast evaluate``: accuracy per split of one or more classifiers."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from alphanet_fast.evaluation import evaluate
from alphanet_fast.files.classifiers import load_classifier
from alphanet_fast.files.data_files import SPLIT_NAMES, InputError, load_lines
from alphanet_fast.settings import DISTANCES

from . import report
from .common import check_set, guard_outputs, ks_for, load_result_checked, load_set, print_tables
from .neighbors import splits_and_neighbors
from .parser import add_common, add_data, add_labels_file, add_split_settings

__all__ = ["register", "run_evaluate"]


def register(sub: Any) -> None:
    """Add ``evaluate`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "evaluate",
        help="accuracy per split of one or more classifiers on a data file",
        description="Top-1/top-5 accuracy per split (few/medium/many by the training counts) "
        "and the few-split error breakdown, for one or more classifiers side by side.",
    )
    p.add_argument("data", type=Path, help="the set to evaluate on (features and labels)")
    p.add_argument(
        "classifiers",
        type=Path,
        nargs="+",
        metavar="classifier",
        help="one or more classifiers with the same classes",
    )
    p.add_argument("--labels", type=Path, metavar="PATH", help="labels of a .npy data file")
    p.add_argument(
        "--split",
        choices=SPLIT_NAMES,
        default="test",
        help="which set of a file that bundles several (test_x, x_test, test_features, ...) "
        "the data is (default: %(default)s)",
    )
    src = p.add_argument_group("splits (one of)")
    src.add_argument(
        "--train", type=Path, metavar="PATH", help="training set: counts give the splits"
    )
    add_labels_file(src, "train")
    src.add_argument(
        "--result",
        type=Path,
        metavar="PATH",
        help="a result saved by 'correct --result': its splits and neighbours",
    )
    add_data(p, train=False, val=False, test=False, names=False)
    add_split_settings(p, metrics=DISTANCES)
    p.add_argument("--report", type=Path, metavar="PATH", help="write the reports as JSON")
    add_common(p)
    p.set_defaults(func=run_evaluate, result_is_input=True)


def _splits(args: argparse.Namespace, clf: Any):
    """The splits and neighbours, from --result or from the training file."""
    if args.result is not None:
        res = load_result_checked(args.result, clf.n_classes)
        return res.splits, res
    Xt, yt = load_set(args, args.train, args.train_labels, "train", "--train-labels")
    check_set(Xt, yt, args.train, clf)
    splits, neighbors = splits_and_neighbors(Xt, yt, clf.n_classes, args)[:2]
    if neighbors[0].size < splits.few.size:
        neighbors = None  # some few class has no mean, hence no neighbours: no breakdown
    return splits, neighbors


def run_evaluate(args: argparse.Namespace) -> int:
    """``alphanet-fast evaluate``: print (and write) the accuracy tables."""
    if (args.train is None) == (args.result is None):
        raise InputError("give the splits with exactly one of --train or --result")
    guard_outputs(args, [("--report", args.report, False)])
    X, y = load_set(args, args.data, args.labels, args.split, "--labels")
    clfs = [
        load_classifier(p, weight_key=args.weight_key, dim=X.shape[1]) for p in args.classifiers
    ]
    C = clfs[0].n_classes
    for clf in clfs:
        if clf.W.shape != clfs[0].W.shape:
            raise InputError(f"{clf.describe()}: not the shape of {clfs[0].describe()}")
        check_set(X, y, args.data, clf)
    splits, neighbors = _splits(args, clfs[0])
    groups = None if args.groups is None else load_lines(args.groups, n=C, what="groups")
    reports = {}
    for clf in clfs:
        key = str(clf.path) if str(clf.path) not in reports else clf.describe()
        reports[key] = evaluate(
            X, y, clf.W, clf.b, splits=splits, k=ks_for(C), neighbors=neighbors, groups=groups
        )
    print_tables(str(args.data), len(y), reports)
    if args.report is not None:
        report.write(
            args.report, "evaluate", data=args.data, splits=report.split_lists(splits),
            reports={k: r.to_dict() for k, r in reports.items()},
        )  # fmt: skip
        print(f"\nwrote {args.report}")
    return 0
