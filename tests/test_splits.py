"""Few / medium / many splits."""

from __future__ import annotations

import json

import alphanet_fast as af
import numpy as np
import pytest
from alphanet_fast.splits import Splits


def test_splits_from_counts_boundaries():
    s = af.splits_from_counts([0, 19, 20, 100, 101, 5000])
    np.testing.assert_array_equal(s.few, [0, 1])
    np.testing.assert_array_equal(s.medium, [2, 3])
    np.testing.assert_array_equal(s.many, [4, 5])
    np.testing.assert_array_equal(s.base, [2, 3, 4, 5])
    assert s.split_of().tolist() == ["few", "few", "medium", "medium", "many", "many"]
    t = af.splits_from_counts([3, 4, 5], few_below=4, many_above=4)
    assert (t.few.tolist(), t.medium.tolist(), t.many.tolist()) == ([0], [1], [2])


def test_splits_round_trip_and_checks():
    s = af.splits_from_counts([5, 50, 500, 7])
    again = Splits.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again.to_dict() == s.to_dict()
    assert again.few.dtype == np.int64
    with pytest.raises(ValueError, match="class 1 is in more than one split"):
        Splits(few=[0, 1], medium=[1], many=[2], n_classes=3)
    with pytest.raises(ValueError, match="class 2 is in no split"):
        Splits(few=[0], medium=[1], many=[], n_classes=3)
    with pytest.raises(ValueError, match=r"many: entry 0 is 7"):
        Splits(few=[0], medium=[1], many=[7], n_classes=3)
    with pytest.raises(ValueError, match="counts: entry 1 is -2"):
        af.splits_from_counts([3, -2])
    with pytest.raises(ValueError, match="missing keys"):
        Splits.from_dict({"few": []})
    with pytest.raises(ValueError):
        s.few[0] = 3  # read-only: a frozen dataclass is frozen all the way down
