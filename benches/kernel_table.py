"""The kernel table of docs/benchmarks.md: ours on each SIMD path beside the peers, interleaved.

    python benches/kernel_table.py [--rounds 5] [--jobs means_lt,means_inat,nn,topk]

Every round calls every implementation once, in turn, on the same data in this
one process (each after a 0.3 s pause, so that no BLAS threads still spinning
from the previous call take a core from it), so a neighbour's load falls on all
of them alike; the table gives
the median of the rounds and the ratio peer time / ours. ``alphanet_fast
[avx2]`` is the same call with ``ALPHANET_FAST_SIMD=avx2`` (the kernels read it
at every call); on a CPU without AVX-512 both rows run the AVX2 loops. The peers
are what a user would write: float32 ``torch.index_add_`` and a float32 scipy CSR
one-hot product for the means (their error against the exact float64 means is
printed beside ours), faiss ``IndexFlatL2`` for neighbours, torch ``addmm`` +
``topk`` for the scores. Two diagnostics sit beside them: ours with every row
in one class (the same stream of rows with the sums always in cache, so the
difference is the cost of scattering rows over classes) and numpy's ``q @ p.T``
alone (the BLAS product of the same shape as the candidates' product inside
``nearest_neighbors``, which the kernel computes with the ``gemm`` crate).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_info import SIMD_ENV, describe_cpu, format_cpu  # noqa: E402

JOBS = ("means_lt", "means_inat", "nn", "topk")


def with_simd(level: str | None, fn):
    """``fn`` called with ALPHANET_FAST_SIMD set to ``level`` (unset for None)."""

    def call(*args):
        old = os.environ.pop(SIMD_ENV, None)
        if level:
            os.environ[SIMD_ENV] = level
        try:
            return fn(*args)
        finally:
            os.environ.pop(SIMD_ENV, None)
            if old is not None:
                os.environ[SIMD_ENV] = old

    return call


def with_threads(n: int, fn):
    """``fn`` called with the kernels held to ``n`` threads (the setting restored)."""

    def call(*args):
        import alphanet_fast as af

        before = af.get_num_threads()
        af.set_num_threads(n)
        try:
            return fn(*args)
        finally:
            af.set_num_threads(before)

    return call


# Pause before each timed call: a BLAS's threads keep spinning for a while after
# a call (OpenBLAS's do), and would otherwise take a core from whichever
# implementation runs next.
SETTLE_S = 0.3


def interleaved(impls: dict, args: tuple, rounds: int) -> dict:
    """Median seconds of each implementation over ``rounds`` interleaved rounds."""
    for fn in impls.values():
        fn(*args)  # warm-up: thread pools, page faults, lazy imports
    times: dict = {name: [] for name in impls}
    for _ in range(rounds):
        for name, fn in impls.items():
            time.sleep(SETTLE_S)
            t = time.perf_counter()
            fn(*args)
            times[name].append(time.perf_counter() - t)
    return {name: float(np.median(v)) for name, v in times.items()}


def long_tail_labels(rng, n: int, c: int) -> np.ndarray:
    p = 1.0 / np.arange(1, c + 1) ** 1.1
    labels = rng.choice(c, size=n, p=p / p.sum())
    labels[:c] = np.arange(c)  # every class present
    return rng.permutation(labels)


def means_job(n: int, d: int, c: int, rounds: int) -> list[str]:
    import alphanet_fast as af
    import scipy.sparse as sp
    import torch
    from alphanet_fast import _core

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    y = long_tail_labels(rng, n, c)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    one_class = np.zeros_like(y)  # the same stream with the sums stripe always hot

    def torch_f32(x, y, c):
        sums = torch.zeros((c, x.shape[1]), dtype=torch.float32).index_add_(0, yt, xt)
        return (sums / torch.bincount(yt, minlength=c)[:, None]).numpy()

    def scipy_f32(x, y, c):
        onehot = sp.csr_matrix((np.ones(n, np.float32), (y, np.arange(n))), shape=(c, n))
        return (onehot @ x) / np.bincount(y, minlength=c)[:, None].astype(np.float32)

    ours = lambda x, y, c: af.class_means(x, y, c)[0]  # noqa: E731
    impls = {
        "alphanet_fast": with_simd(None, ours),
        "alphanet_fast [avx2]": with_simd("avx2", ours),
        "torch index_add_ f32": torch_f32,
        "scipy CSR f32": scipy_f32,
        "ours, one class": lambda x, y, c: ours(x, one_class, c),
        "read: np.max": lambda x, y, c: np.max(x),
        "read: parallel probe": lambda x, y, c: _core._read_probe(x),
    }
    t = interleaved(impls, (x, y, c), rounds)
    exact = af.class_sums(x, y, c)[0] / np.bincount(y, minlength=c)[:, None]
    err = {
        name: float(np.max(np.abs(impls[name](x, y, c) - exact)))
        for name in ("alphanet_fast", "torch index_add_ f32", "scipy CSR f32")
    }
    gb = x.nbytes / 1e9
    rows = []
    for name in ("alphanet_fast", "alphanet_fast [avx2]"):
        rows.append(
            f"| `class_means` {n:,} x {d:,}, C = {c:,} | {name} | {t[name] * 1e3:.0f} ms "
            f"({gb / t[name]:.1f} GB/s) | torch {t['torch index_add_ f32'] / t[name]:.2f}x, "
            f"scipy {t['scipy CSR f32'] / t[name]:.2f}x | np.max read "
            f"{t['read: np.max'] / t[name]:.0%}, parallel read "
            f"{t['read: parallel probe'] / t[name]:.0%}; all rows in one class "
            f"{t['ours, one class'] * 1e3:.0f} ms |"
        )
    rows.append(
        f"| (max error vs exact float64 means) | ours {err['alphanet_fast']:.1e} | | torch "
        f"{err['torch index_add_ f32']:.1e}, scipy {err['scipy CSR f32']:.1e} | |"
    )
    return rows


def nn_job(rounds: int) -> list[str]:
    import alphanet_fast as af
    import faiss

    q_n, p_n, d = 3224, 4918, 2048
    rng = np.random.default_rng(1)
    centre = rng.standard_normal(d, dtype=np.float32)
    q = centre + rng.standard_normal((q_n, d), dtype=np.float32)
    p = centre + rng.standard_normal((p_n, d), dtype=np.float32)

    def faiss_flat(q, p):
        index = faiss.IndexFlatL2(d)
        index.add(p)
        return index.search(q, 5)[1]

    ours = lambda q, p: af.nearest_neighbors(q, p, 5)[0]  # noqa: E731
    impls = {
        "alphanet_fast": with_simd(None, ours),
        "alphanet_fast [avx2]": with_simd("avx2", ours),
        "alphanet_fast, 1 thread": with_threads(1, ours),
        "faiss IndexFlatL2": faiss_flat,
        "numpy q @ p.T": lambda q, p: q @ p.T,
    }
    t = interleaved(impls, (q, p), rounds)
    return [
        f"| `nearest_neighbors` {q_n:,} x {p_n:,} x {d:,} | {name} | {t[name] * 1e3:.0f} ms | "
        f"faiss {t['faiss IndexFlatL2'] / t[name]:.2f}x | exact (faiss: float32); numpy's "
        f"product alone {t['numpy q @ p.T'] * 1e3:.0f} ms; "
        f"{os.cpu_count()} threads / 1: {t['alphanet_fast, 1 thread'] / t[name]:.2f}x |"
        for name in ("alphanet_fast", "alphanet_fast [avx2]")
    ]


def topk_job(rounds: int) -> list[str]:
    import alphanet_fast as af
    import torch

    n, d, c = 50_000, 2048, 1000
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, d), dtype=np.float32)
    w = rng.standard_normal((c, d), dtype=np.float32) * 0.05
    b = rng.standard_normal(c).astype(np.float32)

    def torch_topk(x, w, b):
        scores = torch.addmm(torch.from_numpy(b), torch.from_numpy(x), torch.from_numpy(w).T)
        return scores.topk(5, dim=1).indices.numpy()

    ours = lambda x, w, b: af.topk_scores(x, w, b, 5)[0]  # noqa: E731
    impls = {
        "alphanet_fast": with_simd(None, ours),
        "alphanet_fast [avx2]": with_simd("avx2", ours),
        "alphanet_fast, 1 thread": with_threads(1, ours),
        "torch addmm + topk": torch_topk,
    }
    t = interleaved(impls, (x, w, b), rounds)
    return [
        f"| `topk_scores` {n:,} x {d:,}, C = {c:,} | {name} | {t[name]:.2f} s | "
        f"torch {t['torch addmm + topk'] / t[name]:.2f}x | {os.cpu_count()} threads / 1: "
        f"{t['alphanet_fast, 1 thread'] / t[name]:.2f}x; peak memory: "
        f"`benches/test_bench_kernels.py::test_topk_peak_memory` |"
        for name in ("alphanet_fast", "alphanet_fast [avx2]")
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--jobs", default=",".join(JOBS), help=f"comma list of {JOBS}")
    args = p.parse_args(argv)
    jobs = [j for j in args.jobs.split(",") if j]
    print(format_cpu(describe_cpu()), flush=True)
    print("| job | ours | median | ratio (peer time / ours) | note |")
    print("|---|---|---|---|---|")
    runners = {
        "means_lt": lambda: means_job(115_846, 2048, 1000, args.rounds),
        "means_inat": lambda: means_job(437_513, 2048, 8142, args.rounds),
        "nn": lambda: nn_job(args.rounds),
        "topk": lambda: topk_job(args.rounds),
    }
    for job in jobs:
        for row in runners[job]():
            print(row, flush=True)
    info = describe_cpu()
    print(f"load after: {info['loadavg_1_5_15']}", flush=True)


if __name__ == "__main__":
    main()
