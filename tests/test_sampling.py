"""The epochs' draws and their windows."""

from __future__ import annotations

import alphanet_fast as af
import numpy as np
import pytest
from alphanet_fast.training.sampling import (
    ClassBalancedSampler,
    class_balanced_rows,
    draw_epochs,
    windows,
)


def test_sampler_draws_every_few_row_and_class_balanced_base_rows():
    rng = np.random.default_rng(0)
    counts = np.array([4, 9, 30, 60, 300, 1200])
    labels = rng.permutation(np.repeat(np.arange(6), counts))
    splits = af.splits_from_counts(counts)
    few_rows = np.flatnonzero(labels < 2)
    order = draw_epochs(labels, few_rows, splits, 2.5, 400, rng)
    assert order.shape == (400, 13 + round(2.5 * 13))
    for epoch in order[:5]:
        few_part = np.sort(epoch[labels[epoch] < 2])
        np.testing.assert_array_equal(few_part, few_rows)  # every few row exactly once
    base_labels = labels[order][labels[order] >= 2]
    share = np.bincount(base_labels, minlength=6)[2:] / base_labels.size
    # Class-balanced: each base class about 1/4 of the draws, whatever its size (400*32 draws).
    np.testing.assert_allclose(share, 0.25, atol=0.02)
    # Within a class, rows are uniform: the 1200-row class has most of its rows drawn.
    drawn = np.unique(order[labels[order] == 5])
    assert drawn.size > 0.9 * min(1200, (labels[order] == 5).sum() * 0.5)
    # Shuffled: the few rows are not all at the front.
    assert not np.all(labels[order[0, :13]] < 2)


def test_sampler_epochs_do_not_depend_on_the_total():
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    counts = np.array([5, 12, 40, 150])
    labels = np.repeat(np.arange(4), counts)
    splits = af.splits_from_counts(counts)
    few_rows = np.flatnonzero(labels < 2)
    short = draw_epochs(labels, few_rows, splits, 1.0, 3, rng_a)
    long = draw_epochs(labels, few_rows, splits, 1.0, 9, rng_b)
    np.testing.assert_array_equal(short, long[:3])


def test_windows_are_whole_batches_within_the_budget():
    rng = np.random.default_rng(0)
    epochs, n, batch = 4, 150, 16  # the last batch of each epoch is short (6 rows)
    order = rng.integers(0, 90, size=(epochs, n))  # rows recur within a window
    row_bytes = 40
    budget = 2000  # windows of 3-5 batches
    bounds, most = windows(order, batch, row_bytes, budget)
    flat = order.ravel()
    assert bounds[0] == 0 and bounds[-1] == flat.size and (np.diff(bounds) > 0).all()
    batch_starts = {e * n + lo for e in range(epochs) for lo in range(0, n, batch)}
    assert set(bounds[:-1].tolist()) <= batch_starts
    assert any(lo % n != 0 for lo in bounds[1:-1])  # a boundary inside an epoch
    spans = [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if lo // n != (hi - 1) // n]
    assert spans  # and a window across an epoch boundary

    def distinct(lo, hi):
        return np.unique(flat[lo:hi]).size

    ordered = sorted(batch_starts) + [flat.size]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        assert distinct(lo, hi) * row_bytes <= budget
        if hi < flat.size:  # greedy: one more batch would not fit
            assert distinct(lo, ordered[ordered.index(hi) + 1]) * row_bytes > budget
    assert most == max(distinct(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]))
    # A budget below one batch still makes progress, one batch per window.
    tiny, _ = windows(order, batch, row_bytes, 1)
    np.testing.assert_array_equal(tiny, ordered)


def test_class_balanced_rows_draws_each_class_equally_and_is_seeded():
    labels = np.repeat(np.arange(5), [2, 10, 100, 1000, 7])
    classes = np.array([1, 2, 3])
    rows = class_balanced_rows(labels, classes, 30_000, np.random.default_rng(3))
    assert rows.dtype == np.int64 and rows.shape == (30_000,)
    assert np.isin(labels[rows], classes).all()
    np.testing.assert_allclose(np.bincount(labels[rows])[classes] / rows.size, 1 / 3, atol=0.02)
    again = class_balanced_rows(labels, classes, 30_000, np.random.default_rng(3))
    np.testing.assert_array_equal(rows, again)
    # A sampler built once draws the same rows from the same generator.
    sampler, rng = ClassBalancedSampler(labels, classes), np.random.default_rng(3)
    np.testing.assert_array_equal(sampler.draw(30_000, rng), rows)
    with pytest.raises(ValueError, match="classes: class 5 has no row"):
        class_balanced_rows(labels, np.array([1, 5]), 3, np.random.default_rng(0))


def test_a_rho_beyond_the_machines_memory_is_refused_before_drawing():
    counts = np.array([5, 12, 40, 150])
    labels = np.repeat(np.arange(4), counts)
    splits = af.splits_from_counts(counts)
    few_rows = np.flatnonzero(labels < 2)
    with pytest.raises(ValueError, match=r"rho: 1e\+15 base samples .* GiB"):
        draw_epochs(labels, few_rows, splits, 1e15, 3, np.random.default_rng(0))
