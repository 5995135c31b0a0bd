"""Where ``compare(seeds=1)``'s time goes at the ImageNet-LT shape: the rows' own runs
against everything else (checks, scoring every run on validation and test).

    python benches/compare_table.py [--rounds 3] [--profile imagenet_lt] [--alone]

The data are ``make_long_tail(profile, seed=0)`` (ImageNet-LT: 115,846 x 2,048
float32 training rows, 1,000 classes, 20,000 validation and 50,000 test rows),
built once. Each round runs the default comparison with one seed (15 rows) in
this process; the table gives every round and the medians. ``--alone`` also
times what scoring would cost run by run (``evaluate()`` on each run's own
classifier, validation and test), as a reference for the shared products, and
checks that it gives the same figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_info import describe_cpu, format_cpu  # noqa: E402


def _round(data: object) -> dict[str, float]:
    import alphanet_fast as af

    d = data
    t = time.perf_counter()
    rep = af.compare(
        (d.train_features, d.train_labels), d.W, d.b, seeds=1, seed=0,
        val=(d.val_features, d.val_labels), test=(d.test_features, d.test_labels),
    )  # fmt: skip
    wall = time.perf_counter() - t
    tm = rep.timings
    return {
        "wall": wall,
        "runs": tm["runs"],
        "outside": wall - tm["runs"],
        "scoring": tm["scoring"],
        "checks": tm["checks"],
        "again": tm["rows_scored_again"] / tm["rows_scored"],
        "report": rep,  # type: ignore[dict-item]
    }


def _alone(data: object, rep: object) -> float:
    """Seconds to score every run on its own, and a check that the figures agree."""
    import alphanet_fast as af

    d = data
    t = time.perf_counter()
    for row in rep.rows:  # type: ignore[attr-defined]
        for run in row.runs:
            for split in ("val", "test"):
                x = getattr(d, f"{split}_features")
                x = x if run.transform is None else run.transform(x)
                y = getattr(d, f"{split}_labels")
                alone = af.evaluate(x, y, run.W, run.b, splits=rep.splits, k=(1, 5))  # type: ignore[attr-defined]
                if alone.to_dict() != getattr(run, split).to_dict():
                    raise AssertionError(f"{row.name} on {split}: figures differ")
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", default="imagenet_lt")
    parser.add_argument("--alone", action="store_true")
    args = parser.parse_args()

    from alphanet_fast.datasets import make_long_tail

    print(format_cpu(describe_cpu()))
    print(f"load average at start: {os.getloadavg()}")
    t = time.perf_counter()
    data = make_long_tail(args.profile, seed=0)
    print(f"data ({args.profile}): {time.perf_counter() - t:.1f} s")
    rounds = []
    head = f"{'round':>5} {'wall s':>7} {'runs s':>7} {'outside s':>9} {'scoring s':>9} "
    print(head + f"{'checks s':>8} {'outside %':>9} {'rescored %':>10} {'load':>5}")
    for i in range(args.rounds):
        r = _round(data)
        rounds.append(r)
        print(
            f"{i + 1:>5} {r['wall']:7.1f} {r['runs']:7.1f} {r['outside']:9.1f} "
            f"{r['scoring']:9.1f} {r['checks']:8.2f} {100 * r['outside'] / r['wall']:9.1f} "
            f"{100 * r['again']:10.2f} {os.getloadavg()[0]:5.1f}"
        )
    med = {k: float(np.median([r[k] for r in rounds])) for k in ("wall", "runs", "outside")}
    share = float(np.median([r["outside"] / r["wall"] for r in rounds]))
    print(
        f"median of {len(rounds)}: {med['wall']:.1f} s wall, rows' own runs "
        f"{med['runs']:.1f} s, outside them {med['outside']:.1f} s ({100 * share:.1f} %)"
    )
    rep = rounds[-1]["report"]
    print(rep.table())  # type: ignore[attr-defined]
    print("rows' own time: " + ", ".join(f"{r.name} {r.seconds:.1f} s" for r in rep.rows))  # type: ignore[attr-defined]
    if args.alone:
        seconds = _alone(data, rep)
        print(
            f"scoring every run on its own (evaluate() per run, val and test): {seconds:.1f} s "
            f"against the shared scoring's {rounds[-1]['scoring']:.1f} s; same figures"
        )


if __name__ == "__main__":
    main()
