"""The ``baseline`` command: apply one post-hoc baseline and write the classifier it gives."""

from __future__ import annotations

import argparse
import textwrap
from types import SimpleNamespace
from typing import Any

import numpy as np

from alphanet_fast.baselines.methods import METHODS
from alphanet_fast.evaluation import evaluate
from alphanet_fast.files.data_files import InputError
from alphanet_fast.settings import Settings
from alphanet_fast.splits import splits_from_counts

from .common import TrainingData, guard_outputs, ks_for, print_tables
from .parser import add_common, add_data
from .shipping import add_output_options, output_paths, write_shipped

__all__ = ["register", "run_baseline"]


def _method_lines() -> str:
    return "\n".join(f"  {m.name:<13} {m.help}" for m in METHODS.values())


def register(sub: Any) -> None:
    """Add ``baseline`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "baseline",
        help="apply one post-hoc baseline (ncm, tau_norm, ...) and write its classifier",
        description=textwrap.fill(
            "Apply one post-hoc baseline to the classifier on the training features "
            "and write the classifier it gives in the input's format, with a JSON beside it "
            "(method, settings, accuracies). A tau not given is chosen on --val. Prints the "
            "table of the given classifier and the baseline on the test set (else the "
            "validation set, else the training set).",
            78,
        )
        + "\n\nmethods:\n"
        + _method_lines(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("method", choices=tuple(METHODS), metavar="METHOD",
                   help="one of " + ", ".join(METHODS))  # fmt: skip
    add_data(p, train=True, val=True, test=True)
    g = p.add_argument_group("the method's settings")
    g.add_argument(
        "--tau", type=float, metavar="T",
        help="tau of " + ", ".join(m.name for m in METHODS.values() if "tau" in m.tunes)
        + " (default: chosen on --val)",
    )  # fmt: skip
    defaults = Settings.defaults()
    g.add_argument(
        "--seed", type=int, default=defaults["seed"],
        help="seed of the trained methods' draws (default: %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--device", default=defaults["device"],
        help="torch device of the trained methods (default: %(default)s)",
    )  # fmt: skip
    add_output_options(p, "the classifier", "<classifier>.<METHOD><suffix>")
    add_common(p)
    p.set_defaults(func=run_baseline)


def _keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The method's keywords from the flags; refused before any file is read."""
    method = METHODS[args.method]
    kw: dict[str, Any] = {}
    if args.tau is not None:
        if "tau" not in method.tunes:
            raise InputError(f"--tau: {method.name} has no tau")
        kw["tau"] = args.tau
    elif method.needs_val and args.val is None:
        tunes = ", ".join(method.tunes)
        raise InputError(
            f"--val: {method.name} chooses {tunes} on validation data; give --val VAL "
            f"(or --{tunes} to set it)"
        )
    if method.seeded:
        kw.update(seed=args.seed, device=args.device)
    return kw


def _evaluations(data: TrainingData, fit: Any) -> dict[str, tuple[Any, Any, int]]:
    """Per set (test, val, else train): the given classifier's report and the baseline's."""
    C = data.clf.n_classes
    splits = splits_from_counts(np.bincount(data.y, minlength=C))
    ks = ks_for(C)
    pairs = {}
    for name, X, y in data.eval_sets():
        given = evaluate(X, y, data.clf.W, data.clf.b, splits=splits, k=ks)
        Xt = X if fit.transform is None else fit.transform(X)
        pairs[name] = (given, evaluate(Xt, y, fit.W, fit.b, splits=splits, k=ks), len(y))
    return pairs


def run_baseline(args: argparse.Namespace) -> int:
    """``alphanet-fast baseline``: apply the method, print the table, write the classifier."""
    method = METHODS[args.method]
    kw = _keywords(args)
    data = TrainingData(args)
    out, json_path = output_paths(args.output, data.clf, method.name, args.report)
    guard_outputs(args, [("-o/--output", out, False), ("--report", json_path, False)])
    if "tau" in method.tunes and "tau" not in kw:
        kw["val"] = data.val
    fit = method.function(data.X, data.y, data.clf.W, data.clf.b, **kw)
    pairs = _evaluations(data, fit)
    shown = next(iter(pairs))
    given, after, n = pairs[shown]
    print_tables(shown, n, {"given": given, method.label: after})
    chosen = {k: fit.settings[k] for k in method.tunes if k in fit.settings}
    if chosen:
        print("chosen on validation: " if "tau" not in kw else "given: ", end="")
        print(", ".join(f"{k}={v:g}" for k, v in chosen.items()))
    run = SimpleNamespace(
        name=method.label, method=method.name, base=None, rho=None,
        settings=fit.to_dict()["settings"], W=fit.W, b=fit.b, transform=fit.transform,
        val=pairs["val"][1] if "val" in pairs else None,
        test=pairs["test"][1] if "test" in pairs else None,
    )  # fmt: skip
    inputs = {"train": args.train, "classifier": data.clf.describe(), "val": args.val,
              "test": args.test}  # fmt: skip
    written = write_shipped(data.clf, run, out, json_path, "baseline", inputs=inputs)
    print()
    for path in written:
        print(f"wrote {path}")
    return 0
