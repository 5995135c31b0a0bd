"""Top-1 test-accuracy changes of correct() on make_long_tail data, seed by seed.

The figures behind tests/test_method.py's thresholds, quoted in docs/method.md
(rendered by docs/figures.py): for each seed, the change (points) of the few /
medium / many splits and overall at rho 0.5, rho 2 and rho 0.5 with random
neighbours, then the means.

    python benches/method_gains.py --seeds 8              # the "small" profile, seeds 0-7
"""

from __future__ import annotations

import argparse

import alphanet_fast as af
import numpy as np
from alphanet_fast.datasets import make_long_tail

SETTINGS = {
    "rho 0.5": dict(rho=0.5),
    "rho 2": dict(rho=2.0),
    "rho 0.5, random": dict(rho=0.5, metric="random"),
}
COLUMNS = ("few", "medium", "many", "overall")


def split_changes(data, res) -> list[float]:
    """Points gained by each split and overall; test sets are balanced."""

    def per_class(W):
        hits = np.argmax(data.test_features @ W.T + data.b, axis=1) == data.test_labels
        return np.bincount(data.test_labels, weights=hits) / np.bincount(data.test_labels)

    before, after = per_class(data.W), per_class(res.W)
    out = [
        100 * (after[getattr(res.splits, s)] - before[getattr(res.splits, s)]).mean()
        for s in COLUMNS[:3]
    ]
    return [*out, 100 * (after.mean() - before.mean())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="seeds 0..N-1 (default 8)")
    parser.add_argument("--profile", default="small")
    args = parser.parse_args()
    table = {name: [] for name in SETTINGS}
    for seed in range(args.seeds):
        data = make_long_tail(args.profile, seed=seed)
        for name, kwargs in SETTINGS.items():
            res = af.correct(
                data.train_features,
                data.train_labels,
                data.W,
                data.b,
                val=(data.val_features, data.val_labels),
                seed=seed,
                progress=False,
                **kwargs,
            )
            table[name].append(split_changes(data, res))
    print(f"change of top-1 (points), make_long_tail({args.profile!r}), seeds 0-{args.seeds - 1}")
    for name, rows in table.items():
        print(f"\n{name:<18}" + "".join(f"{c:>9}" for c in COLUMNS))
        for seed, row in enumerate(rows):
            print(f"  seed {seed:<12}" + "".join(f"{v:>+9.1f}" for v in row))
        rows = np.array(rows)
        print(f"  {'mean, seeds 0-2':<17}" + "".join(f"{v:>+9.1f}" for v in rows[:3].mean(0)))
        print(f"  {'mean, all':<17}" + "".join(f"{v:>+9.1f}" for v in rows.mean(0)))
        print(f"  {'min, all':<17}" + "".join(f"{v:>+9.1f}" for v in rows.min(0)))


if __name__ == "__main__":
    main()
