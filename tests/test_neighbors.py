"""Choosing neighbours: nearest, random, given."""

from __future__ import annotations

import alphanet_fast as af
import numpy as np
import pytest
from alphanet_fast.neighbors import choose_neighbors
from training_toys import FAST, toy


def test_neighbors_are_the_nearest_base_classes_by_mean():
    x, y, W, b, _, _ = toy(4)
    for metric in ("euclidean", "cosine"):
        res = af.correct(x, y, W, b, k=4, metric=metric, **FAST)
        means = np.stack([x[y == c].mean(axis=0) for c in range(W.shape[0])]).astype(np.float64)
        base = res.splits.base
        for f, nbrs, dist in zip(res.few_classes, res.neighbors, res.neighbor_distances):
            if metric == "euclidean":
                d = np.linalg.norm(means[base] - means[f], axis=1)
            else:
                unit = means / np.linalg.norm(means, axis=1, keepdims=True)
                d = 1 - unit[base] @ unit[f]
            order = np.argsort(d, kind="stable")[:4]
            np.testing.assert_array_equal(nbrs, base[order])
            np.testing.assert_allclose(dist, d[order], rtol=1e-4, atol=1e-6)


def test_random_neighbors_are_seeded_distinct_base_classes():
    x, y, W, b, _, _ = toy(5, n_classes=20)
    a = af.correct(x, y, W, b, metric="random", seed=1, **FAST)
    again = af.correct(x, y, W, b, metric="random", seed=1, **FAST)
    other = af.correct(x, y, W, b, metric="random", seed=2, **FAST)
    np.testing.assert_array_equal(a.neighbors, again.neighbors)
    assert not np.array_equal(a.neighbors, other.neighbors)
    assert np.isin(a.neighbors, a.splits.base).all()
    assert all(len(set(row)) == row.size for row in a.neighbors)
    assert np.isnan(a.neighbor_distances).all()
    nearest = af.correct(x, y, W, b, seed=1, **FAST)
    assert not np.array_equal(a.neighbors, nearest.neighbors)


def test_few_class_without_samples_needs_user_neighbors():
    x, y, W, b, _, _ = toy(14, counts=[0, 5, 8, 30, 40, 50, 60, 70])
    with pytest.raises(ValueError, match=r"few class 0 has no training samples.*neighbors="):
        af.correct(x, y, W, b, k=2, **FAST)
    given = np.array([[3, 4], [5, 6], [7, 3]])
    res = af.correct(x, y, W, b, k=2, neighbors=given, **FAST)
    np.testing.assert_array_equal(res.neighbors, given)
    np.testing.assert_array_equal(res.few_classes, [0, 1, 2])
    assert np.isnan(res.neighbor_distances).all()
    assert not np.array_equal(res.W[0], W[0])  # corrected, though it had no samples
    assert res.config["metric"] == "given" and res.config["user_neighbors"] is True


@pytest.mark.parametrize(
    ("neighbors", "match"),
    [
        (np.array([[3, 4]]), r"neighbors: expected shape \(F, k\) = \(3, 2\)"),
        (np.array([[3, 4], [5, 6], [7, 99]]), r"neighbors: entry \(2, 1\) is 99"),
        (np.array([[3, 4], [5, 1], [7, 3]]), r"neighbors: entry \(1, 1\) is class 1, which is not"),
        (np.array([[3, 3], [5, 6], [7, 3]]), r"neighbors: row 0 \(few class 0\) repeats"),
    ],
)
def test_bad_user_neighbors(neighbors, match):
    x, y, W, b, _, _ = toy(14, counts=[0, 5, 8, 30, 40, 50, 60, 70])
    with pytest.raises(ValueError, match=match):
        af.correct(x, y, W, b, k=2, neighbors=neighbors, **FAST)


def test_no_base_class_is_an_error():
    x, y, W, b, _, _ = toy(15, counts=[3, 5, 8, 10])
    with pytest.raises(ValueError, match="base"):
        af.correct(x, y, W, b, **FAST)


def test_k_beyond_the_base_classes_is_an_error():
    x, y, W, b, _, _ = toy(16, counts=[3, 5, 30, 40])
    with pytest.raises(ValueError, match=r"k: expected at most 2 \(the number of base classes\)"):
        af.correct(x, y, W, b, k=3, **FAST)


def test_choose_neighbors_skips_a_few_class_without_rows_when_asked():
    x, y, W, b, _, _ = toy(14, counts=[0, 5, 8, 30, 40, 50, 60, 70])
    splits = af.splits_from_counts(np.bincount(y, minlength=8))
    with pytest.raises(ValueError, match="few class 0 has no training samples"):
        choose_neighbors(x, y, splits, 2)
    nb = choose_neighbors(x, y, splits, 2, empty="skip")
    np.testing.assert_array_equal(nb.few, [1, 2])
    np.testing.assert_array_equal(nb.skipped, [0])
    assert nb.classes.shape == (2, 2) and np.isin(nb.classes, splits.base).all()
    assert np.isfinite(nb.distances).all() and nb.metric == "euclidean"
    with pytest.raises(ValueError, match="empty: expected 'error' or 'skip'"):
        choose_neighbors(x, y, splits, 2, empty="drop")
