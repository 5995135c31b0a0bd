"""``alphanet-fast demo``: the whole pipeline on built-in synthetic long-tailed data."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from alphanet_fast.evaluation import evaluate
from alphanet_fast.files._atomic import write_npz, write_text

from . import report
from .common import (
    guard_outputs,
    ks_for,
    print_tables,
    progress,
    run_correct,
    settings_from_args,
    write_plots,
)
from .parser import PROG, add_common, add_settings
from .train import explain_text

__all__ = ["register", "run_demo"]

DEMO_PROFILE = "imagenet_lt"
DEMO_SETTINGS = ("rho", "epochs", "device", "seed")


def register(sub: Any) -> None:
    """Add ``demo`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on built-in synthetic long-tailed data",
        description="Train AlphaNet on built-in synthetic long-tailed data, print the "
        "before/after table and the largest changes, and write plots, a JSON report, the "
        "saved result and the corrected classifier to an output folder (./alphanet_demo "
        "in the current directory by default).",
    )
    p.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        default=Path("alphanet_demo"),
        metavar="DIR",
        help="where to write (default: %(default)s, in the current directory)",
    )
    p.add_argument(
        "--profile",
        choices=("imagenet_lt", "small"),
        default=DEMO_PROFILE,
        help="imagenet_lt: 1000 classes, 2048-d, 115,846 training rows as ImageNet-LT "
        "(under a minute on 2 cores); small: 200 classes, 64-d (seconds) "
        "(default: %(default)s)",
    )
    add_settings(
        p, only=DEMO_SETTINGS, neighbors_file=False, help_extra={"seed": " and of the data"}
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument(
        "--compare",
        action="store_true",
        help="also compare AlphaNet with the post-hoc baselines (NCM, tau-norm, logit "
        "adjustment, LWS, cRT) and AlphaNet on top of them, one seed, and recommend one on "
        "validation; writes comparison/ (adds about 90 s on 2 cores)",
    )
    p.add_argument(
        "--save-data",
        action="store_true",
        help="also write the data and baseline classifier as .npz files, to try 'correct' on "
        "(about 1.5 GB for imagenet_lt, 7 MB for small)",
    )
    add_common(p)
    p.set_defaults(func=run_demo)


def _save_data(out: Path, data: Any, names: list[str], groups: np.ndarray) -> list[Path]:
    """The data and classifier as files, so that 'correct' can be tried on them next."""
    written = [
        write_npz(
            out / f"{split}.npz",
            features=getattr(data, f"{split}_features"),
            labels=getattr(data, f"{split}_labels"),
        )
        for split in ("train", "val", "test")
    ]
    written.append(write_npz(out / "classifier.npz", weight=data.W, bias=data.b))
    written.append(write_text(out / "class_names.txt", "\n".join(names) + "\n"))
    written.append(write_text(out / "groups.txt", "\n".join(map(str, groups.tolist())) + "\n"))
    return written


def _describe(data: Any, profile: str) -> str:
    C, d = data.W.shape
    counts = np.bincount(data.train_labels, minlength=C)
    return (
        f"Synthetic long-tailed data ('{profile}' profile): {C} classes, {d}-d features, "
        f"{len(data.train_labels)} train / {len(data.val_labels)} val / "
        f"{len(data.test_labels)} test samples; {counts.min()} to {counts.max()} training "
        "samples per class."
    )


def _write_outputs(
    args: argparse.Namespace, data: Any, res: Any, before: Any, after: Any
) -> list[Path]:
    """The result, the corrected classifier, the report, and (unless refused) the plots
    and (when asked) the data, in ``args.output_dir``; the paths written."""
    out, names, groups = args.output_dir, list(data.class_names), np.asarray(data.groups)
    res.save(out / "result.npz")
    written = [
        out / "result.npz",
        write_npz(out / "classifier.alphanet.npz", weight=res.W, bias=res.b),
    ]
    rows = report.few_class_rows(
        res.few_classes, res.counts, res.neighbors, res.neighbor_distances, names,
        alphas=res.alphas, before=before, after=after,
    )  # fmt: skip
    written.append(
        report.write(
            out / "report.json",
            "demo",
            profile=args.profile,
            config=res.config,
            history=res.history,
            best_epoch=res.best_epoch,
            evaluation={"test": {"baseline": before.to_dict(), "alphanet": after.to_dict()}},
            few_classes=rows,
        )  # fmt: skip
    )
    if not args.no_plots:
        written += write_plots(out / "plots", before, after, res, "test")
    if args.save_data:
        written += _save_data(out, data, names, groups)
    return written


def run_demo(args: argparse.Namespace) -> int:
    """``alphanet-fast demo``: make data, correct, evaluate, explain, write the outputs."""
    from alphanet_fast.datasets import make_long_tail

    t0 = time.perf_counter()
    out = args.output_dir
    settings = settings_from_args(args)
    guard_outputs(args, [("-o/--output-dir", out, True)])

    def status(text: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - t0:5.1f} s] {text}", file=sys.stderr, flush=True)

    status(f"making the synthetic '{args.profile}' data and its baseline classifier ...")
    data = make_long_tail(args.profile, seed=args.seed)
    print(_describe(data, args.profile))
    status("training AlphaNet ...")
    res = run_correct(
        data.train_features, data.train_labels, data.W, data.b,
        val=(data.val_features, data.val_labels), progress=progress(args), **settings,
    )  # fmt: skip
    print(res.summary())
    status("evaluating on the test set ...")
    names, groups = list(data.class_names), np.asarray(data.groups)
    ks, test = ks_for(data.W.shape[0]), (data.test_features, data.test_labels)
    before = evaluate(*test, data.W, data.b, splits=res, k=ks, groups=groups)
    after = evaluate(*test, res.W, res.b, splits=res, k=ks, groups=groups)
    print_tables(
        "test", len(data.test_labels), {"baseline": before, f"AlphaNet (rho={args.rho:g})": after}
    )
    print()
    print(explain_text(res, before, after, names, top=3))

    status(f"writing to {out}/ ...")
    written = _write_outputs(args, data, res, before, after)
    if args.compare:
        from .compare import demo_comparison

        status("comparing with the post-hoc baselines ...")
        demo_comparison(data, out / "comparison", seeds=1, device=args.device)
        written += [out / "comparison" / "comparison.json", out / "comparison" / "comparison.png"]
    print(f"\nWrote {len(written)} files to {out}/ in {time.perf_counter() - t0:.0f} s:")
    print("  " + ", ".join(str(p.relative_to(out)) for p in written))
    if args.save_data:
        print("Next, the same on files:")
        print(
            f"  {PROG} correct {out}/train.npz {out}/classifier.npz --val {out}/val.npz "
            f"--test {out}/test.npz --class-names {out}/class_names.txt --plots {out}/plots2"
        )
    return 0
