"""The commands that train: ``correct``, ``sweep`` and ``explain``."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alphanet_fast._errors import fail
from alphanet_fast.evaluation import SPLITS, EvaluationReport, evaluate, format_table
from alphanet_fast.files.classifiers import Classifier, save_classifier
from alphanet_fast.files.data_files import InputError

from . import report
from .common import (
    PLOT_NAMES,
    TrainingData,
    correct_from_args,
    guard_outputs,
    ks_for,
    label,
    load_result_checked,
    pct,
    print_tables,
    settings_from_args,
    warn,
    write_plots,
)
from .parser import PROG, add_common, add_data, add_settings
from .shipping import left_out_note

__all__ = ["explain_text", "register", "run_correct_command", "run_explain", "run_sweep"]


def register(sub: Any) -> None:
    """Add ``correct``, ``sweep`` and ``explain`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "correct",
        help="correct a classifier: write it back in its own format, with a report",
        description="Learn AlphaNet's combinations on the training set and write the "
        "corrected classifier in the input's format (every other entry of the file kept), "
        "a JSON report and, with --plots, PNG plots. Prints the before/after table on the "
        "test set (else the validation set, else the training set). Outputs go to the "
        "current directory unless given as paths.",
    )
    add_data(p, train=True, val=True, test=True)
    o = p.add_argument_group("outputs")
    o.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="PATH",
        help="corrected classifier (default: <classifier>.alphanet<suffix> in the current "
        "directory)",
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
    add_settings(p)
    add_common(p)
    p.set_defaults(func=run_correct_command)
    _register_sweep(sub)
    _register_explain(sub)


def _register_sweep(sub: Any) -> None:
    p = sub.add_parser(
        "sweep",
        help="train over several rho values and seeds; mean and std per split",
        description="Run correct() for every rho and seed and report mean ± std of the "
        "accuracies per split, as in the paper's tables.",
    )
    add_data(p, train=True, val=True, test=True)
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
    add_settings(p, skip=("rho",))
    add_common(p)
    p.set_defaults(func=run_sweep)


def _register_explain(sub: Any) -> None:
    p = sub.add_parser(
        "explain",
        help="the learned combinations of the few classes that gained or lost most",
        description="For the few classes whose accuracy changed most, the learned "
        "combination in words, e.g. '[Eskimo dog] = [Eskimo dog] - 0.18 [Siberian husky] "
        "+ 0.22 [timber wolf]', with training count and accuracy before and after.",
    )
    add_data(p, train=True, val=True, test=True)
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
    add_settings(p)
    add_common(p)
    p.set_defaults(func=run_explain, result_is_input=True)


def default_output(clf: Classifier) -> Path:
    """``model.alphanet.pt`` in the current directory, for ``model.pt`` anywhere."""
    return Path(f"{clf.path.stem}.alphanet{clf.suffix}")


def _correct_outputs(args: argparse.Namespace, out: Path, report_path: Path) -> list:
    plots = [] if args.plots is None else [("--plots", args.plots / n, False) for n in PLOT_NAMES]
    return [
        ("-o/--output", out, False),
        ("--report", report_path, False),
        ("--result", args.result, False),
        ("--plots", args.plots, True),
        *plots,
    ]


def _evaluate_pairs(data: TrainingData, res: Any) -> dict[str, tuple]:
    ks = ks_for(data.clf.n_classes)
    pairs = {}
    for set_name, X, y in data.eval_sets():
        before = evaluate(X, y, data.clf.W, data.clf.b, splits=res, k=ks, groups=data.groups)
        after = evaluate(X, y, res.W, res.b, splits=res, k=ks, groups=data.groups)
        pairs[set_name] = (before, after, len(y))
    return pairs


def run_correct_command(args: argparse.Namespace) -> int:
    """``alphanet-fast correct``: train, write the classifier, the report, result and plots."""
    settings_from_args(args)  # every flag checked before any file is read
    if args.output is not None:
        _check_suffix(args.output, args.classifier)
    data = TrainingData(args)
    out = args.output or default_output(data.clf)
    report_path = args.report or out.with_suffix(".json")
    _check_suffix(out, data.clf.path)
    guard_outputs(args, _correct_outputs(args, out, report_path))
    res = correct_from_args(data, args)
    print(res.summary())
    note = beaten_note(res)
    if note is not None:
        print(note)
    pairs = _evaluate_pairs(data, res)
    # Print the first set (test, else val, else train); the JSON report has them all.
    shown = next(iter(pairs))
    before, after, n = pairs[shown]
    print_tables(shown, n, {"baseline": before, f"AlphaNet (rho={res.config['rho']:g})": after})
    if shown == "train":
        warn("no --val or --test: the accuracies above are on the training set")

    written = [save_classifier(data.clf, res.W, out)]
    note = left_out_note(data.clf, out)
    if note is not None:
        print(note)
    rows = report.few_class_rows(
        res.few_classes, res.counts, res.neighbors, res.neighbor_distances, data.names,
        alphas=res.alphas, before=before, after=after,
    )  # fmt: skip
    evaluation = {
        k: {"baseline": b.to_dict(), "alphanet": a.to_dict()} for k, (b, a, _) in pairs.items()
    }
    inputs = {
        "train": args.train, "classifier": data.clf.describe(), "val": args.val, "test": args.test
    }  # fmt: skip
    written.append(
        report.write(
            report_path,
            "correct",
            inputs=inputs,
            config=res.config,
            splits=report.split_lists(res.splits),
            best_epoch=res.best_epoch,
            history=res.history,
            evaluation=evaluation,
            few_classes=rows,
            val_baselines=res.val_baselines,
            output=out,
        )  # fmt: skip
    )
    if args.result is not None:
        res.save(args.result)
        written.append(args.result)
    if args.plots is not None:
        written += write_plots(args.plots, before, after, res, shown)
    print()
    for path in written:
        print(f"wrote {path}")
    return 0


def beaten_note(res: Any) -> str | None:
    """One line when a cheap baseline beats AlphaNet on overall validation top-1, else None."""
    beaten = res.beaten_by()
    if beaten is None:
        return None
    name, figures = beaten
    own = res.val_top1()["overall"]
    return (
        f"note: {name} (tau={figures['tau']:g}) beats AlphaNet on validation top-1 overall, "
        f"{pct(figures['overall'])} against {pct(own)}; '{PROG} compare' runs every fix, "
        f"'{PROG} baseline {name} TRAIN CLASSIFIER --val VAL -o PATH' writes this one"
    )


def _check_suffix(out: Path, classifier: Path) -> None:
    if out.suffix.lower() != classifier.suffix.lower():
        raise InputError(
            f"{out}: the corrected classifier keeps its input's format; "
            f"use a {classifier.suffix} name"
        )


def _mean_std(values: list[float]) -> dict[str, float | None]:
    v = np.array([x for x in values if not math.isnan(x)])
    if v.size == 0:
        return {"mean": None, "std": None}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0}


def _sweep_runs(data: TrainingData, args: argparse.Namespace, rhos: list, seeds: list):
    from tqdm import tqdm

    _, Xe, ye = data.eval_sets()[0]
    ks = ks_for(data.clf.n_classes)
    runs: dict[float, list[EvaluationReport]] = {rho: [] for rho in rhos}
    baseline = None
    bar = tqdm(
        total=len(rhos) * len(seeds), desc="sweep", unit="run", file=sys.stderr,
        disable=True if args.quiet else None,
    )  # fmt: skip
    try:
        for rho in rhos:
            for seed in seeds:
                res = correct_from_args(data, args, rho=rho, seed=seed, progress=False)
                if baseline is None:
                    # The baseline is evaluated with the first run's splits and neighbours.
                    baseline = evaluate(
                        Xe, ye, data.clf.W, data.clf.b, splits=res, k=ks, groups=data.groups
                    )
                runs[rho].append(
                    evaluate(Xe, ye, res.W, res.b, splits=res, k=ks, groups=data.groups)
                )
                bar.update(1)
    finally:
        bar.close()
    return baseline, runs


def run_sweep(args: argparse.Namespace) -> int:
    """``alphanet-fast sweep``: every rho and seed; mean and std per split."""
    if args.seeds < 1:
        raise InputError(f"--seeds: expected an integer >= 1, found {args.seeds}")
    rho_plot = None if args.plots is None else args.plots / "rho_sweep.png"
    guard_outputs(
        args, [("--report", args.report, False), ("--plots", args.plots, True),
               ("--plots", rho_plot, False)],
    )  # fmt: skip
    data = TrainingData(args)
    if data.test is None and data.val is None:
        raise InputError("sweep needs --test or --val to measure the accuracies on")
    set_name, _, ye = data.eval_sets()[0]
    rhos = list(dict.fromkeys(args.rhos))  # a repeated rho would only repeat its runs
    seeds = [args.seed + i for i in range(args.seeds)]
    for rho in rhos:
        settings_from_args(args, rho=rho, seed=seeds[-1])
    baseline, runs = _sweep_runs(data, args, rhos, seeds)
    rows: dict[str, Any] = {"baseline": baseline}
    rows.update({f"rho={rho:g}": reps for rho, reps in runs.items()})
    print(
        f"\n{set_name.capitalize()} set ({len(ye)} samples), AlphaNet mean ± std over "
        f"{len(seeds)} seeds:"
    )
    print(format_table(rows))
    if args.report is not None:
        ks = ks_for(data.clf.n_classes)
        summary = {
            f"{rho:g}": {
                f"top{k}": {s: _mean_std([r.accuracy[k][s] for r in reps]) for s in SPLITS}
                for k in ks
            }
            for rho, reps in runs.items()
        }
        report.write(
            args.report, "sweep", evaluated_on=set_name, seeds=seeds,
            config=settings_from_args(args), summary=summary, baseline=baseline.to_dict(),
            runs={f"{rho:g}": [r.to_dict() for r in reps] for rho, reps in runs.items()},
        )  # fmt: skip
        print(f"\nwrote {args.report}")
    if rho_plot is not None:
        from alphanet_fast.plots import plot_rho_sweep

        title = f"rho sweep ({set_name} set, {len(seeds)} seeds)"
        print(f"wrote {plot_rho_sweep(runs, rho_plot, baseline=baseline, title=title)}")
    return 0


def run_explain(args: argparse.Namespace) -> int:
    """``alphanet-fast explain``: the learned combinations that gained or lost most."""
    if args.top < 1:
        raise InputError(f"--top: expected an integer >= 1, found {args.top}")
    data = TrainingData(args)
    if data.test is None and data.val is None:
        raise InputError("explain needs --test or --val to measure accuracy before and after")
    set_name, Xe, ye = data.eval_sets()[0]
    if args.result is not None:
        res = load_result_checked(args.result, data.clf.n_classes)
        if res.W.shape != data.clf.W.shape:
            raise InputError(
                f"{args.result}: weights of shape {res.W.shape}, the classifier's are "
                f"{data.clf.W.shape}"
            )
    else:
        res = correct_from_args(data, args)
    ks = ks_for(data.clf.n_classes)
    before = evaluate(Xe, ye, data.clf.W, data.clf.b, splits=res, k=ks)
    after = evaluate(Xe, ye, res.W, res.b, splits=res, k=ks)
    print(explain_text(res, before, after, data.names, top=args.top, set_name=set_name))
    return 0


def _combination(f: int, nb: np.ndarray, alphas: np.ndarray, names: Sequence[str] | None) -> str:
    """``[f] = [f] - 0.18 [n1] + 0.22 [n2] ...``: the corrected weight vector in words."""
    if alphas.shape[0] != nb.shape[0] + 1:
        raise fail(
            "alphas",
            f"class {f} has {alphas.shape[0]} coefficients for {nb.shape[0]} neighbours; "
            f"expected {nb.shape[0] + 1}",
        )
    terms = " ".join(
        f"{'-' if a < 0 else '+'} {abs(a):.2f} {label(int(c), names)}"
        for c, a in zip(nb, alphas[1:])
    )
    return f"{label(f, names)} = {label(f, names)} {terms}"


def explain_text(
    res: Any,
    before: EvaluationReport,
    after: EvaluationReport,
    names: Sequence[str] | None = None,
    *,
    top: int = 5,
    set_name: str = "test",
) -> str:
    """The learned combinations of the few classes whose top-1 accuracy rose or fell most.

    Raises
    ------
    ValueError
        ``res.alphas`` without one coefficient more than ``res.neighbors`` has columns.
    """
    few = res.few_classes
    if res.alphas.shape != (few.size, res.neighbors.shape[1] + 1):
        raise fail(
            "res",
            f"alphas: expected shape ({few.size}, {res.neighbors.shape[1] + 1}) for "
            f"neighbours of shape {res.neighbors.shape}, found {res.alphas.shape}",
        )
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
                f"{pct(before.per_class[1][f])} -> {pct(after.per_class[1][f])} "
                f"({100 * gain[i]:+.1f} points on {int(after.class_counts[f])} samples)"
            )
        lines.append("")
    unchanged = int((gain[seen] == 0).sum())
    lines.append(
        f"{seen.size} few classes in the {set_name} set: {int((gain[seen] > 0).sum())} "
        f"gained, {int((gain[seen] < 0).sum())} lost, {unchanged} unchanged."
    )
    return "\n".join(lines)
