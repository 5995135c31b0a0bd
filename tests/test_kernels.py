"""The four Rust kernels against plain float64 numpy references.

Values drawn from small integer grids make every product and sum exact in
float32 and float64, so ties are real ties and indices can be compared exactly;
continuous values are compared with a tolerance on the distances/scores.
"""

from __future__ import annotations

import alphanet_fast as af
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

DTYPES = [np.float32, np.float64]


# ---------------------------------------------------------------- references


def ref_class_means(x, y, c):
    x = np.asarray(x, dtype=np.float64)
    sums = np.zeros((c, x.shape[1]))
    np.add.at(sums, y, x)
    counts = np.bincount(y, minlength=c)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts[:, None]
    means[counts == 0] = np.nan
    return means, counts


def ref_distances(q, p, metric):
    q = np.asarray(q, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if metric == "euclidean":
        return np.sqrt(((q[:, None, :] - p[None, :, :]) ** 2).sum(-1))
    qn = np.linalg.norm(q, axis=1)
    pn = np.linalg.norm(p, axis=1)
    return 1.0 - (q @ p.T) / np.outer(qn, pn)


def ref_nearest(q, p, k, metric):
    dist = ref_distances(q, p, metric)
    order = np.lexsort((np.broadcast_to(np.arange(p.shape[0]), dist.shape), dist), axis=1)
    idx = order[:, :k]
    return idx, np.take_along_axis(dist, idx, 1)


def ref_topk(x, w, b, k):
    s = np.asarray(x, np.float64) @ np.asarray(w, np.float64).T
    if b is not None:
        s = s + np.asarray(b, np.float64)
    order = np.lexsort((np.broadcast_to(np.arange(w.shape[0]), s.shape), -s), axis=1)
    idx = order[:, :k]
    return idx, np.take_along_axis(s, idx, 1)


def grid_matrix(rows, cols, lo=-4, hi=4):
    return hnp.arrays(np.float64, st.tuples(rows, cols), elements=st.integers(lo, hi).map(float))


# ---------------------------------------------------------------- class_means


@pytest.mark.parametrize("dtype", DTYPES)
def test_class_means_random(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 37)).astype(dtype)
    y = rng.integers(0, 50, 5000)
    y[y == 7] = 8  # class 7 stays empty
    means, counts = af.class_means(x, y, 50)
    ref, ref_counts = ref_class_means(x, y, 50)
    assert means.dtype == dtype
    np.testing.assert_array_equal(counts, ref_counts)
    assert np.isnan(means[7]).all()
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(means[counts > 0], ref[counts > 0], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [37, 1100])
def test_class_sums_are_bitwise_the_sequential_sum(dtype, d):
    # d = 1100 takes the wide-row path (rows grouped by class), d = 37 the
    # column stripes; one class holds most rows, so the wide path cuts it into
    # column pieces. Both must give np.add.at's row-order sum to the bit.
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3000, d)) * 1e3).astype(dtype)
    y = np.where(rng.random(3000) < 0.8, 3, rng.integers(0, 9, 3000))
    sums, counts = af.class_sums(x, y, 9)
    want = np.zeros((9, d))
    np.add.at(want, y, x.astype(np.float64))
    np.testing.assert_array_equal(sums, want)
    np.testing.assert_array_equal(counts, np.bincount(y, minlength=9))
    np.testing.assert_array_equal(af.class_sums(np.asfortranarray(x), y, 9)[0], want)


@given(
    data=st.data(),
    n=st.integers(1, 60),
    d=st.integers(1, 9),
    c=st.integers(1, 8),
    scale=st.sampled_from([1.0, 1e-30, 1e30]),
    dtype=st.sampled_from(DTYPES),
)
def test_class_means_hypothesis(data, n, d, c, scale, dtype):
    x = data.draw(grid_matrix(st.just(n), st.just(d))) * scale
    x = x.astype(dtype)
    y = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, c - 1)))
    means, counts = af.class_means(x, y, c)
    ref, ref_counts = ref_class_means(x, y, c)
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_allclose(means, ref.astype(dtype), rtol=1e-6, equal_nan=True)


def test_class_means_layouts_and_memmap(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((3000, 24)).astype(np.float32)
    y = rng.integers(0, 11, 1500)
    want, _ = af.class_means(np.ascontiguousarray(base[::2]), y, 11)
    views = {
        "strided": base[::2],
        "fortran": np.asfortranarray(base[::2]),
        "reversed": base[-2::-2][::-1],
        "column_slice": np.ascontiguousarray(np.hstack([base[::2], base[::2]]))[:, :24],
    }
    path = tmp_path / "x.npy"
    np.save(path, np.ascontiguousarray(base[::2]))
    views["memmap"] = np.load(path, mmap_mode="r")
    for name, view in views.items():
        got, _ = af.class_means(view, y, 11)
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_class_sums_merge():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1000, 8))
    y = rng.integers(0, 5, 1000)
    s1, c1 = af.class_sums(x[:400], y[:400], 5)
    s2, c2 = af.class_sums(x[400:], y[400:], 5)
    means, counts = af.class_means(x, y, 5)
    np.testing.assert_array_equal(c1 + c2, counts)
    np.testing.assert_allclose((s1 + s2) / (c1 + c2)[:, None], means, rtol=1e-12)


# ---------------------------------------------------------------- nearest_neighbors


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nearest_random(metric, dtype):
    rng = np.random.default_rng(3)
    q = rng.standard_normal((70, 50)).astype(dtype)
    p = rng.standard_normal((900, 50)).astype(dtype)
    idx, dist = af.nearest_neighbors(q, p, k=6, metric=metric)
    ref_idx, ref_dist = ref_nearest(q, p, 6, metric)
    np.testing.assert_array_equal(idx, ref_idx)
    assert dist.dtype == dtype
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-5 if dtype == np.float32 else 1e-12)


# Powers of two far from 1, where products overflow (or lose digits to
# underflow) in the inputs' dtype.
EXTREME_SCALES = {
    np.float32: [2.0**60, 2.0**100, 2.0**-60, 2.0**-120],
    np.float64: [2.0**450, 2.0**1000, 2.0**-450, 2.0**-1000],
}


@given(
    data=st.data(),
    nq=st.integers(1, 12),
    m=st.integers(1, 40),
    d=st.integers(1, 6),
    metric=st.sampled_from(["euclidean", "cosine"]),
    dtype=st.sampled_from(DTYPES),
)
def test_nearest_hypothesis_exact_ties(data, nq, m, d, metric, dtype):
    # Powers of two keep every product exact, so ties stay exact ties; the
    # reference works on the unscaled grid, where float64 is exact.
    scale = data.draw(st.sampled_from([1.0, 2.0**-40, 2.0**40, *EXTREME_SCALES[dtype]]))
    # Small integer grids: duplicates and exact ties are common.
    q = data.draw(grid_matrix(st.just(nq), st.just(d), -2, 2))
    p = data.draw(grid_matrix(st.just(m), st.just(d), -2, 2))
    if metric == "cosine":
        q[np.all(q == 0, axis=1), 0] = 1.0
        p[np.all(p == 0, axis=1), 0] = 1.0
    k = data.draw(st.integers(1, m))
    idx, dist = af.nearest_neighbors(
        (q * scale).astype(dtype), (p * scale).astype(dtype), k, metric
    )
    ref_idx, ref_dist = ref_nearest(q, p, k, metric)
    if metric == "euclidean":
        np.testing.assert_array_equal(idx, ref_idx)
        ref_dist = ref_dist * scale
    else:
        # Cosine values of different integer vectors can coincide only up to
        # rounding; compare indices where the values are apart.
        gaps = np.abs(np.diff(np.sort(ref_distances(q, p, metric), axis=1), axis=1))
        if gaps.size == 0 or (gaps[gaps > 0].min(initial=1.0) > 1e-9):
            np.testing.assert_array_equal(idx, ref_idx)
    atol = 1e-6 if metric == "cosine" else 0.0
    np.testing.assert_allclose(dist, ref_dist.astype(dtype), rtol=1e-6, atol=atol)


def test_nearest_ill_conditioned_offsets():
    # A large common offset makes |q|^2 - 2q.p + |p|^2 cancel badly in float32;
    # the result must still be the exact order.
    rng = np.random.default_rng(4)
    q = (1e4 + rng.standard_normal((30, 128)) * 1e-1).astype(np.float32)
    p = (1e4 + rng.standard_normal((500, 128)) * 1e-1).astype(np.float32)
    idx, _ = af.nearest_neighbors(q, p, k=5)
    ref_idx, _ = ref_nearest(q, p, 5, "euclidean")
    np.testing.assert_array_equal(idx, ref_idx)


def test_nearest_mixed_dtypes_and_layouts():
    rng = np.random.default_rng(5)
    q = rng.standard_normal((10, 16))
    p = rng.standard_normal((40, 16)).astype(np.float32)
    idx, dist = af.nearest_neighbors(q, np.asfortranarray(p)[::-1][::-1], k=3)
    assert dist.dtype == np.float64
    ref_idx, _ = ref_nearest(q, p, 3, "euclidean")
    np.testing.assert_array_equal(idx, ref_idx)


# ---------------------------------------------------------------- combine


@given(
    data=st.data(),
    c=st.integers(2, 12),
    d=st.integers(1, 7),
    dtype=st.sampled_from(DTYPES),
)
def test_combine_hypothesis(data, c, d, dtype):
    w = data.draw(grid_matrix(st.just(c), st.just(d))).astype(dtype)
    f = data.draw(st.integers(1, c))
    targets = np.array(data.draw(st.permutations(range(c)))[:f], dtype=np.int64)
    k = data.draw(st.integers(0, 4))
    neighbors = data.draw(hnp.arrays(np.int64, (f, k), elements=st.integers(0, c - 1)))
    alphas = data.draw(hnp.arrays(np.float64, (f, k + 1), elements=st.integers(-3, 3).map(float)))
    before = w.copy()
    out = af.combine(w, targets, neighbors, alphas)
    ref = w.astype(np.float64).copy()
    for t in range(f):
        rows = np.concatenate([[targets[t]], neighbors[t]])
        ref[targets[t]] = alphas[t] @ w.astype(np.float64)[rows]
    np.testing.assert_array_equal(out, ref.astype(dtype))
    np.testing.assert_array_equal(w, before)
    assert out.dtype == dtype


# ---------------------------------------------------------------- topk_scores


@pytest.mark.parametrize("dtype", DTYPES)
def test_topk_random_many_tiles(dtype):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((700, 20)).astype(dtype)
    w = rng.standard_normal((4200, 20)).astype(dtype)
    b = rng.standard_normal(4200).astype(dtype)
    idx, scores = af.topk_scores(x, w, b, k=5)
    ref_idx, ref_scores = ref_topk(x, w, b, 5)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(scores, ref_scores, rtol=tol, atol=tol)
    # Indices agree wherever the reference's neighbouring scores are apart.
    full = np.sort(np.asarray(x, np.float64) @ np.asarray(w, np.float64).T + b, axis=1)[:, ::-1]
    clear = (np.abs(np.diff(full[:, :6], axis=1)) > 1e-3).all(axis=1)
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(idx[clear], ref_idx[clear])


@given(
    data=st.data(),
    n=st.integers(1, 20),
    c=st.integers(1, 30),
    d=st.integers(1, 5),
    dtype=st.sampled_from(DTYPES),
    with_bias=st.booleans(),
)
def test_topk_hypothesis_exact_ties(data, n, c, d, dtype, with_bias):
    x = data.draw(grid_matrix(st.just(n), st.just(d), -2, 2)).astype(dtype)
    w = data.draw(grid_matrix(st.just(c), st.just(d), -2, 2)).astype(dtype)
    b = (
        data.draw(hnp.arrays(dtype, c, elements=st.integers(-2, 2).map(float)))
        if with_bias
        else None
    )
    k = data.draw(st.integers(1, c))
    idx, scores = af.topk_scores(x, w, b, k=k)
    ref_idx, ref_scores = ref_topk(x, w, b, k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(scores, ref_scores.astype(dtype))


def test_topk_memmap_and_views(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 12)).astype(np.float32)
    w = rng.standard_normal((50, 12)).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    want = af.topk_scores(x, w, k=4)
    for view in (np.load(path, mmap_mode="r"), np.asfortranarray(x), x[::-1][::-1]):
        got = af.topk_scores(view, np.asfortranarray(w), k=4)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_inputs_not_modified():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((100, 6)).astype(np.float32)
    w = rng.standard_normal((9, 6)).astype(np.float32)
    y = rng.integers(0, 9, 100)
    copies = [a.copy() for a in (x, w, y)]
    af.class_means(x, y)
    af.nearest_neighbors(x[:5], w, k=3)
    af.topk_scores(x, w, k=2)
    af.combine(w, [0, 1], [[2], [3]], [[1.0, 0.5], [1.0, 0.5]])
    for a, b in zip((x, w, y), copies):
        np.testing.assert_array_equal(a, b)


def test_topk_split_at_row_blocks_is_bitwise_identical():
    # Chunked scoring (memory maps, Dask) splits rows at multiples of the row block.
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1500, 300)).astype(np.float32)
    w = rng.standard_normal((700, 300)).astype(np.float32)
    whole = af.topk_scores(x, w, k=4)
    block = af._core.TOPK_ROW_BLOCK
    cut = 3 * block
    parts = [af.topk_scores(x[:cut], w, k=4), af.topk_scores(x[cut:], w, k=4)]
    for i in range(2):
        np.testing.assert_array_equal(np.concatenate([p[i] for p in parts]), whole[i])


def test_unaligned_buffers_are_accepted():
    # Arrays unpickled from other processes may start at any byte.
    raw = np.zeros(8 * 60 + 1, dtype=np.uint8)
    x = np.frombuffer(raw.data, dtype=np.float64, count=60, offset=1).reshape(20, 3)
    labels = np.frombuffer(np.zeros(8 * 20 + 1, np.uint8).data, np.int64, 20, offset=1)
    assert not x.flags.aligned and not labels.flags.aligned
    means, counts = af.class_means(x, labels, 2)
    np.testing.assert_array_equal(counts, [20, 0])
    np.testing.assert_array_equal(means[0], np.zeros(3))


# ---------------------------------------------------------------- results beyond the dtype's range


def test_nearest_distances_beyond_the_dtype_raise():
    q = np.array([[3e38, 0.0]], np.float32)
    p = np.array([[-3e38, 0.0], [-3e38, 1.0]], np.float32)
    with pytest.raises(
        af.KernelError, match="queries: row 0: distances exceed the float32"
    ) as info:
        af.nearest_neighbors(q, p, k=1)
    assert (info.value.argument, info.value.row) == ("queries", 0)
    # The same in float64 is representable, and exact.
    idx, dist = af.nearest_neighbors(q.astype(np.float64), p.astype(np.float64), k=2)
    np.testing.assert_array_equal(idx, [[0, 1]])
    assert dist[0, 0] == 2 * np.float64(np.float32(3e38))


@pytest.mark.parametrize("dtype, big", [(np.float32, 2.0**70), (np.float64, 2.0**520)])
def test_topk_scores_that_overflow_raise(dtype, big):
    x = np.full((3, 4), big, dtype)
    w = np.full((2, 4), big, dtype)
    with pytest.raises(af.KernelError, match="features: the scores .* can exceed") as info:
        af.topk_scores(x, w, k=1)
    assert info.value.argument == "features"


@given(
    data=st.data(),
    dtype=st.sampled_from(DTYPES),
    k=st.integers(1, 4),
)
def test_topk_at_extreme_but_safe_magnitudes(data, dtype, k):
    # Huge features against tiny weights: the products are ordinary numbers.
    scale = data.draw(st.sampled_from(EXTREME_SCALES[dtype][:2]))
    x = data.draw(grid_matrix(st.just(6), st.just(3), -2, 2))
    w = data.draw(grid_matrix(st.just(5), st.just(3), -2, 2))
    idx, scores = af.topk_scores((x * scale).astype(dtype), (w / scale).astype(dtype), k=k)
    ref_idx, ref_scores = ref_topk(x, w, None, k)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(scores, ref_scores.astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_combine_that_overflows_raises(dtype):
    w = np.full((3, 2), np.finfo(dtype).max / 2, dtype)
    with pytest.raises(af.KernelError, match="alphas: row 1 combines rows of W") as info:
        af.combine(w, [2, 0], [[1], [1]], [[1.0, 0.5], [2.0, 1.0]])
    assert (info.value.argument, info.value.row) == ("alphas", 1)
