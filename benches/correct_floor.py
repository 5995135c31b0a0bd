"""``correct()`` against its compute floor, measured on the same machine in the same run.

    python benches/correct_floor.py [--rounds 5] [--tree NAME=SRC_DIR ...]

The floor is the float32 arithmetic ``correct()`` cannot avoid at the
ImageNet-LT shape (default settings, validation every epoch), divided by the
machine's float32 peak:

* every step's first layer, forward and weight gradient: two products of
  ``F (k+1) d h1`` multiply-adds, ``4 F (k+1) d h1`` FLOP (``F`` few classes,
  ``h1`` = 32);
* the frozen training scores, once per distinct drawn row: ``2 n_rows d C``;
* the frozen validation scores: ``2 n_val d C``.

The peak is ``torch.mm`` of two 4096 x 4096 float32 matrices at torch's default
thread count (every core), the best of three, taken in the same process just
before and just after the timed ``correct()``; the larger of the two is used,
so a neighbour's load that slows the run but spares the peak counts against
us. Each round runs one fresh process per source tree (``--tree``: e.g. the
previous release beside this one, ``PYTHONPATH`` set to its ``python/``
folder), in turn, so the trees share the machine's load alike. The table gives
medians over the rounds; the CPU line says what ran it.

On a machine other jobs share, wall time measures them as much as us: the
table also gives the ratio in CPU time (the process's CPU seconds in
``correct()`` against the needed arithmetic at the product's GFLOP per CPU
second), which a neighbour's load moves far less (it still slows the caches).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_info import describe_cpu, format_cpu  # noqa: E402

ARRAYS = ("train_features", "train_labels", "val_features", "val_labels", "W", "b")

CHILD = """
import json, sys, time
import numpy as np, torch
import alphanet_fast as af

def peak():
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    torch.mm(a, b)
    wall = cpu = float("inf")
    for _ in range(3):
        t, c = time.perf_counter(), time.process_time()
        torch.mm(a, b)
        wall = min(wall, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    return 2 * 4096**3 / wall / 1e9, 2 * 4096**3 / cpu / 1e9

folder = sys.argv[1]
x, y, vx, vy, W, b = (np.load(f"{folder}/{n}.npy") for n in
    ("train_features", "train_labels", "val_features", "val_labels", "W", "b"))
af.correct(x, y, W, b, epochs=1, progress=False)  # warm-up
before = peak()
t, c = time.perf_counter(), time.process_time()
r = af.correct(x, y, W, b, val=(vx, vy), progress=False)
total, cpu = time.perf_counter() - t, time.process_time() - c
after = peak()
print(json.dumps({"total": total, "cpu": cpu, "peak_gflops": max(before[0], after[0]),
                  "peak_gflops_per_cpu_s": max(before[1], after[1]), "timings": r.timings}))
"""


def needed_gflop(folder: Path, epochs: int = 25, batch: int = 64, hidden1: int = 32) -> dict:
    """The floor's arithmetic (GFLOP) at default settings, from the run's own draws."""
    import alphanet_fast as af
    from alphanet_fast.training.sampling import draw_epochs

    y = np.load(folder / "train_labels.npy")
    W = np.load(folder / "W.npy", mmap_mode="r")
    n_val = np.load(folder / "val_labels.npy", mmap_mode="r").shape[0]
    n_classes, d = W.shape
    splits = af.splits_from_counts(np.bincount(y, minlength=n_classes))
    few_rows = np.flatnonzero(np.isin(y, splits.few))
    rng = np.random.default_rng(np.random.SeedSequence(0).spawn(2)[0])
    order = draw_epochs(y, few_rows, splits, 1.0, epochs, rng)
    steps = epochs * -(-order.shape[1] // batch)
    step = 4 * splits.few.size * 6 * d * hidden1
    parts = {
        "steps": steps * step / 1e9,
        "frozen_train": 2 * np.unique(order).size * d * n_classes / 1e9,
        "frozen_val": 2 * n_val * d * n_classes / 1e9,
    }
    return {**parts, "total": sum(parts.values()), "n_steps": steps, "step_mflop": step / 1e6}


def run_child(src: str, folder: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    here = str(Path(__file__).resolve().parents[1] / "python")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--tree",
        action="append",
        default=[],
        help="NAME=SRC_DIR (a python/ folder holding alphanet_fast); default: this tree",
    )
    args = p.parse_args(argv)
    trees = dict(t.split("=", 1) for t in args.tree) or {"this": here}
    print(format_cpu(describe_cpu()), flush=True)
    from alphanet_fast.datasets import make_long_tail

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = make_long_tail("imagenet_lt", seed=0, n_test_per_class=0)
        for name in ARRAYS:
            np.save(folder / f"{name}.npy", getattr(data, name))
        del data
        need = needed_gflop(folder)
        print(
            f"needed: {need['total']:.0f} GFLOP ({need['n_steps']} steps of "
            f"{need['step_mflop']:.0f} MFLOP = {need['steps']:.0f}, frozen training scores "
            f"{need['frozen_train']:.0f}, validation scores {need['frozen_val']:.0f})",
            flush=True,
        )
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, src in trees.items():
                r = run_child(src, folder)
                runs[name].append(r)
                wall = r["total"] / (need["total"] / r["peak_gflops"])
                cpu = r["cpu"] / (need["total"] / r["peak_gflops_per_cpu_s"])
                line = f"{name}: {r['total']:.2f} s, ratio {wall:.2f}, CPU-time ratio {cpu:.2f}"
                print(line, flush=True)
    print(
        "| tree | correct() s | epochs s | ms/step | peak GFLOP/s | floor s | ratio "
        "| CPU-time ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, rs in runs.items():
        ratios = [r["total"] / (need["total"] / r["peak_gflops"]) for r in rs]
        cpu_ratios = [r["cpu"] / (need["total"] / r["peak_gflops_per_cpu_s"]) for r in rs]
        med = {
            "total": np.median([r["total"] for r in rs]),
            "epochs": np.median([r["timings"]["epochs"] for r in rs]),
            "peak": np.median([r["peak_gflops"] for r in rs]),
        }
        print(
            f"| {name} | {med['total']:.2f} | {med['epochs']:.2f} | "
            f"{1e3 * med['epochs'] / need['n_steps']:.2f} | {med['peak']:.0f} | "
            f"{need['total'] / med['peak']:.2f} | {np.median(ratios):.2f} "
            f"({min(ratios):.2f}-{max(ratios):.2f}) | {np.median(cpu_ratios):.2f} "
            f"({min(cpu_ratios):.2f}-{max(cpu_ratios):.2f}) |"
        )
    print(f"load after: {describe_cpu()['loadavg_1_5_15']}")
    for name, rs in runs.items():
        print(name, json.dumps([{k: round(v, 3) for k, v in r["timings"].items()} for r in rs]))


if __name__ == "__main__":
    main()
