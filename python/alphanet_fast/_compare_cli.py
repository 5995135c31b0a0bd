"""The ``alphanet-fast compare`` command: every post-hoc fix side by side, one recommended.

:func:`add_parser` adds the subcommand to an ``argparse`` subparsers object,
with the data and AlphaNet options of ``correct`` (built by the same helpers);
:func:`run` executes it and returns the exit status. Errors are raised as the
library's ``ValueError``/``TypeError`` (or ``io.InputError``), which the
command line's entry point prints as one line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from alphanet_fast import cli, io
from alphanet_fast.comparison import METHODS

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``compare`` to ``subparsers`` (from ``ArgumentParser.add_subparsers``).

    Parameters
    ----------
    subparsers : argparse._SubParsersAction

    Returns
    -------
    argparse.ArgumentParser
        The new subcommand's parser; its ``func`` default is :func:`run`.
    """
    p = subparsers.add_parser(
        "compare",
        help="the post-hoc baselines and AlphaNet on top of them; recommend one",
        description="Run nearest class mean, tau-normalisation, logit adjustment, LWS and "
        "cRT on the training features, AlphaNet on top of the given classifier and of cRT "
        "and LWS, and print a paper-style table (mean ± std over seeds). The method "
        "recommended is the best on the validation set by --criterion; the test set is "
        "only reported.",
    )
    cli._add_data(p, train=True, val=True, test=True)
    g = p.add_argument_group("comparison")
    g.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS),
        help="baselines to run (default: all)",
    )  # fmt: skip
    g.add_argument(
        "--alphanet-on", nargs="*", choices=("plain", *METHODS), default=["plain", "crt", "lws"],
        metavar="METHOD", help="classifiers AlphaNet corrects (default: plain crt lws)",
    )  # fmt: skip
    g.add_argument(
        "--rhos", type=float, nargs="+", default=[0.5, 1.0, 1.5], metavar="RHO",
        help="AlphaNet's rho values (default: 0.5 1 1.5)",
    )  # fmt: skip
    g.add_argument(
        "--seeds", type=int, default=3, metavar="N",
        help="runs of the trained methods, seeds --seed .. --seed+N-1 (default: %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--criterion", choices=("overall", "few"), default="overall",
        help="validation top-1 accuracy maximised by the recommendation (default: %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--few-weight", type=float, metavar="W",
        help="recommend by W x few + (1 - W) x overall validation top-1 instead",
    )  # fmt: skip
    o = p.add_argument_group("outputs")
    o.add_argument("--report", type=Path, metavar="PATH", help="write the comparison as JSON")
    o.add_argument("--plots", type=Path, metavar="DIR", help="write tradeoff.png to DIR")
    cli._add_knobs(p, skip=("rho",))
    cli._add_common(p)
    p.set_defaults(func=run)
    return p


def _criterion(args: argparse.Namespace) -> Any:
    if args.few_weight is None:
        return args.criterion
    if not 0.0 <= args.few_weight <= 1.0:
        raise io.InputError(f"--few-weight: expected a number in [0, 1], found {args.few_weight}")
    return {"few": args.few_weight, "overall": 1.0 - args.few_weight}


def run(args: argparse.Namespace) -> int:
    """Run ``compare`` with parsed ``args``; print the table, write the report and plot.

    Parameters
    ----------
    args : argparse.Namespace
        From a parser built with :func:`add_parser`.

    Returns
    -------
    int
        0 on success.
    """
    from alphanet_fast.comparison import compare

    if args.seeds < 1:
        raise io.InputError(f"--seeds: expected at least 1, found {args.seeds}")
    if args.plots is not None and args.plots.exists() and not args.plots.is_dir():
        raise io.InputError(f"{args.plots}: --plots expects a folder, found a file")
    data = cli._Data(args)
    if data.val is None:
        raise io.InputError("compare needs --val: every choice is made on the validation set")
    knobs = cli._knobs(args)
    device, seed = knobs.pop("device"), knobs.pop("seed")
    knobs.pop("rho", None)
    if args.neighbors is not None:
        knobs["neighbors"] = cli._load_neighbors(args.neighbors)
        knobs["k"] = knobs["neighbors"].shape[1]
    report = compare(
        (data.X, data.y), data.clf.W, data.clf.b,
        val=data.val, test=data.test, methods=args.methods, alphanet_on=args.alphanet_on,
        rhos=args.rhos, seeds=args.seeds, criterion=_criterion(args),
        alphanet_options=knobs, device=device, seed=seed,
    )  # fmt: skip
    on = "test" if data.test is not None else "val"
    n = len((data.test or data.val)[1])
    print(f"\n{on.capitalize()} set ({n} samples), accuracy per split by training count:")
    print(report.table(on))
    print(f"\n{report.seconds:.1f} s in all: " + ", ".join(
        f"{r.name} {r.seconds:.1f} s" for r in report.rows if r.seconds >= 0.05
    ))  # fmt: skip
    written = []
    if args.report is not None:
        payload = {"alphanet_fast": cli._version(), "command": "compare", **report.to_dict()}
        written.append(io.write_json(args.report, payload))
    if args.plots is not None:
        args.plots.mkdir(parents=True, exist_ok=True)
        written.append(report.plot(args.plots / "tradeoff.png", on=on))
    for path in written:
        print(f"wrote {path}")
    return 0


def run_demo(data: Any, output_dir: Path, *, seeds: int = 1, device: Any = "auto") -> Any:
    """The demo's comparison on its synthetic data: print the table, write the plot and JSON.

    Parameters
    ----------
    data : alphanet_fast.datasets.LongTailData
        The demo's data (``make_long_tail(profile, seed=...)``).
    output_dir : Path
        ``comparison.png`` and ``comparison.json`` are written here.
    seeds : int, default 1
        Runs of the trained methods (the demo keeps to one, to stay near a minute).
    device : str, default "auto"

    Returns
    -------
    ComparisonReport
    """
    from alphanet_fast.comparison import compare

    report = compare(
        (data.train_features, data.train_labels), data.W, data.b,
        val=(data.val_features, data.val_labels), test=(data.test_features, data.test_labels),
        seeds=seeds, device=device, seed=data.seed,
    )  # fmt: skip
    print(f"\nWhich post-hoc fix to ship (test set, {len(data.test_labels)} samples):")
    print(report.table())
    output_dir.mkdir(parents=True, exist_ok=True)
    payload = {"alphanet_fast": cli._version(), "command": "demo --compare", **report.to_dict()}
    io.write_json(output_dir / "comparison.json", payload)
    report.plot(output_dir / "comparison.png")
    print(f"wrote {output_dir / 'comparison.json'}, {output_dir / 'comparison.png'}")
    return report
