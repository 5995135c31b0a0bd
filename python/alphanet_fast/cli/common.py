"""What the commands share: reading the data sets, the settings, training, tables and plots."""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alphanet_fast._errors import ArgumentError
from alphanet_fast.evaluation import EvaluationReport, format_table
from alphanet_fast.files._paths import check_outputs
from alphanet_fast.files.classifiers import Classifier, load_classifier
from alphanet_fast.files.data_files import (
    InputError,
    class_names_of,
    load_class_names,
    load_data,
    load_lines,
)
from alphanet_fast.files.data_files import load_neighbors as read_neighbors
from alphanet_fast.files.formats import one_line
from alphanet_fast.settings import Settings

from .parser import ARGUMENT_FLAGS, PROG, settings_fields

__all__ = [
    "TrainingData",
    "check_set",
    "correct_from_args",
    "guard_outputs",
    "ks_for",
    "label",
    "load_set",
    "pct",
    "print_tables",
    "progress",
    "run_correct",
    "settings_from_args",
    "warn",
    "write_plots",
]

# Arguments that name files read, with how messages name them.
INPUT_ARGS = {
    "train": "train",
    "classifier": "classifier",
    "data": "data",
    "classifiers": "classifier",
    "labels": "--labels",
    "train_labels": "--train-labels",
    "val": "--val",
    "val_labels": "--val-labels",
    "test": "--test",
    "test_labels": "--test-labels",
    "class_names": "--class-names",
    "groups": "--groups",
    "neighbors": "--neighbors",
}


def warn(message: str) -> None:
    """Print ``alphanet-fast: warning: message`` to stderr."""
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def progress(args: argparse.Namespace) -> bool | None:
    """``progress=`` for correct(): None shows a bar only when stderr is a terminal."""
    return False if args.quiet else None


def ks_for(n_classes: int) -> tuple[int, ...]:
    """The top-k accuracies reported: 1 and 5 (fewer with fewer classes)."""
    return tuple(sorted({1, min(5, n_classes)}))


def label(c: int, names: Sequence[str] | None) -> str:
    """``[Eskimo dog]`` with names, ``[class 3]`` without."""
    return f"[{names[c]}]" if names is not None else f"[class {c}]"


def pct(x: float) -> str:
    """``41.7%``, or ``-`` for NaN (no samples)."""
    return "-" if math.isnan(x) else f"{100 * x:.1f}%"


def guard_outputs(
    args: argparse.Namespace, outputs: Iterable[tuple[str, Path | None, bool]]
) -> None:
    """Before any work: no output may be an input, and every output folder must be writable.

    ``outputs`` are ``(option, path, is_folder)``; None paths are skipped.
    Inputs are every file argument of ``args`` (see :data:`INPUT_ARGS`).
    """
    inputs = []
    for name, text in INPUT_ARGS.items():
        value = getattr(args, name, None)
        for path in value if isinstance(value, list) else [value]:
            if isinstance(path, Path):
                inputs.append((text, path))
    if getattr(args, "result_is_input", False) and args.result is not None:
        inputs.append(("--result", args.result))
    try:
        check_outputs([o for o in outputs if o[1] is not None], inputs)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def load_set(
    args: argparse.Namespace, path: Path, labels: Path | None, split: str, hint: str
) -> tuple[np.ndarray, np.ndarray]:
    """One data set, with the command line's key options."""
    return load_data(
        path,
        labels,
        features_key=getattr(args, "features_key", None),
        labels_key=getattr(args, "labels_key", None),
        split=split,
        labels_hint=hint,
    )


def check_set(X: np.ndarray, y: np.ndarray, path: Path, clf: Classifier) -> None:
    """The set's features fit the classifier, and its labels are its classes."""
    if X.shape[1] != clf.W.shape[1]:
        raise InputError(
            f"{path}: features have {X.shape[1]} columns, but the classifier "
            f"{clf.describe()} expects {clf.W.shape[1]}"
        )
    over = np.flatnonzero(y >= clf.n_classes)
    if over.size:
        i = int(over[0])
        raise InputError(
            f"{path}: label {i} is {y[i]}, but the classifier {clf.describe()} has only "
            f"{clf.n_classes} classes"
        )


class TrainingData:
    """What the commands that train read: train/val/test sets, classifier, names, groups."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.X, self.y = load_set(args, args.train, args.train_labels, "train", "--train-labels")
        self.clf = load_classifier(args.classifier, weight_key=args.weight_key, dim=self.X.shape[1])
        check_set(self.X, self.y, args.train, self.clf)
        self.val = self._optional(args, "val")
        self.test = self._optional(args, "test")
        C = self.clf.n_classes
        # --class-names, else a class_names entry of a .npz training file.
        self.names = (
            class_names_of(args.train, C)
            if args.class_names is None
            else load_class_names(args.class_names, C)
        )
        self.groups = None if args.groups is None else load_lines(args.groups, n=C, what="groups")

    def _optional(self, args: argparse.Namespace, name: str):
        path, labels = getattr(args, name), getattr(args, f"{name}_labels")
        if path is None:
            if labels is not None:
                raise InputError(f"--{name}-labels given without --{name}")
            return None
        X, y = load_set(args, path, labels, name, f"--{name}-labels")
        check_set(X, y, path, self.clf)
        return X, y

    def eval_sets(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Test and validation sets when given, else the training set."""
        sets = [(name, *s) for name, s in (("test", self.test), ("val", self.val)) if s is not None]
        return sets or [("train", self.X, self.y)]


def _on_the_command_line(exc: ArgumentError) -> ArgumentError | None:
    """``exc`` with the option of its argument in front (``--epochs: expected ...``), or
    None when the argument has no option (its own name then says what is wrong)."""
    option = ARGUMENT_FLAGS.get(exc.argument or "")
    if option is None:
        return None
    return type(exc)(f"{option}: {exc.detail}", exc.argument, exc.row, exc.value)


def settings_from_args(args: argparse.Namespace, **override: Any) -> dict[str, Any]:
    """The settings flags present in ``args`` (with ``override``), each checked.

    Raises :class:`InputError` naming the flag (``--epochs: expected ...``).
    """
    values = {f.name: getattr(args, f.name) for f in settings_fields() if hasattr(args, f.name)}
    values.update(override)
    if "hidden" in values:
        values["hidden"] = tuple(values["hidden"])
    try:
        for f in settings_fields(values):
            values[f.name] = f.metadata["check"](values[f.name])
        Settings(**values)  # the checks across settings (few_below, many_above)
    except ArgumentError as exc:
        named = _on_the_command_line(exc)
        raise InputError(str(exc if named is None else named)) from None
    return values


def run_correct(*arrays: Any, **kw: Any):
    """correct(), its warnings printed as one ``alphanet-fast: warning:`` line each.

    Errors name the command line's option (``--neighbors: ...``); torch's
    allocation failures become a ``MemoryError`` naming the settings that
    size the network.
    """
    from alphanet_fast.training import correct

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = correct(*arrays, **kw)
        except ArgumentError as exc:
            named = _on_the_command_line(exc)
            if named is None:
                raise
            raise named from None
        except RuntimeError as exc:
            if "alloc" not in str(exc).lower() and "memory" not in str(exc).lower():
                raise
            raise MemoryError(
                f"training ran out of memory ({one_line(exc)}); "
                "try a smaller --batch-size or --hidden"
            ) from None
    for w in caught:
        warn(str(w.message))
    return res


def correct_from_args(data: TrainingData, args: argparse.Namespace, **override: Any):
    """correct() on the data with the command line's settings (and ``override``)."""
    kw = settings_from_args(args, **{k: v for k, v in override.items() if k != "progress"})
    kw["progress"] = override.get("progress", progress(args))
    if args.neighbors is not None:
        kw["neighbors"] = read_neighbors(args.neighbors)
        kw["k"] = kw["neighbors"].shape[1]  # the file's columns are the neighbours per class
    return run_correct(data.X, data.y, data.clf.W, data.clf.b, val=data.val, **kw)


def load_result_checked(path: Path, n_classes: int | None = None):
    """A saved result, checked against the classifier's class count."""
    from alphanet_fast.result import load_result

    try:
        res = load_result(path)
    except ArgumentError as exc:  # "path: FILE: what": the file names itself
        if exc.argument != "path":
            raise
        raise InputError(str(exc).removeprefix("path: ")) from None
    if n_classes is not None and res.splits.n_classes != n_classes:
        raise InputError(
            f"{path}: the result is for {res.splits.n_classes} classes, the classifier has "
            f"{n_classes}"
        )
    return res


def print_tables(name: str, n: int, reports: dict[str, EvaluationReport]) -> None:
    """The accuracy table (and the group table when every report has groups)."""
    title = f"{name.capitalize()} set" if name in ("train", "val", "test") else name
    print(f"\n{title} ({n} samples), accuracy per split by training count:")
    print(format_table(reports))
    if all(r.group_accuracy is not None for r in reports.values()):
        print()
        print(format_table(reports, groups=True).split("\n\n")[0])


PLOT_NAMES = ("split_accuracy.png", "few_errors.png", "gain_vs_distance.png")


def write_plots(
    folder: Path, before: EvaluationReport, after: EvaluationReport, res: Any, set_name: str
) -> list[Path]:
    """The before/after plots of a correction in ``folder`` (names: :data:`PLOT_NAMES`)."""
    from alphanet_fast import plots

    folder.mkdir(parents=True, exist_ok=True)
    pair = {"baseline": before, "AlphaNet": after}
    out = [
        plots.plot_split_accuracies(
            pair, folder / PLOT_NAMES[0], title=f"Accuracy per split ({set_name} set)"
        ),
        plots.plot_error_breakdown(pair, folder / PLOT_NAMES[1]),
    ]
    dist = res.neighbor_distances
    if res.few_classes.size and np.isfinite(dist).all():
        gain = after.per_class[1][res.few_classes] - before.per_class[1][res.few_classes]
        metric = res.config.get("metric", "")
        out.append(
            plots.plot_gain_vs_distance(
                dist,
                gain,
                folder / PLOT_NAMES[2],
                xlabel=f"mean {metric} distance to the nearest base classes",
            )
        )
    elif res.few_classes.size:
        warn("no gain-vs-distance plot: the neighbours have no distances (random or given)")
    return out
