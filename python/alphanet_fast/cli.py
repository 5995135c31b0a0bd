"""The ``alphanet-fast`` command line.

Subcommands: ``demo`` (the whole pipeline on built-in synthetic data),
``correct``, ``evaluate``, ``neighbors``, ``sweep`` and ``explain``. Run
``alphanet-fast <command> --help`` for the options of each.

A user error (a missing file or entry, shapes that disagree, a bad value)
prints one line, ``alphanet-fast: error: ...``, to stderr and exits with
status 1 (2 for a malformed command line); ``--debug`` shows the traceback
instead. Every output file is written under a temporary name and renamed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alphanet_fast import io
from alphanet_fast.evaluation import SPLITS, EvaluationReport, evaluate, format_table

__all__ = ["main"]

PROG = "alphanet-fast"
DEMO_PROFILE = "imagenet_lt"

# Every knob of correct(), with its default; a test checks these against correct()'s signature.
KNOBS: tuple[tuple[str, Any, Any, str], ...] = (
    ("k", int, 5, "neighbours (base classes) per few class"),
    ("metric", str, "euclidean", "neighbour distance: euclidean, cosine, or random (the control)"),
    ("rho", float, 1.0, "base samples per few sample each epoch; smaller favours few classes"),
    ("epochs", int, 25, "training epochs"),
    ("batch_size", int, 64, "batch size"),
    ("lr", float, 1e-3, "AdamW learning rate"),
    ("weight_decay", float, 0.01, "AdamW weight decay"),
    ("lr_step", int, 10, "StepLR: epochs between learning-rate drops"),
    ("lr_gamma", float, 0.1, "StepLR: factor of each drop"),
    ("hidden", int, (32, 32, 32), "hidden layer widths of the network"),
    ("few_below", int, 20, "a class with fewer training samples is few"),
    ("many_above", int, 100, "a class with more training samples is many"),
    ("score_scale", float, 1.0, "multiply every score (the paper used 100 for tiny weights)"),
    ("min_epochs", int, 5, "first epoch eligible when the validation set picks the best"),
    ("device", str, "auto", "torch device: auto (CUDA if available), cpu, cuda, cuda:1, ..."),
    ("seed", int, 0, "seed of the initialisation, the sampling and random neighbours"),
)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --------------------------------------------------------------------------- parser


def _add_common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output and messages")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    g.add_argument("--debug", action="store_true", help="show the traceback of an error")


def _add_data(
    p: argparse.ArgumentParser, *, train: bool, val: bool, test: bool, names: bool = True
) -> None:
    g = p.add_argument_group(
        "data",
        "Features and labels: .npz/.pt/.safetensors with features and labels entries "
        "(features/labels, X/y, ...), or .npy features plus a labels file "
        "(.npy, .txt, .csv).",
    )
    if train:
        g.add_argument("train", type=Path, help="training features (and labels)")
        g.add_argument(
            "classifier", type=Path, help="classifier: .npz, .npy, .pt/.pth, .safetensors"
        )
        g.add_argument(
            "--train-labels", type=Path, metavar="PATH", help="labels of a .npy train file"
        )
    g.add_argument(
        "--weight-key",
        metavar="KEY",
        help="classifier entry or prefix (fc.weight, fc, head.) when several could be it",
    )
    if val:
        g.add_argument(
            "--val", type=Path, metavar="PATH", help="validation set: picks the best epoch"
        )
        g.add_argument("--val-labels", type=Path, metavar="PATH")
    if test:
        g.add_argument(
            "--test", type=Path, metavar="PATH", help="test set for the reported accuracies"
        )
        g.add_argument("--test-labels", type=Path, metavar="PATH")
    if names:
        g.add_argument(
            "--class-names", type=Path, metavar="PATH", help="text file, one name per line"
        )
    g.add_argument(
        "--groups",
        type=Path,
        metavar="PATH",
        help="text file, one group per class (e.g. super-classes): adds group-level accuracy",
    )


def _add_knobs(p: argparse.ArgumentParser, *, skip: Sequence[str] = ()) -> None:
    g = p.add_argument_group("AlphaNet settings (see alphanet_fast.correct)")
    g.add_argument(
        "--neighbors",
        type=Path,
        metavar="PATH",
        help="your own neighbours: an integer matrix (.npy, or .txt with one row per line), "
        "one row of base class ids per few class in ascending class order; its column "
        "count sets -k",
    )
    for name, typ, default, text in KNOBS:
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        if name == "hidden":
            g.add_argument(
                flag,
                type=int,
                nargs="*",
                default=default,
                metavar="N",
                help=f"{text} (default: {' '.join(map(str, default))})",
            )
        elif name == "metric":
            g.add_argument(
                flag,
                choices=("euclidean", "cosine", "random"),
                default=default,
                help=f"{text} (default: %(default)s)",
            )
        else:
            metavar = "K" if name == "k" else {int: "N", float: "X"}.get(typ, name.upper())
            extra: dict[str, Any] = {"metavar": metavar}
            g.add_argument(
                *(["-k"] if name == "k" else []),
                flag,
                type=typ,
                default=default,
                help=f"{text} (default: %(default)s)",
                **extra,
            )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``alphanet-fast`` (exposed for documentation tools)."""
    from alphanet_fast import __version__

    parser = _Parser(
        prog=PROG,
        description=(
            "AlphaNet post-hoc correction of long-tailed classifiers: rare-class weights "
            "become learned combinations of their nearest frequent classes' weights."
        ),
        epilog=f"Start with: {PROG} demo",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on built-in synthetic long-tailed data",
        description="Train AlphaNet on built-in synthetic long-tailed data, print the "
        "before/after table and the largest changes, and write plots, a JSON report, the "
        "saved result and the corrected classifier to an output folder.",
    )
    p.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        default=Path("alphanet_demo"),
        metavar="DIR",
        help="where to write (default: %(default)s)",
    )
    p.add_argument(
        "--profile",
        choices=("imagenet_lt", "small"),
        default=DEMO_PROFILE,
        help="imagenet_lt: 1000 classes, 2048-d, 115,846 training rows as ImageNet-LT "
        "(about a minute); small: 200 classes, 64-d (seconds) (default: %(default)s)",
    )
    p.add_argument("--epochs", type=int, default=25, help="training epochs (default: %(default)s)")
    p.add_argument("--rho", type=float, default=1.0, help="(default: %(default)s)")
    p.add_argument(
        "--seed", type=int, default=0, help="data and training seed (default: %(default)s)"
    )
    p.add_argument("--device", default="auto", help="torch device (default: %(default)s)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument(
        "--save-data",
        action="store_true",
        help="also write the data and baseline classifier as .npz files, to try 'correct' on "
        "(about 1.5 GB for imagenet_lt, 7 MB for small)",
    )
    _add_common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "correct",
        help="correct a classifier: write it back in its own format, with a report",
        description="Learn AlphaNet's combinations on the training set and write the "
        "corrected classifier in the input's format (every other entry of the file kept), "
        "a JSON report and, with --plots, PNG plots. Prints the before/after table on the "
        "test set (else the validation set, else the training set).",
    )
    _add_data(p, train=True, val=True, test=True)
    o = p.add_argument_group("outputs")
    o.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="PATH",
        help="corrected classifier (default: <classifier>.alphanet<suffix> here)",
    )
    o.add_argument(
        "--report", type=Path, metavar="PATH", help="JSON report (default: the output with .json)"
    )
    o.add_argument(
        "--result",
        type=Path,
        metavar="PATH",
        help="also save the full result (.npz: alphas, neighbours, history) for 'explain'",
    )
    o.add_argument("--plots", type=Path, metavar="DIR", help="write PNG plots to DIR")
    _add_knobs(p)
    _add_common(p)
    p.set_defaults(func=cmd_correct)

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
    src = p.add_argument_group("splits (one of)")
    src.add_argument(
        "--train", type=Path, metavar="PATH", help="training set: counts give the splits"
    )
    src.add_argument("--train-labels", type=Path, metavar="PATH")
    src.add_argument(
        "--result",
        type=Path,
        metavar="PATH",
        help="a result saved by 'correct --result': its splits and neighbours",
    )
    _add_data(p, train=False, val=False, test=False, names=False)
    _add_split_knobs(p)
    p.add_argument("--report", type=Path, metavar="PATH", help="write the reports as JSON")
    _add_common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "neighbors",
        help="list each few class's nearest base classes with distances",
        description="For every few class, its k nearest base (medium or many) classes by "
        "the distance between training class means, nearest first.",
    )
    p.add_argument("train", type=Path, nargs="?", help="training features (and labels)")
    p.add_argument("--train-labels", type=Path, metavar="PATH")
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
    p.add_argument("--class-names", type=Path, metavar="PATH", help="text file, one name per line")
    _add_split_knobs(p, metrics=("euclidean", "cosine"))
    p.add_argument("--report", type=Path, metavar="PATH", help="also write them as JSON")
    _add_common(p)
    p.set_defaults(func=cmd_neighbors)

    p = sub.add_parser(
        "sweep",
        help="train over several rho values and seeds; mean and std per split",
        description="Run correct() for every rho and seed and report mean ± std of the "
        "accuracies per split, as in the paper's tables.",
    )
    _add_data(p, train=True, val=True, test=True)
    p.add_argument(
        "--rhos",
        type=float,
        nargs="+",
        default=[0.5, 1.0, 1.5],
        metavar="RHO",
        help="rho values (default: 0.5 1 1.5)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=3,
        metavar="N",
        help="runs per rho, seeds --seed .. --seed+N-1 (default: %(default)s)",
    )
    p.add_argument("--report", type=Path, metavar="PATH", help="write every report as JSON")
    p.add_argument("--plots", type=Path, metavar="DIR", help="write rho_sweep.png to DIR")
    _add_knobs(p, skip=("rho",))
    _add_common(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "explain",
        help="the learned combinations of the few classes that gained or lost most",
        description="For the few classes whose accuracy changed most, the learned "
        "combination in words, e.g. '[Eskimo dog] = [Eskimo dog] - 0.18 [Siberian husky] "
        "+ 0.22 [timber wolf]', with training count and accuracy before and after.",
    )
    _add_data(p, train=True, val=True, test=True)
    p.add_argument(
        "--result",
        type=Path,
        metavar="PATH",
        help="a result saved by 'correct --result' (else train now)",
    )
    p.add_argument(
        "--top",
        type=int,
        default=5,
        metavar="N",
        help="classes shown for gains and for losses (default: %(default)s)",
    )
    _add_knobs(p)
    _add_common(p)
    p.set_defaults(func=cmd_explain)
    return parser


def _add_split_knobs(
    p: argparse.ArgumentParser, metrics: Sequence[str] = ("euclidean", "cosine")
) -> None:
    g = p.add_argument_group("splits and neighbours (when computed from a training file)")
    g.add_argument("--few-below", type=int, default=20, help="(default: %(default)s)")
    g.add_argument("--many-above", type=int, default=100, help="(default: %(default)s)")
    g.add_argument(
        "-k",
        "--k",
        type=int,
        default=5,
        metavar="K",
        help="neighbours per few class (default: %(default)s)",
    )
    g.add_argument(
        "--metric",
        choices=tuple(metrics),
        default="euclidean",
        help="distance between class means (default: %(default)s)",
    )


# --------------------------------------------------------------------------- helpers


class _Data:
    """What the commands that train read: train/val/test sets, classifier, names, groups."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.X, self.y = io.load_data(args.train, args.train_labels, labels_hint="--train-labels")
        self.clf = io.load_classifier(
            args.classifier, weight_key=args.weight_key, dim=self.X.shape[1]
        )
        _check_set(self.X, self.y, args.train, self.clf)
        self.val = _optional_set(args, "val", self.clf)
        self.test = _optional_set(args, "test", self.clf)
        C = self.clf.n_classes
        self.names = None if args.class_names is None else io.load_class_names(args.class_names, C)
        self.groups = (
            None if args.groups is None else io.load_lines(args.groups, n=C, what="groups")
        )

    def eval_sets(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Test and validation sets when given, else the training set."""
        sets = [(name, *s) for name, s in (("test", self.test), ("val", self.val)) if s is not None]
        return sets or [("train", self.X, self.y)]


def _optional_set(args: argparse.Namespace, name: str, clf: io.Classifier):
    path = getattr(args, name)
    labels = getattr(args, f"{name}_labels")
    if path is None:
        if labels is not None:
            raise io.InputError(f"--{name}-labels given without --{name}")
        return None
    X, y = io.load_data(path, labels, labels_hint=f"--{name}-labels")
    _check_set(X, y, path, clf)
    return X, y


def _check_set(X: np.ndarray, y: np.ndarray, path: Path, clf: io.Classifier) -> None:
    if X.shape[1] != clf.W.shape[1]:
        raise io.InputError(
            f"{path}: features have {X.shape[1]} columns, but the classifier "
            f"{clf.describe()} expects {clf.W.shape[1]}"
        )
    over = np.flatnonzero(y >= clf.n_classes)
    if over.size:
        i = int(over[0])
        raise io.InputError(
            f"{path}: label {i} is {y[i]}, but the classifier {clf.describe()} has only "
            f"{clf.n_classes} classes"
        )


def _knobs(args: argparse.Namespace, **override: Any) -> dict[str, Any]:
    kw = {name: getattr(args, name) for name, *_ in KNOBS if hasattr(args, name)}
    kw["hidden"] = tuple(kw["hidden"])
    kw.update(override)
    return kw


def _progress(args: argparse.Namespace) -> bool | None:
    # None: correct() shows its bar only when stderr is a terminal.
    return False if args.quiet else None


def _correct(data: _Data, args: argparse.Namespace, **override: Any):
    kw = _knobs(args, **override)
    kw.setdefault("progress", _progress(args))
    if args.neighbors is not None:
        kw["neighbors"] = _load_neighbors(args.neighbors)
        kw["k"] = kw["neighbors"].shape[1]  # the file's columns are the neighbours per class
    return _run_correct(data.X, data.y, data.clf.W, data.clf.b, val=data.val, **kw)


def _run_correct(*arrays: Any, **kw: Any):
    """correct(), its warnings printed as one ``alphanet-fast: warning:`` line each."""
    from alphanet_fast.training import correct

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = correct(*arrays, **kw)
        except (ValueError, TypeError) as exc:
            # correct() names its argument ("epochs: ..."); name the option instead.
            name, sep, rest = str(exc).partition(":")
            base = name.split("[")[0]  # "hidden[0]" names an entry of --hidden
            if sep and base in {"neighbors", *(knob for knob, *_ in KNOBS)}:
                flag = f"--{base.replace('_', '-')}{name[len(base) :]}"
                raise type(exc)(f"{flag}:{rest}") from None
            raise
    for w in caught:
        _warn(str(w.message))
    return res


def _load_neighbors(path: Path) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise io.InputError(f"{p}: no such file")
    try:
        nb = np.load(p, allow_pickle=False) if p.suffix == ".npy" else np.loadtxt(p, ndmin=2)
    except Exception as exc:  # numpy raises several kinds for a malformed file
        raise io.InputError(f"{p}: not an integer matrix ({io._one_line(exc)})") from None
    if nb.ndim != 2 or nb.dtype.kind not in "iuf" or not np.array_equal(nb, np.round(nb)):
        raise io.InputError(f"{p}: expected a 2-d integer matrix, found shape {nb.shape}")
    return nb.astype(np.int64)


def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def _ks(n_classes: int) -> tuple[int, ...]:
    return tuple(sorted({1, min(5, n_classes)}))


def _label(c: int, names: Sequence[str] | None) -> str:
    return f"[{names[c]}]" if names is not None else f"[class {c}]"


def _combination(f: int, nb: np.ndarray, alphas: np.ndarray, names: Sequence[str] | None) -> str:
    """``[f] = [f] - 0.18 [n1] + 0.22 [n2] ...``: the corrected weight vector in words."""
    terms = " ".join(
        f"{'-' if a < 0 else '+'} {abs(a):.2f} {_label(int(c), names)}"
        for c, a in zip(nb, alphas[1:])
    )
    return f"{_label(f, names)} = {_label(f, names)} {terms}"


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f}%"


def _default_output(clf: io.Classifier) -> Path:
    return Path(f"{clf.path.stem}.alphanet{clf.suffix}")


def _load_result(path: Path, n_classes: int | None = None):
    from alphanet_fast.result import load_result

    p = Path(path)
    if not p.is_file():
        raise io.InputError(f"{p}: no such file")
    try:
        res = load_result(p)
    except Exception as exc:  # np.load raises several kinds (BadZipFile, ValueError, ...)
        detail = f" ({io._one_line(exc)})" if "version" in str(exc) else ""
        raise io.InputError(f"{p}: not a result saved by 'correct --result'{detail}") from None
    if n_classes is not None and res.splits.n_classes != n_classes:
        raise io.InputError(
            f"{p}: the result is for {res.splits.n_classes} classes, the classifier has {n_classes}"
        )
    return res


def _few_rows(
    res: Any,
    before: EvaluationReport | None,
    after: EvaluationReport | None,
    names: Sequence[str] | None,
) -> list[dict[str, Any]]:
    """Per few class: neighbours, distances, alphas and accuracy before/after, for JSON."""
    rows = []
    for i, f in enumerate(res.few_classes.tolist()):
        row: dict[str, Any] = {
            "class": f,
            "train_count": int(res.counts[f]),
            "neighbors": res.neighbors[i].tolist(),
            "distances": [None if math.isnan(d) else d for d in res.neighbor_distances[i].tolist()],
            "alphas": res.alphas[i].tolist(),
        }
        if names is not None:
            row["name"] = names[f]
            row["neighbor_names"] = [names[c] for c in res.neighbors[i]]
        for key, rep in (("top1_before", before), ("top1_after", after)):
            if rep is not None:
                v = float(rep.per_class[1][f])
                row[key] = None if math.isnan(v) else v
        rows.append(row)
    return rows


def _write_plots(
    folder: Path, before: EvaluationReport, after: EvaluationReport, res: Any, set_name: str
) -> list[Path]:
    from alphanet_fast import plots

    folder.mkdir(parents=True, exist_ok=True)
    pair = {"baseline": before, "AlphaNet": after}
    out = [
        plots.plot_split_accuracies(
            pair, folder / "split_accuracy.png", title=f"Accuracy per split ({set_name} set)"
        ),
        plots.plot_error_breakdown(pair, folder / "few_errors.png"),
    ]
    dist = res.neighbor_distances
    if res.few_classes.size and np.isfinite(dist).all():
        gain = after.per_class[1][res.few_classes] - before.per_class[1][res.few_classes]
        out.append(
            plots.plot_gain_vs_distance(
                dist,
                gain,
                folder / "gain_vs_distance.png",
                xlabel=f"mean {res.config.get('metric', '')} distance to the nearest base classes",
            )
        )
    elif res.few_classes.size:
        _warn("no gain-vs-distance plot: the neighbours have no distances (random or given)")
    return out


def _print_tables(name: str, n: int, reports: dict[str, EvaluationReport]) -> None:
    title = f"{name.capitalize()} set" if name in ("train", "val", "test") else name
    print(f"\n{title} ({n} samples), accuracy per split by training count:")
    print(format_table(reports))
    if all(r.group_accuracy is not None for r in reports.values()):
        print()
        print(format_table(reports, groups=True).split("\n\n")[0])


# --------------------------------------------------------------------------- commands


def cmd_correct(args: argparse.Namespace) -> int:
    data = _Data(args)
    out = args.output or _default_output(data.clf)
    report_path = args.report or out.with_suffix(".json")
    # Refuse a clashing output before the training, not after.
    if out.exists() and out.resolve() == data.clf.path.resolve():
        raise io.InputError(f"{out}: would overwrite the input classifier; choose another --output")
    if out.suffix != data.clf.suffix:
        raise io.InputError(
            f"{out}: the corrected classifier keeps its input's format; "
            f"use a {data.clf.suffix} name"
        )

    if args.plots is not None and args.plots.exists() and not args.plots.is_dir():
        raise io.InputError(f"{args.plots}: --plots expects a folder, found a file")
    res = _correct(data, args)
    print(res.summary())
    ks = _ks(data.clf.n_classes)
    pairs = {}
    for set_name, X, y in data.eval_sets():
        before = evaluate(X, y, data.clf.W, data.clf.b, splits=res, k=ks, groups=data.groups)
        after = evaluate(X, y, res.W, res.b, splits=res, k=ks, groups=data.groups)
        pairs[set_name] = (before, after, len(y))
    # Print the first set (test, else val, else train); the JSON report has them all.
    shown = next(iter(pairs))
    before, after, n = pairs[shown]
    _print_tables(shown, n, {"baseline": before, f"AlphaNet (rho={res.config['rho']:g})": after})
    if shown == "train":
        _warn("no --val or --test: the accuracies above are on the training set")

    written = [io.save_classifier(data.clf, res.W, out)]
    report = {
        "alphanet_fast": _version(),
        "command": "correct",
        "inputs": {
            "train": args.train,
            "classifier": data.clf.describe(),
            "val": args.val,
            "test": args.test,
        },
        "config": res.config,
        "splits": {s: getattr(res.splits, s).tolist() for s in SPLITS[:3]},
        "best_epoch": res.best_epoch,
        "history": res.history,
        "evaluation": {
            name: {"baseline": b.to_dict(), "alphanet": a.to_dict()}
            for name, (b, a, _) in pairs.items()
        },
        "few_classes": _few_rows(res, before, after, data.names),
        "output": out,
    }
    written.append(io.write_json(report_path, report))
    if args.result is not None:
        written.append(_save_result(res, args.result))
    if args.plots is not None:
        written += _write_plots(args.plots, before, after, res, shown)
    print()
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if (args.train is None) == (args.result is None):
        raise io.InputError("give the splits with exactly one of --train or --result")
    X, y = io.load_data(args.data, args.labels, labels_hint="--labels")
    clfs = [
        io.load_classifier(p, weight_key=args.weight_key, dim=X.shape[1]) for p in args.classifiers
    ]
    C = clfs[0].n_classes
    for clf in clfs:
        if clf.W.shape != clfs[0].W.shape:
            raise io.InputError(f"{clf.describe()}: not the shape of {clfs[0].describe()}")
        _check_set(X, y, args.data, clf)
    if args.result is not None:
        res = _load_result(args.result, C)
        splits, neighbors = res.splits, res
    else:
        Xt, yt = io.load_data(args.train, args.train_labels, labels_hint="--train-labels")
        _check_set(Xt, yt, args.train, clfs[0])
        splits, neighbors = _splits_and_neighbors(Xt, yt, C, args)[:2]
        if neighbors[0].size < splits.few.size:
            neighbors = None  # some few class has no mean, hence no neighbours: no breakdown
    groups = None if args.groups is None else io.load_lines(args.groups, n=C, what="groups")
    reports = {}
    for clf in clfs:
        key = str(clf.path) if str(clf.path) not in reports else clf.describe()
        reports[key] = evaluate(
            X, y, clf.W, clf.b, splits=splits, k=_ks(C), neighbors=neighbors, groups=groups
        )
    _print_tables(str(args.data), len(y), reports)
    if args.report is not None:
        io.write_json(
            args.report,
            {
                "alphanet_fast": _version(),
                "command": "evaluate",
                "data": args.data,
                "splits": {s: getattr(splits, s).tolist() for s in SPLITS[:3]},
                "reports": {k: r.to_dict() for k, r in reports.items()},
            },
        )
        print(f"\nwrote {args.report}")
    return 0


def _splits_and_neighbors(X: np.ndarray, y: np.ndarray, n_classes: int, args: argparse.Namespace):
    """Splits from training counts, and each few class's k nearest base classes by class mean."""
    from alphanet_fast.kernels import class_means, nearest_neighbors
    from alphanet_fast.splits import splits_from_counts

    counts = np.bincount(y, minlength=n_classes)
    splits = splits_from_counts(counts, few_below=args.few_below, many_above=args.many_above)
    few, base = splits.few, splits.base
    if base.size == 0:
        raise io.InputError(
            f"no base class: every class has fewer than --few-below={args.few_below} "
            "training samples"
        )
    empty = few[counts[few] == 0]
    few = few[counts[few] > 0]
    if empty.size:
        _warn(
            f"{empty.size} few classes have no training samples and no neighbours "
            f"(first: class {empty[0]})"
        )
    if not 1 <= args.k <= base.size:
        raise io.InputError(
            f"-k/--k: expected 1 to {base.size} (the number of base classes), found {args.k}"
        )
    means, _ = class_means(X, y, n_classes)
    if few.size:
        idx, dist = nearest_neighbors(means[few], means[base], args.k, args.metric)
        nb, dist = base[idx], dist.astype(np.float64)
    else:
        nb, dist = np.zeros((0, args.k), dtype=np.int64), np.zeros((0, args.k))
    return splits, (few, nb), dist, counts


def cmd_neighbors(args: argparse.Namespace) -> int:
    if (args.train is None) == (args.result is None):
        raise io.InputError("give exactly one of a training file or --result")
    if args.result is not None:
        res = _load_result(args.result)
        C = res.splits.n_classes
        few, nb, dist, counts = res.few_classes, res.neighbors, res.neighbor_distances, res.counts
        metric = res.config.get("metric", "?")
    else:
        X, y = io.load_data(args.train, args.train_labels, labels_hint="--train-labels")
        C = args.n_classes
        if C is None and args.class_names is not None:
            C = len(io.load_class_names(args.class_names))
        C = int(y.max()) + 1 if C is None else C
        if y.max() >= C:
            raise io.InputError(
                f"{args.train}: label {int(np.argmax(y >= C))} is {y[np.argmax(y >= C)]}, "
                f"but there are {C} classes"
            )
        _, (few, nb), dist, counts = _splits_and_neighbors(X, y, C, args)
        metric = args.metric
    names = None if args.class_names is None else io.load_class_names(args.class_names, C)
    print(
        f"{few.size} few classes, {nb.shape[1] if nb.ndim == 2 else 0} nearest base classes each "
        f"({metric} distance between class means):"
    )
    rows = []
    for i, f in enumerate(few.tolist()):
        parts = ", ".join(
            f"{_label(int(c), names)} {d:.4g}" if not math.isnan(d) else _label(int(c), names)
            for c, d in zip(nb[i], dist[i])
        )
        where = f"class {f}, " if names is not None else ""
        head = f"{_label(f, names)} ({where}{int(counts[f])} training samples)"
        print(f"{head}: {parts}")
        row = {
            "class": f,
            "train_count": int(counts[f]),
            "neighbors": nb[i].tolist(),
            "distances": [None if math.isnan(d) else d for d in dist[i].tolist()],
        }
        if names is not None:
            row["name"], row["neighbor_names"] = names[f], [names[c] for c in nb[i]]
        rows.append(row)
    if args.report is not None:
        io.write_json(
            args.report,
            {
                "alphanet_fast": _version(),
                "command": "neighbors",
                "metric": metric,
                "few_classes": rows,
            },
        )
        print(f"\nwrote {args.report}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.seeds < 1:
        raise io.InputError(f"--seeds: expected at least 1, found {args.seeds}")
    data = _Data(args)
    if data.test is None and data.val is None:
        raise io.InputError("sweep needs --test or --val to measure the accuracies on")
    set_name, Xe, ye = data.eval_sets()[0]
    ks = _ks(data.clf.n_classes)
    rhos = list(dict.fromkeys(args.rhos))  # a repeated rho would only repeat its runs
    seeds = [args.seed + i for i in range(args.seeds)]
    grid = [(rho, seed) for rho in rhos for seed in seeds]
    runs: dict[float, list[EvaluationReport]] = {rho: [] for rho in rhos}

    def run(rho: float, seed: int):
        res = _correct(data, args, rho=rho, seed=seed, progress=False)
        runs[rho].append(evaluate(Xe, ye, res.W, res.b, splits=res, k=ks, groups=data.groups))
        bar.update(1)
        return res

    bar = tqdm(
        total=len(grid), desc="sweep", unit="run", file=sys.stderr,
        disable=True if args.quiet else None,
    )  # fmt: skip
    try:
        # The baseline is evaluated with the first run's splits and neighbours.
        first = run(*grid[0])
        baseline = evaluate(Xe, ye, data.clf.W, data.clf.b, splits=first, k=ks, groups=data.groups)
        for rho, seed in grid[1:]:
            run(rho, seed)
    finally:
        bar.close()
    rows: dict[str, Any] = {"baseline": baseline}
    rows.update({f"rho={rho:g}": reps for rho, reps in runs.items()})
    print(
        f"\n{set_name.capitalize()} set ({len(ye)} samples), AlphaNet mean ± std over "
        f"{len(seeds)} seeds:"
    )
    print(format_table(rows))
    if args.report is not None:
        summary = {
            f"{rho:g}": {
                f"top{k}": {s: _mean_std([r.accuracy[k][s] for r in reps]) for s in SPLITS}
                for k in ks
            }
            for rho, reps in runs.items()
        }
        io.write_json(
            args.report,
            {
                "alphanet_fast": _version(),
                "command": "sweep",
                "evaluated_on": set_name,
                "seeds": seeds,
                "config": _knobs(args),
                "summary": summary,
                "baseline": baseline.to_dict(),
                "runs": {f"{rho:g}": [r.to_dict() for r in reps] for rho, reps in runs.items()},
            },
        )
        print(f"\nwrote {args.report}")
    if args.plots is not None:
        from alphanet_fast.plots import plot_rho_sweep

        path = plot_rho_sweep(
            runs,
            args.plots / "rho_sweep.png",
            baseline=baseline,
            title=f"rho sweep ({set_name} set, {len(seeds)} seeds)",
        )
        print(f"wrote {path}")
    return 0


def _mean_std(values: list[float]) -> dict[str, float | None]:
    v = np.array([x for x in values if not math.isnan(x)])
    if v.size == 0:
        return {"mean": None, "std": None}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0}


def cmd_explain(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise io.InputError(f"--top: expected at least 1, found {args.top}")
    data = _Data(args)
    if data.test is None and data.val is None:
        raise io.InputError("explain needs --test or --val to measure accuracy before and after")
    set_name, Xe, ye = data.eval_sets()[0]
    if args.result is not None:
        res = _load_result(args.result, data.clf.n_classes)
        if res.W.shape != data.clf.W.shape:
            raise io.InputError(
                f"{args.result}: weights of shape {res.W.shape}, the classifier's are "
                f"{data.clf.W.shape}"
            )
    else:
        res = _correct(data, args)
    ks = _ks(data.clf.n_classes)
    before = evaluate(Xe, ye, data.clf.W, data.clf.b, splits=res, k=ks)
    after = evaluate(Xe, ye, res.W, res.b, splits=res, k=ks)
    print(explain_text(res, before, after, data.names, top=args.top, set_name=set_name))
    return 0


def explain_text(
    res: Any,
    before: EvaluationReport,
    after: EvaluationReport,
    names: Sequence[str] | None = None,
    *,
    top: int = 5,
    set_name: str = "test",
) -> str:
    """The learned combinations of the few classes whose top-1 accuracy rose or fell most."""
    few = res.few_classes
    gain = after.per_class[1][few] - before.per_class[1][few]
    seen = np.flatnonzero(np.isfinite(gain))
    if seen.size == 0:
        return f"No few class has samples in the {set_name} set: nothing to explain."
    # Largest change first; ties by class id so the output is stable.
    by_gain = seen[np.lexsort((few[seen], -gain[seen]))]
    lines = []
    for title, rows in (
        ("Largest gains", [i for i in by_gain if gain[i] > 0][:top]),
        ("Largest losses", [i for i in by_gain[::-1] if gain[i] < 0][:top]),
    ):
        lines.append(f"{title} ({set_name} top-1 accuracy of few classes):")
        if not rows:
            lines.append("  none")
        for i in rows:
            f = int(few[i])
            lines.append("  " + _combination(f, res.neighbors[i], res.alphas[i], names))
            lines.append(
                f"      class {f}, {int(res.counts[f])} training samples; top-1 "
                f"{_pct(before.per_class[1][f])} -> {_pct(after.per_class[1][f])} "
                f"({100 * gain[i]:+.1f} points on {int(after.class_counts[f])} samples)"
            )
        lines.append("")
    unchanged = int((gain[seen] == 0).sum())
    lines.append(
        f"{seen.size} few classes in the {set_name} set: {int((gain[seen] > 0).sum())} "
        f"gained, {int((gain[seen] < 0).sum())} lost, {unchanged} unchanged."
    )
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    from alphanet_fast.datasets import make_long_tail

    t0 = time.perf_counter()
    out = args.output_dir

    def status(text: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - t0:5.1f} s] {text}", file=sys.stderr, flush=True)

    status(f"making the synthetic '{args.profile}' data and its baseline classifier ...")
    data = make_long_tail(args.profile, seed=args.seed)
    C, d = data.W.shape
    counts = np.bincount(data.train_labels, minlength=C)
    print(
        f"Synthetic long-tailed data ('{args.profile}' profile): {C} classes, {d}-d features, "
        f"{len(data.train_labels)} train / {len(data.val_labels)} val / "
        f"{len(data.test_labels)} test samples; {counts.min()} to {counts.max()} training "
        "samples per class."
    )
    status("training AlphaNet ...")
    res = _run_correct(
        data.train_features,
        data.train_labels,
        data.W,
        data.b,
        val=(data.val_features, data.val_labels),
        epochs=args.epochs,
        rho=args.rho,
        device=args.device,
        seed=args.seed,
        progress=_progress(args),
    )
    print(res.summary())
    status("evaluating on the test set ...")
    names = list(data.class_names)
    groups = np.asarray(data.groups)
    ks = _ks(C)
    test = (data.test_features, data.test_labels)
    before = evaluate(*test, data.W, data.b, splits=res, k=ks, groups=groups)
    after = evaluate(*test, res.W, res.b, splits=res, k=ks, groups=groups)
    label = f"AlphaNet (rho={args.rho:g})"
    _print_tables("test", len(data.test_labels), {"baseline": before, label: after})
    print()
    print(explain_text(res, before, after, names, top=3))

    status(f"writing to {out}/ ...")
    written = [_save_result(res, out / "result.npz")]
    written.append(_write_npz(out / "classifier.alphanet.npz", weight=res.W, bias=res.b))
    report = {
        "alphanet_fast": _version(),
        "command": "demo",
        "profile": args.profile,
        "config": res.config,
        "history": res.history,
        "best_epoch": res.best_epoch,
        "evaluation": {"test": {"baseline": before.to_dict(), "alphanet": after.to_dict()}},
        "few_classes": _few_rows(res, before, after, names),
    }
    written.append(io.write_json(out / "report.json", report))
    if not args.no_plots:
        written += _write_plots(out / "plots", before, after, res, "test")
    if args.save_data:
        # The data and classifier as files, so that 'correct' can be tried on them next.
        for split in ("train", "val", "test"):
            written.append(
                _write_npz(
                    out / f"{split}.npz",
                    features=getattr(data, f"{split}_features"),
                    labels=getattr(data, f"{split}_labels"),
                )
            )
        written.append(_write_npz(out / "classifier.npz", weight=data.W, bias=data.b))
        written.append(io.write_text(out / "class_names.txt", "\n".join(names) + "\n"))
        groups_text = "\n".join(map(str, groups.tolist())) + "\n"
        written.append(io.write_text(out / "groups.txt", groups_text))
    print(f"\nWrote {len(written)} files to {out}/ in {time.perf_counter() - t0:.0f} s:")
    print("  " + ", ".join(str(p.relative_to(out)) for p in written))
    if args.save_data:
        print("Next, the same on files:")
        print(
            f"  {PROG} correct {out}/train.npz {out}/classifier.npz --val {out}/val.npz "
            f"--test {out}/test.npz --class-names {out}/class_names.txt --plots {out}/plots2"
        )
    return 0


def _save_result(res: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    res.save(path)  # AlphaNetResult.save writes to a temporary name and renames
    return path


def _write_npz(path: Path, **arrays: Any) -> Path:
    with io.atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path


def _version() -> str:
    from alphanet_fast import __version__

    return __version__


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``alphanet-fast`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    Examples
    --------
    >>> from alphanet_fast.cli import main
    >>> main(["neighbors", "train.npz", "--class-names", "names.txt"])  # doctest: +SKIP
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, OSError) as exc:
        # InputError and the library's argument errors are ValueError/TypeError, and
        # name what is wrong; a missing or unwritable path is an OSError.
        if args.debug:
            raise
        print(f"{PROG}: error: {_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
