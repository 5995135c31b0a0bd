"""make_long_tail: shapes, the ImageNet-LT profile's counts, determinism, structure."""

from __future__ import annotations

import re

import alphanet_fast as af
import numpy as np
import pytest
from alphanet_fast.datasets import long_tail_counts, make_long_tail


@pytest.fixture(scope="module")
def small():
    return make_long_tail("small", seed=0)


def test_small_profile_layout(small):
    d = small
    C, dim = d.W.shape
    assert (C, dim) == (200, 64)
    for x, y, name in [
        (d.train_features, d.train_labels, "train"),
        (d.val_features, d.val_labels, "val"),
        (d.test_features, d.test_labels, "test"),
    ]:
        assert x.dtype == np.float32 and x.flags.c_contiguous, name
        assert y.dtype == np.int64 and x.shape == (y.size, dim), name
        assert y.min() >= 0 and y.max() < C, name
    assert d.b.shape == (C,) and d.b.dtype == np.float32 and d.W.dtype == np.float32
    np.testing.assert_array_equal(d.counts, np.bincount(d.train_labels, minlength=C))
    np.testing.assert_array_equal(np.bincount(d.val_labels, minlength=C), 20)
    np.testing.assert_array_equal(np.bincount(d.test_labels, minlength=C), 50)
    splits = af.splits_from_counts(d.counts)
    assert (splits.many.size, splits.medium.size, splits.few.size) == (70, 90, 40)
    assert d.counts.min() == 4 and d.counts.max() == 400
    assert len(d.class_names) == C
    assert all(re.fullmatch(r"group\d{2}/class\d{4}", name) for name in d.class_names)
    assert d.class_names[37] == f"group{d.groups[37]:02d}/class0037"
    assert d.groups.dtype == np.int64 and np.bincount(d.groups).tolist() == [10] * 20


def test_each_group_mixes_frequent_and_rare_classes(small):
    splits = af.splits_from_counts(small.counts)
    groups_with_few = np.unique(small.groups[splits.few])
    # Dealt at random: rare classes spread over most groups, each with base mates.
    assert groups_with_few.size >= 12
    for g in groups_with_few:
        assert np.isin(np.flatnonzero(small.groups == g), splits.base).any()


def test_groups_are_clusters_of_similar_classes(small):
    means, _ = af.class_means(small.test_features, small.test_labels)
    idx, _ = af.nearest_neighbors(means, means, k=2)
    nearest_other = idx[:, 1]
    assert np.mean(small.groups[nearest_other] == small.groups) > 0.95


def test_baseline_is_a_long_tailed_softmax_classifier(small):
    d = small
    splits = af.splits_from_counts(d.counts)
    hits = np.argmax(d.test_features @ d.W.T + d.b, axis=1) == d.test_labels
    per_class = np.bincount(d.test_labels, weights=hits) / np.bincount(d.test_labels)
    few, many = per_class[splits.few].mean(), per_class[splits.many].mean()
    assert 0.2 < few < many - 0.15  # rare classes weak, frequent ones learned
    assert hits.mean() > 0.5
    # Trained on the imbalance: frequent classes get the larger biases.
    assert np.corrcoef(np.log(d.counts), d.b)[0, 1] > 0.3


def test_same_seed_same_data_other_seed_other_data(small):
    again = make_long_tail("small", seed=0)
    for name in ("train_features", "train_labels", "test_features", "W", "b", "counts"):
        np.testing.assert_array_equal(getattr(again, name), getattr(small, name))
    other = make_long_tail("small", seed=1)
    assert not np.array_equal(other.counts, small.counts)
    assert not np.allclose(other.W, small.W)


def test_imagenet_lt_profile_counts():
    counts = long_tail_counts(385, 479, 136, max_count=1280, min_count=5, total=115_846)
    splits = af.splits_from_counts(counts)
    assert (splits.many.size, splits.medium.size, splits.few.size) == (385, 479, 136)
    assert counts.sum() == 115_846 and counts.min() == 5 and counts.max() == 1280
    assert np.all(np.diff(counts) <= 0)


def test_imagenet_lt_profile_at_small_dim():
    d = make_long_tail("imagenet_lt", dim=16, n_test_per_class=0, n_val_per_class=2, seed=3)
    assert d.train_features.shape == (115_846, 16)
    assert d.val_features.shape == (2000, 16) and d.test_features.shape == (0, 16)
    splits = af.splits_from_counts(d.counts)
    assert (splits.many.size, splits.medium.size, splits.few.size) == (385, 479, 136)
    assert d.class_names[999].startswith(f"group{d.groups[999]:02d}/")


def test_overrides_and_errors():
    d = make_long_tail("small", n_classes=50, dim=8, group_size=5, seed=2, n_test_per_class=3)
    assert d.W.shape == (50, 8) and d.groups.max() == 9
    assert d.test_labels.size == 150
    splits = af.splits_from_counts(d.counts)
    assert min(splits.few.size, splits.medium.size, splits.many.size) >= 1
    with pytest.raises(ValueError, match="profile: expected one of"):
        make_long_tail("huge")
    with pytest.raises(ValueError, match="seed"):
        make_long_tail(seed=-1)
    with pytest.raises(ValueError, match="n_classes: expected at least 3"):
        make_long_tail(n_classes=2)
    with pytest.raises(ValueError, match="n_test_per_class"):
        make_long_tail(n_test_per_class=-1)
    with pytest.raises(TypeError, match="dim"):
        make_long_tail(dim=2.5)
