"""Bad input to the kernels: a clear TypeError/ValueError naming the argument."""

from __future__ import annotations

import alphanet_fast as af
import numpy as np
import pytest

X = np.arange(12, dtype=np.float32).reshape(4, 3)
Y = np.array([0, 1, 1, 2])
W = np.ones((5, 3), dtype=np.float32)


def nan_at(row):
    x = X.copy()
    x[row, 1] = np.nan
    return x


CASES = [
    # (call, exception, words that must appear in the message)
    (lambda: af.class_means(X[0], Y), ValueError, ["features", "2-d"]),
    (lambda: af.class_means(np.zeros((0, 3)), []), ValueError, ["features", "non-empty"]),
    (lambda: af.class_means(X.astype(complex), Y), TypeError, ["features", "complex"]),
    (lambda: af.class_means(X.astype(str), Y), TypeError, ["features", "numeric"]),
    (lambda: af.class_means(X, Y[:3]), ValueError, ["labels", "4", "3"]),
    (lambda: af.class_means(X, [0, -1, 0, 0]), ValueError, ["labels", "entry 1", "-1"]),
    (lambda: af.class_means(X, [0, 1, 9, 0], 3), ValueError, ["labels", "entry 2", "9"]),
    (lambda: af.class_means(X, [0, 1.5, 0, 0]), ValueError, ["labels", "entry 1", "integer"]),
    (lambda: af.class_means(X, [True, False, True, True]), TypeError, ["labels", "bool"]),
    (lambda: af.class_means(X, Y, 0), ValueError, ["n_classes"]),
    (lambda: af.class_means(nan_at(2), Y), ValueError, ["features", "row 2", "NaN"]),
    (lambda: af.nearest_neighbors(X, W, k=6), ValueError, ["k", "[1, 5]", "6"]),
    (lambda: af.nearest_neighbors(X, W, k=0), ValueError, ["k", "0"]),
    (lambda: af.nearest_neighbors(X, W, k=2.5), TypeError, ["k", "integer"]),
    (lambda: af.nearest_neighbors(X, W[:, :2], k=1), ValueError, ["pool", "3 columns"]),
    (lambda: af.nearest_neighbors(X, W, k=1, metric="manhattan"), ValueError, ["metric"]),
    (lambda: af.nearest_neighbors(nan_at(3), W, k=1), ValueError, ["queries", "row 3"]),
    (lambda: af.nearest_neighbors(X, np.zeros((2, 3)), 1, "cosine"), ValueError, ["pool", "zero"]),
    (lambda: af.combine(W, [0, 0], [[1], [2]], [[1, 1], [1, 1]]), ValueError, ["targets", "twice"]),
    (lambda: af.combine(W, [0, 7], [[1], [2]], [[1, 1], [1, 1]]), ValueError, ["targets", "7"]),
    (lambda: af.combine(W, [0, 1], [[1], [-2]], [[1, 1], [1, 1]]), ValueError, ["neighbors"]),
    (lambda: af.combine(W, [0, 1], [[1], [2]], [[1], [1]]), ValueError, ["alphas", "shape"]),
    (lambda: af.combine(W, [0, 1], [[1]], [[1, 1], [1, 1]]), ValueError, ["neighbors", "rows"]),
    (lambda: af.combine(W, [0], [[1]], [[1, np.inf]]), ValueError, ["alphas", "row 0"]),
    (lambda: af.topk_scores(X, W, k=6), ValueError, ["k", "6"]),
    (lambda: af.topk_scores(X, W[:, :2]), ValueError, ["W", "3 columns"]),
    (lambda: af.topk_scores(X, W, b=np.zeros(4)), ValueError, ["b", "5 entries"]),
    (lambda: af.topk_scores(nan_at(1), W, k=2), ValueError, ["features", "row 1"]),
    (lambda: af.topk_scores(X, W, b=np.array([0, 0, np.nan, 0, 0])), ValueError, ["b", "2"]),
]


@pytest.mark.parametrize("call, exc, words", CASES)
def test_bad_input_names_the_argument(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_set_num_threads_rejects_negative():
    with pytest.raises(ValueError, match="n:"):
        af.set_num_threads(-1)


def test_extension_rejects_unaligned_buffers():
    # The public wrappers copy such arrays; the extension itself must refuse
    # them rather than read misaligned elements.
    from alphanet_fast import _core

    raw = np.zeros(8 * 60 + 1, dtype=np.uint8)
    x = np.frombuffer(raw.data, dtype=np.float64, count=60, offset=1).reshape(20, 3)
    labels = np.frombuffer(np.zeros(8 * 20 + 1, np.uint8).data, np.int64, 20, offset=1)
    with pytest.raises(ValueError, match="features: .*not aligned"):
        _core.class_means(x, np.zeros(20, np.int64), 2)
    with pytest.raises(ValueError, match="labels: .*not aligned"):
        _core.class_means(np.zeros((20, 3)), labels, 2)
    with pytest.raises(ValueError, match="W: .*not aligned"):
        _core.topk_scores(np.zeros((2, 3)), x, None, 1)
