"""LWS's, cRT's, the frozen scores' and compare()'s products: the previous way beside ours.

    python benches/product_shapes.py [--rounds 3]

Each shape is timed the way the package used to compute it and the way it does
now, in this process, in turn (median of 10 calls each, every round):

* cRT's forward ``x @ W.T`` for a batch (512 x 2,048 against 1,000 classes):
  torch's ``addmm`` on one thread, against ``_core.thin_t_dot`` with the
  weights held as ``(d, C)``, on one thread and on the kernels' pool;
* cRT's weight gradient ``g.T @ x``: torch's ``mm`` on one thread, against
  ``_core.thin_dot`` into the ``(d, C)`` layout, one thread and the pool;
* a frozen-score block (1,376 rows, the ImageNet-LT block, against 1,000
  classes): torch's ``mm`` on one thread against ``_core.thin_dot`` on one
  thread (each scoring worker runs one block);
* a block of ``compare()``'s scoring (2,048 rows): numpy's ``@`` (its BLAS, all
  cores) against ``_core.thin_dot`` on the pool.

Prints GFLOP/s and, per round, the ratio ours / theirs like for like (one
thread against torch's one thread; the pool against numpy's), and the CPU line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_info import describe_cpu, format_cpu  # noqa: E402

D, C = 2048, 1000


def _gflops(fn, flop: float, calls: int = 10) -> float:
    fn()  # warm: first-call allocations and the pool's threads
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return flop / float(np.median(times)) / 1e9


def _cases(rng: np.random.Generator) -> list[tuple[str, float, object, object, object | None]]:
    """(name, flop, theirs, ours on one thread, ours on the pool or None)."""
    import torch
    from alphanet_fast import _core

    W = rng.standard_normal((C, D), dtype=np.float32)
    held = np.ascontiguousarray(W.T)
    x = rng.standard_normal((512, D), dtype=np.float32)
    g = rng.standard_normal((512, C), dtype=np.float32)
    scores, grad = np.empty((512, C), np.float32), np.empty((D, C), np.float32)
    Wt, xt, gt, bt = torch.from_numpy(W), torch.from_numpy(x), torch.from_numpy(g), torch.zeros(C)
    block = rng.standard_normal((1376, D), dtype=np.float32)
    block_t, block_out = torch.from_numpy(block), np.empty((1376, C), np.float32)
    cmp = rng.standard_normal((2048, D), dtype=np.float32)
    cmp_out = np.empty((2048, C), np.float32)
    batch = 2.0 * 512 * D * C
    return [
        (
            "cRT forward, 512 rows",
            batch,
            lambda: torch.addmm(bt, xt, Wt.T),
            lambda: _core.thin_t_dot(x.T, held, scores, False),
            lambda: _core.thin_t_dot(x.T, held, scores, True),
        ),
        (
            "cRT weight gradient",
            batch,
            lambda: gt.T @ xt,
            lambda: _core.thin_dot(x.T, g, grad, False),
            lambda: _core.thin_dot(x.T, g, grad, True),
        ),
        (
            "frozen-score block, 1,376 rows",
            2.0 * 1376 * D * C,
            lambda: torch.mm(block_t, Wt.T),
            lambda: _core.thin_dot(block, W.T, block_out, False),
            None,
        ),
        (
            "compare() scoring block, 2,048 rows (numpy, all cores)",
            2.0 * 2048 * D * C,
            lambda: cmp @ W.T,
            None,
            lambda: _core.thin_dot(cmp, W.T, cmp_out, True),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch

    print(format_cpu(describe_cpu()))
    print(f"load average at start: {os.getloadavg()}")
    cases = _cases(np.random.default_rng(0))
    print("GFLOP/s: theirs (torch one thread; numpy all cores) | ours one thread | ours pool")
    threads = torch.get_num_threads()
    for r in range(args.rounds):
        for name, flop, theirs, one, pool in cases:
            torch.set_num_threads(1)
            try:
                t = _gflops(theirs, flop) if "numpy" not in name else None
            finally:
                torch.set_num_threads(threads)
            if t is None:
                t = _gflops(theirs, flop)
            o = _gflops(one, flop) if one is not None else float("nan")
            p = _gflops(pool, flop) if pool is not None else float("nan")
            # Like for like: one thread against torch's one thread, the pool against numpy's.
            ratio = (o if not np.isnan(o) else p) / t
            print(
                f"round {r + 1} | {name:<55} | {t:6.0f} | {o:6.0f} | {p:6.0f} | "
                f"ours/theirs {ratio:4.2f}x"
            )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
