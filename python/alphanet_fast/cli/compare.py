"""The ``compare`` command: every post-hoc fix side by side, one recommended on validation.

Also :func:`demo_comparison`, the same comparison on the demo's synthetic data
(``alphanet-fast demo --compare``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from alphanet_fast.comparison import METHODS
from alphanet_fast.files.data_files import InputError
from alphanet_fast.files.data_files import load_neighbors as read_neighbors

from . import report
from .common import TrainingData, guard_outputs, settings_from_args
from .parser import add_common, add_data, add_settings

__all__ = ["demo_comparison", "register", "run_compare"]


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


def run_compare(args: argparse.Namespace) -> int:
    """``alphanet-fast compare``: print the table, write the report and the plot."""
    from alphanet_fast.comparison import compare

    if args.seeds < 1:
        raise InputError(f"--seeds: expected an integer >= 1, found {args.seeds}")
    plot = None if args.plots is None else args.plots / "tradeoff.png"
    guard_outputs(
        args, [("--report", args.report, False), ("--plots", args.plots, True),
               ("--plots", plot, False)],
    )  # fmt: skip
    criterion = _criterion(args)
    data = TrainingData(args)
    if data.val is None:
        raise InputError("compare needs --val: every choice is made on the validation set")
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
    if args.report is not None:
        print(f"wrote {report.write(args.report, 'compare', **result.to_dict())}")
    if plot is not None:
        args.plots.mkdir(parents=True, exist_ok=True)
        print(f"wrote {result.plot(plot, on=on)}")
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
    from alphanet_fast.comparison import compare

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
