"""The Dask front-ends on a real two-process LocalCluster equal the in-memory path."""

from __future__ import annotations

import warnings

import alphanet_fast as af
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
afd = pytest.importorskip("alphanet_fast.dask")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n, d, c = 6000, 24, 40
    labels = rng.integers(0, c, n)
    centres = rng.standard_normal((c, d)).astype(np.float32) * 3
    x = centres[labels] + rng.standard_normal((n, d), dtype=np.float32)
    w = centres + rng.standard_normal((c, d), dtype=np.float32) * 0.5
    b = rng.standard_normal(c).astype(np.float32)
    return x, labels, w, b


def test_class_means_on_cluster(client, data):
    x, y, _, _ = data
    dx = da.from_array(x, chunks=(700, 10))  # uneven rows, split columns
    dy = da.from_array(y, chunks=1000)
    means, counts = afd.class_means(dx, dy)
    ref, ref_counts = af.class_means(x, y)
    np.testing.assert_array_equal(counts, ref_counts)
    assert means.dtype == np.float32
    np.testing.assert_allclose(means, ref, rtol=1e-6, atol=1e-6)
    sums, _ = afd.class_sums(dx, y, 40)
    ref_sums, _ = af.class_sums(x, y, 40)
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-12)


def test_topk_and_evaluate_on_cluster(client, data):
    x, y, w, b = data
    dx = da.from_array(x, chunks=(999, 24))
    idx, scores = afd.topk_scores(dx, w, b, k=3)
    ref_idx, ref_scores = af.topk_scores(x, w, b, k=3)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(scores, ref_scores)

    counts = np.bincount(y, minlength=40) * np.r_[np.full(10, 0.01), np.ones(30)]
    splits = af.splits_from_counts(counts.astype(int), few_below=20, many_above=160)
    few = splits.few
    nb = np.tile(splits.base[:2], (len(few), 1))
    groups = np.arange(40) // 4
    kwargs = dict(splits=splits, k=(1, 5), neighbors=(few, nb), groups=groups)
    got = afd.evaluate(dx, da.from_array(y, chunks=999), w, b, **kwargs)
    want = af.evaluate(x, y, w, b, **kwargs)
    assert got.n_samples == want.n_samples
    assert got.few_errors == want.few_errors
    for kk in want.ks:
        for s, v in want.accuracy[kk].items():
            assert got.accuracy[kk][s] == pytest.approx(v, abs=1e-12)
            assert got.group_accuracy[kk][s] == pytest.approx(want.group_accuracy[kk][s], abs=1e-12)
        np.testing.assert_allclose(got.per_class[kk], want.per_class[kk], equal_nan=True)


def _large_graph_warnings(record: list) -> list[str]:
    return [str(w.message) for w in record if "large graph" in str(w.message)]


def test_large_numpy_inputs_travel_once(client):
    # W (3000 x 1024 float32, 12.3 MB) and numpy labels (1.4M int64, 11.2 MB)
    # each exceed distributed's 10 MB large-graph threshold on their own.
    rng = np.random.default_rng(5)
    n_classes, d = 3000, 1024
    w = rng.standard_normal((n_classes, d), dtype=np.float32)
    b = rng.standard_normal(n_classes).astype(np.float32)
    assert w.nbytes > 10e6
    y = rng.integers(0, n_classes, 600)
    x = w[y] + rng.standard_normal((600, d), dtype=np.float32) * 8  # top-1 about 0.67
    dx = da.from_array(x, chunks=(256, -1))
    n_big = 1_400_000
    y_big = rng.integers(0, n_classes, n_big)
    assert y_big.nbytes > 10e6
    dx_big = da.random.default_rng(6).standard_normal(
        (n_big, 2), chunks=(350_000, 2), dtype=np.float32
    )
    x_big = dx_big.compute()
    splits = af.splits_from_counts(rng.integers(1, 200, n_classes))
    kwargs = dict(splits=splits, k=(1, 5))

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        idx, scores = afd.topk_scores(dx, w, b, k=5)
        report = afd.evaluate(dx, y, w, b, **kwargs)
        means, counts = afd.class_means(dx_big, y_big)
        sums, _ = afd.class_sums(dx_big, y_big, n_classes)
    assert _large_graph_warnings(record) == []

    ref_idx, ref_scores = af.topk_scores(x, w, b, k=5)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(scores, ref_scores)
    want = af.evaluate(x, y, w, b, **kwargs)
    assert report.n_samples == want.n_samples
    for kk in want.ks:
        assert report.accuracy[kk].keys() == want.accuracy[kk].keys()
        got_acc, want_acc = list(report.accuracy[kk].values()), list(want.accuracy[kk].values())
        np.testing.assert_array_equal(got_acc, want_acc)
        np.testing.assert_array_equal(report.per_class[kk], want.per_class[kk])
    ref_means, ref_counts = af.class_means(x_big, y_big)
    np.testing.assert_array_equal(counts, ref_counts)
    np.testing.assert_allclose(means, ref_means, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(sums, af.class_sums(x_big, y_big, n_classes)[0], rtol=1e-12)


def test_dask_errors(client, data):
    x, y, _, _ = data
    with pytest.raises(TypeError, match="features"):
        afd.class_means(x, y)
    with pytest.raises(ValueError, match="labels"):
        afd.class_means(da.from_array(x, chunks=1000), y[:10])


def test_correct_with_dask_features_equals_in_memory(client):
    data = af.datasets.make_long_tail("small", seed=3)
    kwargs = dict(epochs=4, progress=False, seed=1)
    want = af.correct(
        data.train_features,
        data.train_labels,
        data.W,
        data.b,
        val=(data.val_features, data.val_labels),
        **kwargs,
    )
    dx = da.from_array(data.train_features, chunks=(2500, -1))
    dvx = da.from_array(data.val_features, chunks=(1000, -1))
    got = afd.correct(
        dx,
        da.from_array(data.train_labels, chunks=2500),
        data.W,
        data.b,
        val=(dvx, data.val_labels),
        **kwargs,
    )
    np.testing.assert_array_equal(got.neighbors, want.neighbors)
    assert got.best_epoch == want.best_epoch
    np.testing.assert_allclose(got.alphas, want.alphas, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.W, want.W, rtol=1e-5, atol=1e-6)


def test_correct_with_dask_validation_recomputed_each_epoch(client):
    # Above the validation budget the validation rows are read again every epoch:
    # here block by block from the cluster.
    from alphanet_fast.training import Budgets, using_budgets

    data = af.datasets.make_long_tail("small", seed=5)
    kwargs = dict(epochs=3, progress=False, seed=2)
    val = (data.val_features, data.val_labels)
    dvx = da.from_array(data.val_features, chunks=(1500, -1))
    with using_budgets(Budgets(val=0)):
        want = af.correct(data.train_features, data.train_labels, data.W, data.b, val=val, **kwargs)
        got = afd.correct(
            da.from_array(data.train_features, chunks=(4000, -1)),
            data.train_labels,
            data.W,
            data.b,
            val=(dvx, data.val_labels),
            **kwargs,
        )
    assert [h["val_top1"] for h in got.history] == [h["val_top1"] for h in want.history]
    assert got.best_epoch == want.best_epoch
    np.testing.assert_allclose(got.alphas, want.alphas, rtol=1e-5, atol=1e-6)


def test_an_empty_dask_array_is_a_named_error():
    empty = da.zeros((0, 4), chunks=(10, 4))
    with pytest.raises(ValueError, match="features: the dask array has no rows"):
        afd.class_means(empty, np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match="features: the dask array has no rows"):
        afd.topk_scores(empty, np.ones((3, 4), np.float32))


def test_merged_evaluation_keeps_integer_hit_counts():
    data = af.datasets.make_long_tail("small", seed=6)
    splits = af.splits_from_counts(np.bincount(data.train_labels))
    x = da.from_array(data.test_features, chunks=(777, -1))
    got = afd.evaluate(x, data.test_labels, data.W, data.b, splits=splits, k=(1, 5))
    want = af.evaluate(
        data.test_features, data.test_labels, data.W, data.b, splits=splits, k=(1, 5)
    )
    assert got.hit_counts["accuracy"] == want.hit_counts["accuracy"]
    assert got.accuracy == want.accuracy
    np.testing.assert_array_equal(got.hit_counts["per_class"][5], want.hit_counts["per_class"][5])
    np.testing.assert_array_equal(got.per_class[1], want.per_class[1])
