"""The products on one thread against all of them: wall time and CPU time.

    python benches/thread_scaling.py [--rounds 5] [--simd avx512|avx2]

Calls ``nearest_neighbors`` (3,224 x 4,918 x 2,048) and ``topk_scores``
(50,000 x 2,048, C = 1,000) with the kernels held to one thread and to every
CPU, alternating, and prints the medians of the wall time and of the process's
CPU time (user + system) per call. On an idle machine the wall-time ratio is
the speed-up; on a shared one (where another process takes cores away) the
CPU-time ratio still says how much work the split adds: a ratio near 1 with
the wall ratio near the thread count means every thread was busy for the
whole call.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_info import SIMD_ENV, describe_cpu, format_cpu  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(call, threads: int) -> tuple[float, float]:
    import alphanet_fast as af

    before = af.get_num_threads()
    af.set_num_threads(threads)
    try:
        time.sleep(0.3)
        wall, cpu = time.perf_counter(), cpu_seconds()
        call()
        return time.perf_counter() - wall, cpu_seconds() - cpu
    finally:
        af.set_num_threads(before)


def main(argv: list[str] | None = None) -> None:
    import alphanet_fast as af

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--simd", default="", help="ALPHANET_FAST_SIMD for the calls")
    args = p.parse_args(argv)
    if args.simd:
        os.environ[SIMD_ENV] = args.simd
    print(format_cpu(describe_cpu()), flush=True)
    rng = np.random.default_rng(1)
    q = rng.standard_normal((3224, 2048), dtype=np.float32)
    pool = rng.standard_normal((4918, 2048), dtype=np.float32)
    x = rng.standard_normal((50_000, 2048), dtype=np.float32)
    w = rng.standard_normal((1000, 2048), dtype=np.float32) * 0.05
    calls = {
        "nearest_neighbors 3,224 x 4,918 x 2,048": lambda: af.nearest_neighbors(q, pool, 5),
        "topk_scores 50,000 x 2,048, C = 1,000": lambda: af.topk_scores(x, w, None, 5),
    }
    n = os.cpu_count() or 1
    print(f"| call | wall 1 / {n} threads | ratio | CPU s 1 / {n} threads | ratio |")
    print("|---|---|---|---|---|")
    for name, call in calls.items():
        call()  # warm-up
        runs = {1: [], n: []}
        for _ in range(args.rounds):
            for threads in (1, n):
                runs[threads].append(measure(call, threads))
        wall = {t: float(np.median([r[0] for r in v])) for t, v in runs.items()}
        cpu = {t: float(np.median([r[1] for r in v])) for t, v in runs.items()}
        print(
            f"| {name} | {wall[1]:.3f} / {wall[n]:.3f} s | {wall[1] / wall[n]:.2f}x | "
            f"{cpu[1]:.3f} / {cpu[n]:.3f} | {cpu[n] / cpu[1]:.2f} |",
            flush=True,
        )
    print(f"load after: {describe_cpu()['loadavg_1_5_15']}", flush=True)


if __name__ == "__main__":
    main()
