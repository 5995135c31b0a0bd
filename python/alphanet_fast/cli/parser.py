"""The argument parser: shared option groups, and the flags generated from the settings.

Every method knob's flag (name, type, default, help, metavar, choices) comes
from the fields of :class:`alphanet_fast.settings.Settings`; nothing here
writes a default down again.

A command module registers itself with a function ``register(sub)`` that
adds its subparser(s) to ``sub`` (argparse's subparsers action) and sets
``func`` to the function that runs it (``p.set_defaults(func=run)``); the
module's name goes into :data:`COMMAND_MODULES`, in the order ``--help``
lists the commands.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from alphanet_fast.settings import METRICS, Settings

__all__ = [
    "ARGUMENT_FLAGS",
    "COMMAND_MODULES",
    "PROG",
    "add_class_names",
    "add_common",
    "add_data",
    "add_labels_file",
    "add_settings",
    "add_split_settings",
    "build_parser",
    "flag",
    "settings_fields",
]

PROG = "alphanet-fast"
# Modules of alphanet_fast.cli with a register(sub) function, in --help order.
COMMAND_MODULES = ("demo", "train", "compare", "baseline", "evaluate", "neighbors")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def flag(name: str) -> str:
    """The long option of a setting or argument name: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


#: The option of each argument of :func:`alphanet_fast.correct` that has one: every
#: setting's flag and ``--neighbors``. An error's ``.argument`` is looked up here.
ARGUMENT_FLAGS = {
    **{f.name: flag(f.name) for f in dataclasses.fields(Settings)},
    "neighbors": flag("neighbors"),
}


def settings_fields(names: Iterable[str] | None = None) -> list[dataclasses.Field]:
    """The fields of :class:`Settings`, all or those named, in declaration order."""
    fields = dataclasses.fields(Settings)
    if names is None:
        return list(fields)
    wanted = set(names)
    return [f for f in fields if f.name in wanted]


def _setting_option(f: dataclasses.Field, default: Any, help_extra: str = "") -> dict[str, Any]:
    """``add_argument`` keywords for one settings field."""
    kw: dict[str, Any] = {"help": f.metadata["help"] + help_extra, "dest": f.name}
    if f.metadata.get("metavar"):
        kw["metavar"] = f.metadata["metavar"]
    if isinstance(default, tuple):  # a list setting (hidden): any number of values
        kw.update(type=type(default[0]), nargs="*", default=list(default))
        kw["help"] += f" (default: {' '.join(map(str, default))})"
    elif f.name == "metric":
        kw.update(choices=METRICS, default=default)
        kw["help"] += " (default: %(default)s)"
    else:
        kw.update(type=type(default), default=default)
        kw["help"] += " (default: %(default)s)"
    return kw


def _setting_flags(name: str) -> list[str]:
    # A one-letter setting (k) also has its short form (-k).
    return [f"-{name}", flag(name)] if len(name) == 1 else [flag(name)]


def add_settings(
    p: argparse.ArgumentParser,
    *,
    skip: Sequence[str] = (),
    only: Sequence[str] | None = None,
    neighbors_file: bool = True,
    help_extra: dict[str, str] | None = None,
) -> None:
    """Add a flag per setting of :class:`Settings` (all, or ``only`` those, less ``skip``)."""
    g = p.add_argument_group("AlphaNet settings (see alphanet_fast.correct)")
    if neighbors_file:
        g.add_argument(
            "--neighbors",
            type=Path,
            metavar="PATH",
            help="your own neighbours: an integer matrix (.npy, or .txt with one row per "
            "line), one row of base class ids per few class in ascending class order; its "
            "column count sets -k",
        )
    defaults = Settings.defaults()
    extra = help_extra or {}
    for f in settings_fields(only):
        if f.name not in skip:
            option = _setting_option(f, defaults[f.name], extra.get(f.name, ""))
            g.add_argument(*_setting_flags(f.name), **option)


def add_split_settings(p: argparse.ArgumentParser, metrics: Sequence[str]) -> None:
    """The settings that choose splits and neighbours, for commands that do not train."""
    g = p.add_argument_group("splits and neighbours (when computed from a training file)")
    defaults = Settings.defaults()
    for f in settings_fields(("few_below", "many_above", "k", "metric")):
        option = _setting_option(f, defaults[f.name])
        if f.name == "metric":
            option["choices"] = tuple(metrics)
            option["help"] = "distance between class means (default: %(default)s)"
        g.add_argument(*_setting_flags(f.name), **option)


def add_common(p: argparse.ArgumentParser) -> None:
    """``--quiet`` and ``--debug``, on every command."""
    g = p.add_argument_group("output and messages")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    g.add_argument("--debug", action="store_true", help="show the traceback of an error")


def add_keys(g: Any) -> None:
    """``--features-key`` and ``--labels-key``, for files with other entry names."""
    g.add_argument(
        "--features-key",
        metavar="KEY",
        help="features entry of the data files (default: features, feats, feature, X, x, "
        "embeddings, data, inputs, then the set's own names: train_x, x_train, "
        "train_features, ...)",
    )
    g.add_argument(
        "--labels-key",
        metavar="KEY",
        help="labels entry of the data files (default: labels, label, y, Y, targets, target, "
        "then train_y, y_train, train_labels, ...)",
    )


def add_labels_file(g: Any, name: str) -> None:
    """``--NAME-labels``: the labels file of a ``.npy`` features file."""
    g.add_argument(
        flag(f"{name}_labels"), type=Path, metavar="PATH", help=f"labels of a .npy {name} file"
    )


def add_class_names(g: Any) -> None:
    """``--class-names``: a text file of class names, one per line."""
    g.add_argument(
        "--class-names",
        type=Path,
        metavar="PATH",
        help="text file, one name per line, or FILE.npz:ENTRY, an array of strings in a data "
        "file (default: the training file's class_names entry, if it has one)",
    )


def add_data(
    p: argparse.ArgumentParser, *, train: bool, val: bool, test: bool, names: bool = True
) -> None:
    """Data inputs: training set and classifier, validation and test sets, names, groups."""
    g = p.add_argument_group(
        "data",
        "Features and labels: .npz/.pt/.safetensors with features and labels entries "
        "(see --features-key), or .npy features plus a labels file (.npy, .txt, .csv).",
    )
    if train:
        g.add_argument("train", type=Path, help="training features (and labels)")
        g.add_argument(
            "classifier", type=Path, help="classifier: .npz, .npy, .pt/.pth, .safetensors"
        )
        add_labels_file(g, "train")
    g.add_argument(
        "--weight-key",
        metavar="KEY",
        help="classifier entry or prefix (fc.weight, fc, head.) when several could be it",
    )
    for name, text in (("val", "validation set: picks the best epoch"), ("test", None)):
        if (val, test)[name == "test"]:
            text = text or "test set for the reported accuracies"
            g.add_argument(flag(name), type=Path, metavar="PATH", help=text)
            add_labels_file(g, name)
    add_keys(g)
    if names:
        add_class_names(g)
    g.add_argument(
        "--groups",
        type=Path,
        metavar="PATH",
        help="text file, one group per class (e.g. super-classes): adds group-level accuracy",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``alphanet-fast`` (exposed for documentation tools)."""
    from alphanet_fast import __version__

    parser = Parser(
        prog=PROG,
        description=(
            "AlphaNet post-hoc correction of long-tailed classifiers: rare-class weights "
            "become learned combinations of their nearest frequent classes' weights. "
            "Outputs go to the current directory unless a path says otherwise."
        ),
        epilog=f"Start with: {PROG} demo",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"alphanet_fast.cli.{name}").register(sub)
    return parser
