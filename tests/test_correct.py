"""correct() end to end: the naive implementation, determinism, inputs, errors."""

from __future__ import annotations

import alphanet_fast as af
import numpy as np
import pytest
import torch
from training_toys import FAST, naive_correct, toy


def test_whole_run_equals_the_naive_implementation():
    x, y, W, b, vx, vy = toy(23, n_classes=16)
    kwargs = dict(k=3, rho=1.5, epochs=8, batch_size=16, lr=3e-3, min_epochs=2, seed=5)
    res = af.correct(x, y, W, b, val=(vx, vy), progress=False, device="cpu", **kwargs)
    alphas, losses = naive_correct(x, y, W, b, val=(vx, vy), **kwargs)
    np.testing.assert_allclose([h["loss"] for h in res.history], losses, rtol=1e-5)
    np.testing.assert_allclose(res.alphas, alphas, rtol=1e-4, atol=1e-5)


def test_same_seed_same_result_and_global_state_untouched():
    x, y, W, b, vx, vy = toy(8)
    threads = torch.get_num_threads()
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002 (the legacy global state)
    a = af.correct(x, y, W, b, val=(vx, vy), **FAST)
    bb = af.correct(x, y, W, b, val=(vx, vy), **FAST)
    c = af.correct(x, y, W, b, val=(vx, vy), **{**FAST, "seed": 1})
    np.testing.assert_array_equal(a.W, bb.W)
    np.testing.assert_array_equal(a.alphas, bb.alphas)
    assert a.history == bb.history
    assert not np.array_equal(a.alphas, c.alphas)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)  # noqa: NPY002


def test_result_does_not_depend_on_the_callers_thread_count():
    x, y, W, b, vx, vy = toy(8)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = af.correct(x, y, W, b, val=(vx, vy), **FAST)
        torch.set_num_threads(2)
        two = af.correct(x, y, W, b, val=(vx, vy), **FAST)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(one.W, two.W)


def test_device_auto_picks_what_torch_sees():
    x, y, W, b, _, _ = toy(9)
    res = af.correct(x, y, W, b, **{**FAST, "device": "auto"})
    assert res.config["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


def test_inputs_are_not_modified_and_read_only_inputs_work():
    x, y, W, b, vx, vy = toy(10)
    arrays = [x, y, W, b, vx, vy]
    before = [a.copy() for a in arrays]
    for a in arrays:
        a.setflags(write=False)
    res = af.correct(x, y, W, b, val=(vx, vy), **FAST)
    for a, a0 in zip(arrays, before):
        np.testing.assert_array_equal(a, a0)
    assert res.W is not W and res.b is not b


def test_dtypes_layouts_and_memory_maps_give_the_same_result(tmp_path):
    x, y, W, b, _, _ = toy(11)
    ref = af.correct(x, y, W, b, **FAST)
    assert ref.W.dtype == np.float32 and ref.b.dtype == np.float32

    as64 = af.correct(x.astype(np.float64), y, W.astype(np.float64), b.astype(np.float64), **FAST)
    assert as64.W.dtype == np.float64 and as64.b.dtype == np.float64
    np.testing.assert_allclose(as64.W, ref.W, rtol=1e-5, atol=1e-5)

    fortran = af.correct(np.asfortranarray(x), y, W, b, **FAST)
    np.testing.assert_array_equal(fortran.W, ref.W)
    wide = np.zeros((x.shape[0], 2 * x.shape[1]), dtype=np.float32)
    wide[:, ::2] = x
    strided = af.correct(wide[:, ::2], y, W, b, **FAST)
    np.testing.assert_array_equal(strided.W, ref.W)
    np.save(tmp_path / "x.npy", x)
    mapped = af.correct(np.load(tmp_path / "x.npy", mmap_mode="r"), y, W, b, **FAST)
    np.testing.assert_array_equal(mapped.W, ref.W)
    lists = af.correct(x.tolist(), y.tolist(), W, b.tolist(), **FAST)
    np.testing.assert_allclose(lists.W, as64.W.astype(np.float32), rtol=1e-5, atol=1e-5)


def test_bias_defaults_to_zeros():
    x, y, W, _, _, _ = toy(12)
    res = af.correct(x, y, W, **FAST)
    np.testing.assert_array_equal(res.b, np.zeros(W.shape[0], dtype=np.float32))
    assert res.b.dtype == W.dtype


# --------------------------------------------------------------------------- edge cases


def test_no_few_class_returns_the_input_with_a_warning():
    x, y, W, b, _, _ = toy(13, counts=[30, 40, 50, 60])
    with pytest.warns(UserWarning, match="nothing to correct"):
        res = af.correct(x, y, W, b, **FAST)
    np.testing.assert_array_equal(res.W, W)
    np.testing.assert_array_equal(res.b, b)
    assert res.W is not W
    assert res.alphas.shape == (0, 6) and res.few_classes.size == 0
    assert res.history == [] and res.best_epoch == 0
    np.testing.assert_array_equal(res.apply(W), W)
    assert "nothing trained" in res.summary()


def _bad_calls():
    x, y, W, b, vx, vy = toy(17)
    nan_x = x.copy()
    nan_x[7, 2] = np.nan
    nan_vx = vx.copy()
    nan_vx[11, 0] = np.inf
    nan_W = W.copy()
    nan_W[4, 1] = np.nan
    bad_labels = y.copy()
    bad_labels[5] = 12
    return [
        ((x[:, :5], y, W, b), {}, ValueError, r"features: expected 6 columns \(as W\)"),
        ((x, y[:-1], W, b), {}, ValueError, r"labels: expected \d+ labels"),
        (
            (x, bad_labels, W, b),
            {},
            ValueError,
            r"labels: entry 5 is 12, expected an integer in \[0, 12\)",
        ),
        ((x, y, W, b[:-1]), {}, ValueError, "b: expected 12 entries"),
        ((x, y, W[:, :, None], b), {}, ValueError, "W: expected a 2-d array"),
        ((x, y.astype(str), W, b), {}, TypeError, "labels: expected integers"),
        ((nan_x, y, W, b), {}, ValueError, "features: row 7 contains NaN"),
        ((x, y, nan_W, b), {}, ValueError, "W: row 4 contains NaN"),
        ((x, y, W, b), {"val": (nan_vx, vy)}, ValueError, r"val\[0\] \(features\): row 11"),
        (
            (x * 1e20, y, W * 1e20, b),
            {"metric": "random"},
            ValueError,
            r"features: the scores of row \d+\.\.\d+ against W overflow float32",
        ),
        (
            (x, y, W * 1e20, b),
            {"metric": "random", "val": (vx * 1e20, vy)},
            ValueError,
            r"val\[0\] \(features\): the scores of row 0\.\.\d+ against W overflow",
        ),
        ((x, y, W, b), {"val": (vx[:, :4], vy)}, ValueError, r"val: features: expected 6"),
        ((x, y, W, b), {"val": (vx, vy[:-2])}, ValueError, r"val: labels: expected"),
        ((x, y, W, b), {"val": vx}, TypeError, r"val: expected a \(features, labels\) pair"),
        ((x, y, W, b), {"metric": "manhattan"}, ValueError, "metric: expected one of"),
        ((x, y, W, b), {"k": 0}, ValueError, "k: expected an integer >= 1"),
        ((x, y, W, b), {"k": 2.5}, TypeError, "k: expected an integer"),
        ((x, y, W, b), {"rho": -1}, ValueError, "rho: expected a finite number >= 0"),
        ((x, y, W, b), {"lr": 0}, ValueError, "lr: expected a finite number > 0"),
        ((x, y, W, b), {"score_scale": float("nan")}, ValueError, "score_scale"),
        ((x, y, W, b), {"hidden": 32}, TypeError, "hidden: expected a sequence"),
        ((x, y, W, b), {"hidden": (32, 0)}, ValueError, r"hidden: entry 1 is 0"),
        ((x, y, W, b), {"device": "tpu"}, ValueError, "device:"),
        ((x, y, W, b), {"progress": "yes"}, TypeError, "progress:"),
        ((x, y, W, b), {"seed": -1}, ValueError, "seed:"),
        ((x, y, W, b), {"few_below": 200}, ValueError, "few_below: expected at most"),
    ]


@pytest.mark.parametrize(("args", "kwargs", "error", "match"), _bad_calls())
def test_bad_input_is_named(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        af.correct(*args, **{**FAST, **kwargs})


def test_cuda_request_without_cuda_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    x, y, W, b, _, _ = toy(18)
    with pytest.raises(ValueError, match="device: 'cuda' requested but torch sees no CUDA"):
        af.correct(x, y, W, b, **{**FAST, "device": "cuda"})


def test_settings_that_cannot_run_are_named_before_any_work():
    x, y, W, b, vx, vy = toy(24)
    with pytest.raises(ValueError, match=r"hidden: a network of widths \(1000000, 1000000\)"):
        af.correct(x, y, W, b, hidden=(10**6, 10**6), **FAST)
    with pytest.raises(ValueError, match=r"seed: expected an integer in \[0, 2\*\*63\)"):
        af.correct(x, y, W, b, seed=2**70, **FAST)
    with pytest.raises(ValueError, match=r"rho: .* GiB"):
        af.correct(x, y, W, b, rho=1e15, **FAST)


def test_a_batch_larger_than_an_epoch_is_the_whole_epoch():
    x, y, W, b, vx, vy = toy(25)
    n_per_epoch = 2 * 16  # 16 few rows, rho = 1
    whole = af.correct(x, y, W, b, batch_size=n_per_epoch, **FAST)
    huge = af.correct(x, y, W, b, batch_size=10**9, **FAST)
    np.testing.assert_array_equal(huge.alphas, whole.alphas)
    assert huge.config["batch_size"] == 10**9


def test_divergence_names_the_learning_rate():
    x, y, W, b, vx, vy = toy(26)
    with pytest.raises(ValueError, match=r"training diverged.*lower lr \(now 1e\+30\)"):
        af.correct(x, y, W, b, lr=1e30, **FAST)


def test_defaults_and_config_come_from_the_settings():
    import inspect

    from alphanet_fast.settings import Settings

    params = inspect.signature(af.correct).parameters
    for name, default in Settings.defaults().items():
        assert params[name].default == default, name
    x, y, W, b, vx, vy = toy(27)
    res = af.correct(x, y, W, b, val=(vx, vy), **FAST)
    want = Settings(**{**Settings.defaults(), "epochs": 6, "min_epochs": 2}).to_dict()
    want.update(device="cpu", user_neighbors=False, validation=True, loop_threads=1)
    assert res.config == want
