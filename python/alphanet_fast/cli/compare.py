"""The ``compare`` command: every post-hoc fix side by side, one recommended on validation.

Also :func:`demo_comparison`, the same comparison on the demo's synthetic data
(``alphanet-fast demo --compare``).
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

from alphanet_fast.comparison import METHODS, PLAIN_LABEL, compare
from alphanet_fast.files.data_files import InputError
from alphanet_fast.files.data_files import load_neighbors as read_neighbors

from . import report
from .common import TrainingData, guard_outputs, settings_from_args
from .parser import add_common, add_data, add_settings
from .shipping import output_paths, write_shipped

__all__ = ["COMPARE_DEFAULTS", "demo_comparison", "register", "run_compare"]

#: compare()'s defaults, read from its signature: the flags never type them again.
COMPARE_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(compare).parameters.items()
    if p.default is not inspect.Parameter.empty
}


def register(sub: Any) -> None:
    """Add ``compare`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "compare",
        help="the post-hoc baselines and AlphaNet on top of them; recommend one",
        description="Run nearest class mean, tau-normalisation, logit adjustment, LWS and "
        "cRT on the training features, AlphaNet on top of the given classifier and of cRT "
        "and LWS, and print a paper-style table (mean ± std over seeds). The method "
        "recommended is the best on the validation set by --criterion; the test set is "
        "only reported. Outputs go to the current directory unless given as paths.",
    )
    add_data(p, train=True, val=True, test=True)
    g = p.add_argument_group("comparison")
    d = COMPARE_DEFAULTS
    g.add_argument(
        "--methods", nargs="+", choices=tuple(METHODS), default=list(d["methods"]),
        metavar="METHOD", help="baselines to run: "
        + "; ".join(f"{m.name} ({m.help})" for m in METHODS.values())
        + f" (default: {' '.join(d['methods'])})",
    )  # fmt: skip
    g.add_argument(
        "--alphanet-on", nargs="*", choices=("plain", *METHODS), default=list(d["alphanet_on"]),
        metavar="METHOD",
        help=f"classifiers AlphaNet corrects (default: {' '.join(d['alphanet_on'])})",
    )  # fmt: skip
    g.add_argument(
        "--rhos", type=float, nargs="+", default=list(d["rhos"]), metavar="RHO",
        help=f"AlphaNet's rho values (default: {' '.join(f'{r:g}' for r in d['rhos'])})",
    )  # fmt: skip
    g.add_argument(
        "--seeds", type=int, default=d["seeds"], metavar="N",
        help="runs of the trained methods, seeds --seed .. --seed+N-1 (default: %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--criterion", choices=("overall", "few"), default=d["criterion"],
        help="validation top-1 accuracy maximised by the recommendation (default: %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--few-weight", type=float, metavar="W",
        help="recommend by W x few + (1 - W) x overall validation top-1 instead",
    )  # fmt: skip
    o = p.add_argument_group("outputs")
    o.add_argument(
        "-o", "--output", type=Path, metavar="PATH",
        help="write the recommended classifier here, in the given classifier's format, with "
        "a JSON beside it naming the method and its settings",
    )  # fmt: skip
    o.add_argument(
        "--ship", metavar="NAME",
        help="with -o: write the row NAME as the table shows it (e.g. 'tau-norm', "
        "'LWS + AlphaNet (rho=1)') instead of the recommended one",
    )  # fmt: skip
    o.add_argument("--report", type=Path, metavar="PATH", help="write the comparison as JSON")
    o.add_argument("--plots", type=Path, metavar="DIR", help="write tradeoff.png to DIR")
    add_settings(p, skip=("rho",))
    add_common(p)
    p.set_defaults(func=run_compare)


def _criterion(args: argparse.Namespace) -> Any:
    if args.few_weight is None:
        return args.criterion
    if not 0.0 <= args.few_weight <= 1.0:
        raise InputError(f"--few-weight: expected a number in [0, 1], found {args.few_weight}")
    return {"few": args.few_weight, "overall": 1.0 - args.few_weight}


def _alphanet_options(args: argparse.Namespace) -> tuple[dict[str, Any], Any, int]:
    """correct()'s settings from the flags, less rho (swept) and device and seed (shared)."""
    knobs = settings_from_args(args)
    device, seed = knobs.pop("device"), knobs.pop("seed")
    knobs.pop("rho", None)
    if args.neighbors is not None:
        knobs["neighbors"] = read_neighbors(args.neighbors)
        knobs["k"] = knobs["neighbors"].shape[1]
    return knobs, device, seed


def _row_names(args: argparse.Namespace) -> list[str]:
    """The rows the comparison will have, named as its table names them."""
    methods = list(dict.fromkeys(args.methods))
    names = [PLAIN_LABEL, *(METHODS[m].label for m in methods)]
    for base in dict.fromkeys(args.alphanet_on):
        label = "plain" if base == "plain" else METHODS[base].label
        names += [f"{label} + AlphaNet (rho={rho:g})" for rho in dict.fromkeys(args.rhos)]
    return names


def _shipping_outputs(args: argparse.Namespace, data: TrainingData) -> list:
    """``-o`` and the JSON beside it (none without ``-o``); ``--ship`` checked before the run."""
    if args.output is None:
        if args.ship is not None:
            raise InputError("--ship: give -o PATH to write the row to")
        return []
    if args.ship is not None and args.ship not in _row_names(args):
        raise InputError(f"--ship: no row {args.ship!r}; the rows will be {_row_names(args)}")
    out, json_path = output_paths(args.output, data.clf, "compared")
    args.output, args.ship_report = out, json_path
    return [("-o/--output", out, False), ("-o/--output (its JSON)", json_path, False)]


def _ship(args: argparse.Namespace, data: TrainingData, result: Any) -> list[Path]:
    """Write the recommended (or ``--ship``) row's classifier and its JSON."""
    run = result.best if args.ship is None else result.run(args.ship)
    inputs = {"train": args.train, "classifier": data.clf.describe(), "val": args.val,
              "test": args.test}  # fmt: skip
    return write_shipped(
        data.clf, run, args.output, args.ship_report, "compare", inputs=inputs,
        criterion=result.criterion, recommended=result.recommended,
        shipped_recommended=run.name == result.recommended,
    )  # fmt: skip


def run_compare(args: argparse.Namespace) -> int:
    """``alphanet-fast compare``: print the table; write the report, the plot, the classifier."""
    if args.seeds < 1:
        raise InputError(f"--seeds: expected an integer >= 1, found {args.seeds}")
    plot = None if args.plots is None else args.plots / "tradeoff.png"
    outputs = [("--report", args.report, False), ("--plots", args.plots, True),
               ("--plots", plot, False)]  # fmt: skip
    guard_outputs(args, outputs)
    criterion = _criterion(args)
    data = TrainingData(args)
    if data.val is None:
        raise InputError("compare needs --val: every choice is made on the validation set")
    guard_outputs(args, [*_shipping_outputs(args, data), *outputs])
    knobs, device, seed = _alphanet_options(args)
    result = compare(
        (data.X, data.y), data.clf.W, data.clf.b,
        val=data.val, test=data.test, methods=args.methods, alphanet_on=args.alphanet_on,
        rhos=args.rhos, seeds=args.seeds, criterion=criterion,
        alphanet_options=knobs, device=device, seed=seed,
    )  # fmt: skip
    on = "test" if data.test is not None else "val"
    n = len((data.test or data.val)[1])
    print(f"\n{on.capitalize()} set ({n} samples), accuracy per split by training count:")
    print(result.table(on))
    print(f"\n{result.seconds:.1f} s in all: " + ", ".join(
        f"{r.name} {r.seconds:.1f} s" for r in result.rows if r.seconds >= 0.05
    ))  # fmt: skip
    written = [] if args.output is None else _ship(args, data, result)
    if args.report is not None:
        written.append(report.write(args.report, "compare", **result.to_dict()))
    if plot is not None:
        args.plots.mkdir(parents=True, exist_ok=True)
        written.append(result.plot(plot, on=on))
    for path in written:
        print(f"wrote {path}")
    return 0


def demo_comparison(data: Any, output_dir: Path, *, seeds: int = 1, device: Any = "auto") -> Any:
    """The comparison on the demo's synthetic data: print the table, write the plot and JSON.

    Parameters
    ----------
    data : alphanet_fast.datasets.LongTailData
        The demo's data (``make_long_tail(profile, seed=...)``).
    output_dir : Path
        ``comparison.png`` and ``comparison.json`` are written here.
    seeds : int, default 1
        Runs of the trained methods (the demo keeps to one).
    device : str, default "auto"

    Returns
    -------
    ComparisonReport
    """
    result = compare(
        (data.train_features, data.train_labels), data.W, data.b,
        val=(data.val_features, data.val_labels), test=(data.test_features, data.test_labels),
        seeds=seeds, device=device, seed=data.seed,
    )  # fmt: skip
    print(f"\nWhich post-hoc fix to ship (test set, {len(data.test_labels)} samples):")
    print(result.table())
    output_dir.mkdir(parents=True, exist_ok=True)
    report.write(output_dir / "comparison.json", "demo --compare", **result.to_dict())
    result.plot(output_dir / "comparison.png")
    print(f"wrote {output_dir / 'comparison.json'}, {output_dir / 'comparison.png'}")
    return result
