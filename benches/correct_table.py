"""docs/benchmarks.md's ``correct()`` figures: ImageNet-LT shape, each SIMD path, idle, a core held.

    python benches/correct_table.py [--rounds 3] [--paths widest,avx2] [--busy]

Each round runs ``correct()`` (default settings: 25 epochs, validation every
epoch) once per path, in turn, each in a fresh process, so the paths share the
machine's load alike. A path is the vector level every library in the process
is held to: ``ALPHANET_FAST_SIMD`` for our kernels, ``MKL_ENABLE_INSTRUCTIONS``
for torch's BLAS and ``ATEN_CPU_CAPABILITY`` for torch's own kernels (all read
at start-up), so the AVX2 row on an AVX-512 CPU runs AVX2 code throughout,
though on that CPU's clocks, caches and memory. ``--busy`` also runs a process
that spins on one core for the whole measurement, as a neighbour's job would.
The table gives the median of the rounds per path, in all and per stage.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_info import SIMD_ENV, describe_cpu, format_cpu  # noqa: E402

# "widest": every library at the widest level the CPU has (AVX-512 where present).
PATH_ENV = {
    "widest": {},
    "avx2": {SIMD_ENV: "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
}
STAGES = ("means", "frozen_val", "frozen_train", "epochs", "validation")

CHILD = """
import json, time
import alphanet_fast as af
from alphanet_fast.datasets import make_long_tail
d = make_long_tail("imagenet_lt", seed=0, n_test_per_class=0)
af.correct(d.train_features, d.train_labels, d.W, d.b, epochs=1, progress=False)  # warm-up
t = time.perf_counter()
r = af.correct(d.train_features, d.train_labels, d.W, d.b,
               val=(d.val_features, d.val_labels), progress=False)
print(json.dumps({"total": time.perf_counter() - t, **r.timings}))
"""


def run_once(path: str) -> dict:
    env = {**os.environ, **PATH_ENV[path]}
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--paths", default="widest,avx2", help="comma list of widest, avx2")
    p.add_argument("--busy", action="store_true", help="spin a process on one core meanwhile")
    args = p.parse_args(argv)
    paths = [x for x in args.paths.split(",") if x]
    print(format_cpu(describe_cpu()), flush=True)
    spinner = None
    if args.busy:
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(1)
    try:
        runs: dict[str, list[dict]] = {x: [] for x in paths}
        for _ in range(args.rounds):
            for path in paths:
                runs[path].append(run_once(path))
    finally:
        if spinner is not None:
            spinner.kill()
    label = "one core held by a spinning process" if args.busy else "no other job started"
    print(f"| path ({label}) | total | " + " | ".join(STAGES) + " |")
    print("|---|---|" + "---|" * len(STAGES))
    for path, rs in runs.items():
        med = {k: float(np.median([r[k] for r in rs])) for k in ("total", *STAGES)}
        spread = f"{min(r['total'] for r in rs):.2f}-{max(r['total'] for r in rs):.2f}"
        cells = " | ".join(f"{med[k]:.2f}" for k in STAGES)
        print(f"| {path} | {med['total']:.2f} s ({spread}) | {cells} |")
    print(f"load after: {describe_cpu()['loadavg_1_5_15']}")


if __name__ == "__main__":
    main()
