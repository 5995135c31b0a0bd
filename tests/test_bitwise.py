"""Every "bitwise" claim, checked with exact equality.

* A memory-mapped ``.npy`` read in chunks gives the bits of one call on the same
  array in memory: ``class_means`` (class sums are the sequential sum), ``topk_scores``
  (chunks are cut at the kernel's row blocks) and ``evaluate``. The chunk size is
  shrunk so that a small file is read in several chunks.
* ``correct()`` gives the same bits with 1, 2 or 3 threads (torch's, which set the
  scoring workers and the first layer's, and the kernels'), with the scoring cut
  into several blocks and the first layer into pieces.
"""

from __future__ import annotations

import alphanet_fast as af
import numpy as np
import pytest
import torch


def internals():
    """The package's size constant these tests shrink: (module, name) of the
    memory-map chunk size."""
    from alphanet_fast import _memory

    return {"chunk": (_memory, "CHUNK_BYTES")}


def shrink(monkeypatch, name, value):
    module, attr = internals()[name]
    assert hasattr(module, attr), f"{module.__name__}.{attr} has moved"
    monkeypatch.setattr(module, attr, value)


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def mapped(request, tmp_path, monkeypatch):
    """A (1500, 24) array saved as .npy, its memory map read in chunks of 256 rows,
    and the same values in memory."""
    rng = np.random.default_rng(3)
    n_classes = 40
    y = rng.integers(0, n_classes, 1500)
    centres = rng.standard_normal((n_classes, 24)) * 2
    x = (centres[y] + rng.standard_normal((1500, 24))).astype(request.param)
    np.save(tmp_path / "x.npy", x)
    shrink(monkeypatch, "chunk", 1)  # one row block (256 rows) a chunk
    from alphanet_fast import _memory

    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert len(list(_memory.row_chunks(mm))) == 6
    W = (centres + 0.5 * rng.standard_normal(centres.shape)).astype(request.param)
    b = rng.standard_normal(n_classes).astype(request.param)
    return mm, np.array(mm), y, W, b, tmp_path / "x.npy"


def test_chunked_class_means_are_bitwise_one_call(mapped):
    mm, x, y, *_, path = mapped
    want = af.class_means(x, y, 40)
    for source in (mm, path):
        got = af.class_means(source, y, 40)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert got[0].dtype == want[0].dtype
    np.testing.assert_array_equal(af.class_sums(mm, y, 40)[0], af.class_sums(x, y, 40)[0])


def test_chunked_topk_scores_are_bitwise_one_call(mapped):
    mm, x, _, W, b, path = mapped
    want = af.topk_scores(x, W, b, k=5)
    for source in (mm, path):
        got = af.topk_scores(source, W, b, k=5)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_chunked_evaluate_is_bitwise_one_call(mapped):
    mm, x, y, W, b, _ = mapped
    counts = np.bincount(y, minlength=40)
    splits = af.splits_from_counts(counts, few_below=int(np.sort(counts)[8]), many_above=45)
    assert splits.few.size and splits.many.size
    nb = np.tile(splits.base[:3], (splits.few.size, 1))
    kwargs = dict(splits=splits, k=(1, 5), neighbors=(splits.few, nb), groups=np.arange(40) // 4)
    got, want = af.evaluate(mm, y, W, b, **kwargs), af.evaluate(x, y, W, b, **kwargs)
    np.testing.assert_equal(got.to_dict(), want.to_dict())  # NaN == NaN
    for k in want.ks:
        np.testing.assert_array_equal(got.per_class[k], want.per_class[k])


def long_tail(seed=0, n_classes=30, d=16):
    rng = np.random.default_rng(seed)
    counts = np.where(np.arange(n_classes) % 3 == 0, rng.integers(4, 15, n_classes), 60)
    y = rng.permutation(np.repeat(np.arange(n_classes), counts))
    centres = rng.standard_normal((n_classes, d)) * 2
    x = (centres[y] + rng.standard_normal((y.size, d))).astype(np.float32)
    W = (centres + 0.4 * rng.standard_normal(centres.shape)).astype(np.float32)
    b = (0.1 * rng.standard_normal(n_classes)).astype(np.float32)
    vy = np.repeat(np.arange(n_classes), 6)
    vx = (centres[vy] + rng.standard_normal((vy.size, d))).astype(np.float32)
    return x, y, W, b, (vx, vy)


def with_one_two_and_three_threads(fn):
    """``{n: fn()}`` with torch's and the kernels' threads both set to n = 1, 2, 3."""
    torch_threads, kernel_threads = torch.get_num_threads(), af.get_num_threads()
    results = {}
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            af.set_num_threads(n)
            results[n] = fn()
    finally:
        torch.set_num_threads(torch_threads)
        af.set_num_threads(kernel_threads)
    return results


def test_correct_is_bitwise_the_same_with_one_two_and_three_threads():
    from alphanet_fast.training import Budgets, using_budgets

    # Scoring in blocks of 64 rows (several per worker).
    budgets = Budgets(block=1)
    x, y, W, b, val = long_tail()
    kwargs = dict(val=val, epochs=3, min_epochs=1, batch_size=32, progress=False, device="cpu")

    def run():
        with using_budgets(budgets):
            return af.correct(x, y, W, b, **kwargs)

    results = with_one_two_and_three_threads(run)
    assert results[1].alphas[:, 1:].std() > 0
    for n in (2, 3):
        np.testing.assert_array_equal(results[n].alphas, results[1].alphas)
        np.testing.assert_array_equal(results[n].W, results[1].W)
        np.testing.assert_equal(results[n].history, results[1].history)  # NaN == NaN


@pytest.mark.parametrize("method", ["lws", "crt"])
def test_trained_baselines_are_bitwise_the_same_with_one_two_and_three_threads(method):
    from alphanet_fast import _core
    from alphanet_fast.baselines import crt, lws

    rng = np.random.default_rng(5)
    n_classes, d = 12, 2 * _core.THIN_PIECE_ROWS + 40  # three pieces, a short last one
    y = rng.integers(0, n_classes, 300)
    x = rng.standard_normal((300, d)).astype(np.float32)
    W = (0.05 * rng.standard_normal((n_classes, d))).astype(np.float32)
    b = rng.standard_normal(n_classes).astype(np.float32)
    fn = {"lws": lws, "crt": crt}[method]
    kwargs = dict(epochs=2, samples_per_epoch=200, batch_size=48, device="cpu", seed=2)
    results = with_one_two_and_three_threads(lambda: fn(x, y, W, b, **kwargs))
    assert not np.allclose(results[1].W, W)
    for n in (2, 3):
        np.testing.assert_array_equal(results[n].W, results[1].W)
        np.testing.assert_array_equal(results[n].b, results[1].b)
