"""The products on every SIMD path this CPU has, and inputs at the edges.

``nearest_neighbors`` and ``topk_scores`` compute their dot products with
AVX-512, AVX2+FMA or scalar micro-kernels, chosen at each call from the CPU and
``ALPHANET_FAST_SIMD``. Every path the CPU allows is checked against float64
references, and bitwise against itself across thread counts. Also: float64
rows of very different magnitudes, and features rewritten by another thread
while ``topk_scores`` reads them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import alphanet_fast as af
import numpy as np
import pytest
from test_kernels import ref_nearest, ref_topk


def cpu_paths() -> list[str]:
    """The SIMD paths of this CPU, as ``ALPHANET_FAST_SIMD`` names them."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    paths = ["scalar"]
    if "avx2" in flags and "fma" in flags:
        paths.append("avx2")
        if "avx512f" in flags:
            paths.append("avx512")
    return paths


@pytest.fixture(params=cpu_paths())
def path(request, monkeypatch):
    monkeypatch.setenv("ALPHANET_FAST_SIMD", request.param)
    return request.param


@pytest.fixture
def threads():
    """Runs a call with 1, 2 and 3 kernel threads, restoring the setting."""
    before = af.get_num_threads()

    def each(call):
        out = []
        try:
            for n in (1, 2, 3):
                af.set_num_threads(n)
                out.append(call())
        finally:
            af.set_num_threads(before)
        return out

    return each


def same_bits(runs):
    for run in runs[1:]:
        for got, want in zip(run, runs[0]):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nearest_on_every_path(path, threads, dtype, metric):
    # Several query blocks and pool tiles, odd sizes at every edge.
    rng = np.random.default_rng(11)
    q = rng.standard_normal((300, 67)).astype(dtype)
    p = rng.standard_normal((2600, 67)).astype(dtype)
    runs = threads(lambda: af.nearest_neighbors(q, p, k=4, metric=metric))
    same_bits(runs)
    ref_idx, ref_dist = ref_nearest(q, p, 4, metric)
    np.testing.assert_array_equal(runs[0][0], ref_idx)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(runs[0][1], ref_dist, rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_topk_on_every_path(path, threads, dtype):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((600, 67)).astype(dtype)
    w = rng.standard_normal((2100, 67)).astype(dtype)
    b = rng.standard_normal(2100).astype(dtype)
    runs = threads(lambda: af.topk_scores(x, w, b, k=5))
    same_bits(runs)
    ref_idx, ref_scores = ref_topk(x, w, b, 5)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(runs[0][1], ref_scores, rtol=tol, atol=tol)
    full = np.sort(np.asarray(x, np.float64) @ np.asarray(w, np.float64).T + b, axis=1)[:, ::-1]
    clear = (np.abs(np.diff(full[:, :6], axis=1)) > 1e-3).all(axis=1)
    np.testing.assert_array_equal(runs[0][0][clear], ref_idx[clear])


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_nearest_float64_tiny_rows_beside_rows_of_one(metric):
    # Rows of 1e-200 beside a row of 1: the inputs' largest magnitude is safe,
    # so nothing is rescaled, and the tiny rows' squared differences underflow.
    rng = np.random.default_rng(13)
    u, v = rng.standard_normal((50, 24)), rng.standard_normal((8, 24))
    pool = np.vstack([u * 1e-200, np.ones((1, 24))])
    idx, dist = af.nearest_neighbors(v * 1e-200, pool, k=5, metric=metric)
    # The same geometry at magnitude 1: the big row stays the farthest.
    ref_idx, ref_dist = ref_nearest(v, np.vstack([u, np.full((1, 24), 1e100)]), 5, metric)
    np.testing.assert_array_equal(idx, ref_idx)
    scale = 1e-200 if metric == "euclidean" else 1.0
    np.testing.assert_allclose(dist, ref_dist * scale, rtol=1e-12)


FEATURES_CHANGING_UNDER_TOPK = """
import threading
import numpy as np
import alphanet_fast as af

x = np.ones((20_000, 64), np.float32)
w = np.ones((50, 64), np.float32)
stop = threading.Event()

def scribble():
    j = 0
    while not stop.is_set():
        x[j, 3] = np.nan
        x[j, 3] = 1.0
        j = (j + 7919) % len(x)

writer = threading.Thread(target=scribble)
writer.start()
outcomes = {"ok": 0, "non-finite": 0, "changed": 0}
try:
    for _ in range(200):
        try:
            idx, scores = af.topk_scores(x, w, k=2)
        except af.KernelError as exc:
            assert exc.argument == "features", exc
            if "changed while the kernel read it" in str(exc):
                outcomes["changed"] += 1
            else:
                assert "NaN or infinity" in str(exc), exc
                outcomes["non-finite"] += 1
        else:
            outcomes["ok"] += 1
finally:
    stop.set()
    writer.join()
print(sum(outcomes.values()), outcomes)
"""


def test_features_changed_by_another_thread_say_so():
    # Never RuntimeError ("internal error") nor a panic: a finished call, the
    # non-finite row, or the message that the input changed during the call.
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FEATURES_CHANGING_UNDER_TOPK)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[0] == "200", out.stdout
    assert "panicked" not in out.stderr
