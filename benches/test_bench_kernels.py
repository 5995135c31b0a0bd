"""Each kernel side by side with what a user would otherwise reach for.

Every case is parametrised over ``impl`` so that ours and each peer run on the
same data in the same session; compare ratios, not absolute times (the
machines are shared). Small shapes by default, so that
``pytest benches --benchmark-disable`` is a quick correctness run; the shapes
of the issue with ``ALPHANET_FAST_FULL_BENCH=1``:

    ALPHANET_FAST_FULL_BENCH=1 python -m pytest benches/test_bench_kernels.py \
        --benchmark-columns=median,iqr --benchmark-sort=name

``alphanet_fast_avx2`` is the same call with ``ALPHANET_FAST_SIMD=avx2``, so an
AVX-512 machine measures both paths in one run; the session header names the
CPU, its vector extensions and the BLAS. Peers are called as users write them
(float32 ``index_add_`` and scipy CSR); ``test_class_means_accuracy`` prints
how far each is from the exact float64 means.

faiss-cpu's bundled OpenBLAS falls back to a generic kernel on some CPUs unless
``OPENBLAS_CORETYPE`` is set for its process (e.g. ``SkylakeX``); run the
benchmarks both ways and compare against the faster.
"""

from __future__ import annotations

import os
import sys

import alphanet_fast as af
import numpy as np
import pytest
from alphanet_fast import _core
from conftest import FULL

MEANS_SHAPES = (
    [(2_000_000, 512, 1000), (115_846, 2048, 1000), (437_513, 2048, 8142)]
    if FULL
    else [(20_000, 64, 100)]
)
NN_SHAPES = [(3224, 4918, 2048), (136, 864, 2048)] if FULL else [(64, 200, 32)]
COMBINE_SHAPES = [(8142, 2048, 3224, 5)] if FULL else [(300, 32, 60, 5)]
TOPK_SHAPES = [(50_000, 2048, 1000), (24_426, 2048, 8142)] if FULL else [(2000, 64, 300)]


def long_tail_labels(rng, n, c):
    p = 1.0 / np.arange(1, c + 1) ** 1.1
    labels = rng.choice(c, size=n, p=p / p.sum())
    labels[:c] = np.arange(c)  # every class present
    return rng.permutation(labels)


@pytest.fixture(scope="module", params=MEANS_SHAPES, ids=lambda s: "x".join(map(str, s)))
def means_data(request):
    n, d, c = request.param
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    return x, long_tail_labels(rng, n, c), c


def means_torch(x, y, c):
    """Float32 ``index_add_``, as users write it (no float64 copy of the features)."""
    import torch

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    sums = torch.zeros((c, x.shape[1]), dtype=torch.float32)
    sums.index_add_(0, yt, xt)
    counts = torch.bincount(yt, minlength=c)
    return (sums / counts[:, None]).numpy()


def means_scipy(x, y, c):
    import scipy.sparse as sp

    n = x.shape[0]
    onehot = sp.csr_matrix((np.ones(n, dtype=np.float32), (y, np.arange(n))), shape=(c, n))
    counts = np.bincount(y, minlength=c)
    return (onehot @ x) / counts[:, None]


def means_numpy(x, y, c):
    order = np.argsort(y, kind="stable")
    ys = y[order]
    starts = np.flatnonzero(np.r_[True, ys[1:] != ys[:-1]])
    sums = np.add.reduceat(x[order], starts, axis=0, dtype=np.float64)
    return sums / np.diff(np.r_[starts, len(ys)])[:, None]


def simd(level, fn):
    """``fn`` with the kernels' inner loops forced to ``level`` (read at every call)."""

    def call(*args):
        old = os.environ.get("ALPHANET_FAST_SIMD")
        os.environ["ALPHANET_FAST_SIMD"] = level
        try:
            return fn(*args)
        finally:
            if old is None:
                del os.environ["ALPHANET_FAST_SIMD"]
            else:
                os.environ["ALPHANET_FAST_SIMD"] = old

    return call


MEANS_IMPLS = {
    "alphanet_fast": lambda x, y, c: af.class_means(x, y, c)[0],
    "alphanet_fast_avx2": simd("avx2", lambda x, y, c: af.class_means(x, y, c)[0]),
    "read_probe": lambda x, y, c: _core._read_probe(x),
    "torch_index_add": means_torch,
    "scipy_csr": means_scipy,
    "numpy_sort_reduceat": means_numpy,
}


@pytest.mark.parametrize("impl", list(MEANS_IMPLS))
def test_class_means(benchmark, means_data, impl):
    x, y, c = means_data
    benchmark.group = f"class_means {x.shape[0]}x{x.shape[1]} C={c}"
    benchmark.extra_info["gb"] = x.nbytes / 1e9
    out = benchmark.pedantic(MEANS_IMPLS[impl], args=(x, y, c), rounds=3, iterations=1)
    if impl != "read_probe":
        ref = af.class_means(x, y, c)[0]
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    if impl.startswith("alphanet_fast"):
        np.testing.assert_array_equal(out, af.class_means(x, y, c)[0])  # every path, same bits


def test_class_means_accuracy(means_data):
    """Largest error of each float32 method against the exact float64 means, printed."""
    x, y, c = means_data
    sums, counts = af.class_sums(x, y, c)
    exact = sums / counts[:, None]
    errors = {
        impl: float(np.max(np.abs(MEANS_IMPLS[impl](x, y, c) - exact)))
        for impl in ("alphanet_fast", "torch_index_add", "scipy_csr")
    }
    print(f"\nclass_means max abs error vs float64 means {x.shape} C={c}: {errors}")
    # Ours rounds the exact float64 mean once, to float32: within half an ulp.
    assert errors["alphanet_fast"] <= np.max(np.abs(exact)) * 2.0**-24


@pytest.fixture(scope="module", params=NN_SHAPES, ids=lambda s: "x".join(map(str, s)))
def nn_data(request):
    q, m, d = request.param
    rng = np.random.default_rng(1)
    centre = rng.standard_normal(d, dtype=np.float32)
    queries = centre + rng.standard_normal((q, d), dtype=np.float32)
    pool = centre + rng.standard_normal((m, d), dtype=np.float32)
    return queries, pool


def nn_faiss(q, p, k, metric):
    import faiss

    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        p = p / np.linalg.norm(p, axis=1, keepdims=True)
    index = faiss.IndexFlatL2(p.shape[1])
    index.add(np.ascontiguousarray(p))
    return index.search(np.ascontiguousarray(q), k)[1]


def nn_numpy(q, p, k, metric):
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        p = p / np.linalg.norm(p, axis=1, keepdims=True)
    dist = (q * q).sum(1)[:, None] - 2 * q @ p.T + (p * p).sum(1)[None, :]
    part = np.argpartition(dist, k - 1, axis=1)[:, :k]
    order = np.argsort(np.take_along_axis(dist, part, 1), axis=1)
    return np.take_along_axis(part, order, 1)


def nn_torch(q, p, k, metric):
    import torch

    qt, pt = torch.from_numpy(q), torch.from_numpy(p)
    if metric == "cosine":
        dist = 1 - torch.nn.functional.normalize(qt) @ torch.nn.functional.normalize(pt).T
    else:
        dist = torch.cdist(qt, pt)
    return dist.topk(k, largest=False).indices.numpy()


def nn_sklearn(q, p, k, metric):
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric).fit(p).kneighbors(q)[1]


NN_IMPLS = {
    "alphanet_fast": lambda q, p, k, metric: af.nearest_neighbors(q, p, k, metric)[0],
    "alphanet_fast_avx2": simd(
        "avx2", lambda q, p, k, metric: af.nearest_neighbors(q, p, k, metric)[0]
    ),
    "faiss_flat": nn_faiss,
    "numpy_expand_argpartition": nn_numpy,
    "torch_cdist_topk": nn_torch,
    "sklearn_brute": nn_sklearn,
}


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("impl", list(NN_IMPLS))
def test_nearest_neighbors(benchmark, nn_data, impl, metric):
    q, p = nn_data
    benchmark.group = f"nearest_neighbors {metric} {q.shape[0]}x{p.shape[0]}x{q.shape[1]}"
    out = benchmark.pedantic(NN_IMPLS[impl], args=(q, p, 5, metric), rounds=3, iterations=1)
    ref = af.nearest_neighbors(q, p, 5, metric)[0]
    # Float32 peers may swap near-ties; the first neighbour must agree almost always.
    assert (np.asarray(out)[:, 0] == ref[:, 0]).mean() > 0.95


@pytest.fixture(scope="module", params=COMBINE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def combine_data(request):
    c, d, f, k = request.param
    rng = np.random.default_rng(2)
    w = rng.standard_normal((c, d), dtype=np.float32)
    targets = rng.choice(c, f, replace=False)
    neighbors = rng.integers(0, c, (f, k))
    alphas = np.concatenate([np.ones((f, 1)), rng.standard_normal((f, k)) * 0.1], axis=1)
    return w, targets, neighbors, alphas


def combine_numpy(w, targets, neighbors, alphas):
    out = w.copy()
    sources = w[np.concatenate([targets[:, None], neighbors], axis=1)]
    out[targets] = np.einsum("fk,fkd->fd", alphas, sources)
    return out


def combine_scipy(w, targets, neighbors, alphas):
    import scipy.sparse as sp

    f, k1 = alphas.shape
    cols = np.concatenate([targets[:, None], neighbors], axis=1).ravel()
    rows = np.repeat(np.arange(f), k1)
    mix = sp.csr_matrix((alphas.ravel(), (rows, cols)), shape=(f, w.shape[0]))
    out = w.copy()
    out[targets] = mix @ w
    return out


COMBINE_IMPLS = {
    "alphanet_fast": af.combine,
    "numpy_fancy_einsum": combine_numpy,
    "scipy_csr": combine_scipy,
}


@pytest.mark.parametrize("impl", list(COMBINE_IMPLS))
def test_combine(benchmark, combine_data, impl):
    w, targets, neighbors, alphas = combine_data
    benchmark.group = f"combine C={w.shape[0]} d={w.shape[1]} F={len(targets)}"
    out = benchmark.pedantic(COMBINE_IMPLS[impl], args=combine_data, rounds=5, iterations=1)
    np.testing.assert_allclose(out, af.combine(*combine_data), rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module", params=TOPK_SHAPES, ids=lambda s: "x".join(map(str, s)))
def topk_data(request):
    n, d, c = request.param
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, d), dtype=np.float32)
    w = rng.standard_normal((c, d), dtype=np.float32) * 0.05
    b = rng.standard_normal(c).astype(np.float32)
    return x, w, b


def topk_torch(x, w, b, k):
    import torch

    scores = torch.addmm(torch.from_numpy(b), torch.from_numpy(x), torch.from_numpy(w).T)
    return scores.topk(k, dim=1).indices.numpy()


TOPK_IMPLS = {
    "alphanet_fast": lambda x, w, b, k: af.topk_scores(x, w, b, k)[0],
    "alphanet_fast_avx2": simd("avx2", lambda x, w, b, k: af.topk_scores(x, w, b, k)[0]),
    "torch_addmm_topk": topk_torch,
}


@pytest.mark.parametrize("impl", list(TOPK_IMPLS))
def test_topk_scores(benchmark, topk_data, impl):
    x, w, b = topk_data
    benchmark.group = f"topk_scores {x.shape[0]}x{x.shape[1]} C={w.shape[0]}"
    out = benchmark.pedantic(TOPK_IMPLS[impl], args=(x, w, b, 5), rounds=3, iterations=1)
    ref = af.topk_scores(x, w, b, 5)[0]
    assert (np.asarray(out)[:, 0] == ref[:, 0]).mean() > 0.99


PEAK_SCRIPT = """
import sys
import numpy as np
sys.path.insert(0, {bench_dir!r})
import test_bench_kernels as b
n, d, c = {shape}
rng = np.random.default_rng(3)
x = rng.standard_normal((n, d), dtype=np.float32)
w = rng.standard_normal((c, d), dtype=np.float32) * 0.05
bias = rng.standard_normal(c).astype(np.float32)
import torch, alphanet_fast  # imports before the baseline
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
b.TOPK_IMPLS[{impl!r}](x[:10], w, bias, 5)  # warm up thread pools and allocators
# Reset the high-water mark, so that only the call's own peak is measured.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
b.TOPK_IMPLS[{impl!r}](x, w, bias, 5)
print(status("VmHWM") - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("shape", TOPK_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_topk_peak_memory(shape):
    """Extra peak RSS of each top-k implementation, each in a fresh process."""
    import subprocess
    from pathlib import Path

    extra_mb = {}
    for impl in TOPK_IMPLS:
        code = PEAK_SCRIPT.format(
            bench_dir=str(Path(__file__).parent), shape=tuple(shape), impl=impl
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        extra_mb[impl] = int(out.stdout.split()[-1]) / 1024
    print(f"\npeak extra RSS (MB) for topk {shape}: {extra_mb}")
    n, _, c = shape
    # Ours never holds the n x C score matrix; torch's addmm does.
    assert extra_mb["alphanet_fast"] < n * c * 4 / 2**20
