"""Bad input to the kernels: a clear TypeError/ValueError naming the argument."""

from __future__ import annotations

import warnings

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


FIELD_CASES = [
    # (call, argument, row)
    (lambda: af.class_means(nan_at(2), Y), "features", 2),
    (lambda: af.class_means(X, [0, 1, 9, 0], 3), "labels", 2),
    (lambda: af.class_means(X, [0, -1, 0, 0]), "labels", 1),
    (lambda: af.class_means(X, Y, 0), "n_classes", None),
    (lambda: af.nearest_neighbors(nan_at(3), W, k=1), "queries", 3),
    (lambda: af.nearest_neighbors(X, np.zeros((2, 3)), 1, "cosine"), "pool", 0),
    (lambda: af.nearest_neighbors(X, W, k=6), "k", None),
    (lambda: af.combine(W, [0, 0], [[1], [2]], [[1, 1], [1, 1]]), "targets", 1),
    (lambda: af.combine(W, [0, 1], [[1], [-2]], [[1, 1], [1, 1]]), "neighbors", 1),
    (lambda: af.combine(W, [0], [[1]], [[1, np.inf]]), "alphas", 0),
    (lambda: af.topk_scores(nan_at(1), W, k=2), "features", 1),
    (lambda: af.topk_scores(X, W, b=np.array([0, 0, np.nan, 0, 0])), "b", 2),
]


@pytest.mark.parametrize("call, argument, row", FIELD_CASES)
def test_kernel_error_carries_argument_and_row(call, argument, row):
    with pytest.raises(af.KernelError) as info:
        call()
    assert isinstance(info.value, ValueError)
    assert (info.value.argument, info.value.row) == (argument, row)
    assert str(info.value).startswith(f"{argument}: ")


def test_kernel_error_pickles_with_its_fields():
    import pickle

    with pytest.raises(af.KernelError) as info:
        af.class_means(nan_at(2), Y)
    back = pickle.loads(pickle.dumps(info.value))
    assert (type(back), str(back), back.argument, back.row) == (
        af.KernelError,
        str(info.value),
        "features",
        2,
    )


def test_chunked_memmap_errors_name_the_row_of_the_whole_file(tmp_path, monkeypatch):
    from alphanet_fast import _memory

    monkeypatch.setattr(_memory, "CHUNK_BYTES", 1024)  # 256-row chunks
    x = np.ones((700, 3), dtype=np.float32)
    x[600, 2] = np.inf
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    for call in (
        lambda: af.class_sums(mapped, np.zeros(700, np.int64), 1),
        lambda: af.topk_scores(mapped, W, k=1),
    ):
        with pytest.raises(af.KernelError, match="features: row 600 ") as info:
            call()
        assert info.value.row == 600


@pytest.mark.parametrize(
    "labels, n_classes",
    [
        (np.array([0, 1, 123456789]), None),
        (np.array([0, 1, 1]), 2**40),
        (np.array([0, 1, 10**15]), None),
        (np.array([0, 1, 1]), 2**62),
    ],
)
def test_absurd_class_counts_are_refused_before_allocating(labels, n_classes):
    x = np.ones((3, 512), np.float32)
    with pytest.raises((MemoryError, ValueError), match="n_classes: .* classes x 512 columns"):
        af.class_means(x, labels, n_classes)


def test_class_counts_beyond_int64_name_the_argument():
    with pytest.raises(af.KernelError, match="n_classes") as info:
        af.class_means(X, Y, 2**70)
    assert info.value.argument == "n_classes"


@pytest.mark.parametrize("value", [1e20, -1e20, 2.0**63, np.nan])
def test_float_labels_report_their_value(value):
    with pytest.raises(af.KernelError) as info:
        af.class_means(X, [0.0, value, 1.0, 0.0])
    assert info.value.row == 1
    assert f"entry 1 is {value}" in str(info.value)


def test_integer_weights_convert_only_when_exact():
    w_int = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)
    out = af.combine(w_int, [0], [[1]], [[1.0, 1.0]])
    np.testing.assert_array_equal(out, [[5.0, 7.0, 9.0], [4.0, 5.0, 6.0]])
    big = w_int.copy()
    big[1, 0] = 2**53 + 1
    with pytest.raises(af.KernelError, match="W: row 1 .*integers beyond") as info:
        af.combine(big, [0], [[1]], [[1.0, 1.0]])
    assert info.value.row == 1


def test_torch_tensors_of_numpy_less_dtypes():
    torch = pytest.importorskip("torch")
    x = torch.arange(12, dtype=torch.bfloat16).reshape(4, 3)
    means, _ = af.class_means(x, Y)
    want, _ = af.class_means(x.float().numpy(), Y)
    np.testing.assert_array_equal(means, want)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: complex32 is experimental
        half_complex = torch.zeros((4, 3), dtype=torch.complex32)
    with pytest.raises(TypeError, match="features: torch dtype torch.complex32"):
        af.class_means(half_complex, Y)


def test_extension_counts_beyond_the_platform_are_named():
    from alphanet_fast import _core

    for bad in (-1, 2**70):
        with pytest.raises(af.KernelError, match="k: ") as info:
            _core.topk_scores(X, W, None, bad)
        assert info.value.argument == "k"
