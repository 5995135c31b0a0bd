"""One torch environment for every training loop: devices, threads, seeds owned by the call,
divergence refused."""

from __future__ import annotations

import threading

import alphanet_fast as af
import numpy as np
import pytest
import torch
from alphanet_fast._torch_env import loop_settings, parse_device
from alphanet_fast._torch_loop import target_device
from alphanet_fast.baselines import crt, lws
from training_toys import FAST, toy


def test_parse_device_accepts_the_documented_names():
    assert parse_device("cpu") == torch.device("cpu")
    assert parse_device(torch.device("cpu")) == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert parse_device("auto").type == want
    assert parse_device("auto", auto=torch.device("meta")) == torch.device("meta")
    assert parse_device("meta", any_kind=True) == torch.device("meta")


@pytest.mark.parametrize("bad", ["tpu:0", 3.5, None, "meta", "cuda:x"])
def test_parse_device_names_the_argument(bad):
    with pytest.raises(af.ArgumentError) as info:
        parse_device(bad)
    assert info.value.argument == "device"
    assert info.value.value == bad


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_by_every_loop():
    x, y, W, b, _, _ = toy(1)
    calls = [
        lambda: af.correct(x, y, W, b, **{**FAST, "device": "cuda"}),
        lambda: lws(x, y, W, b, epochs=1, device="cuda"),
        lambda: crt(x, y, W, b, epochs=1, device="cuda:0"),
    ]
    for call in calls:
        with pytest.raises(af.ArgumentError, match="no CUDA device") as info:
            call()
        assert info.value.argument == "device"


def test_the_feature_loop_parses_devices_the_same_way():
    model = torch.nn.Linear(3, 2)
    assert target_device(model, "auto") == torch.device("cpu")
    assert target_device(model, "meta") == torch.device("meta")
    with pytest.raises(af.ArgumentError) as info:
        target_device(model, "nonsense")
    assert info.value.argument == "device"


def test_loop_settings_are_restored():
    threads, precision = torch.get_num_threads(), torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        with loop_settings(torch.device("cpu")):
            assert torch.get_num_threads() == 1
            assert torch.get_float32_matmul_precision() == "highest"
        assert torch.get_num_threads() == threads
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(precision)


def _concurrently(calls):
    """Run every call on its own thread, all released at once; their results in order."""
    results, errors = [None] * len(calls), []
    start = threading.Barrier(len(calls))

    def run(i):
        try:
            start.wait()
            results[i] = calls[i]()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


@pytest.mark.parametrize("hidden", [(32, 32, 32), (256, 256)])
def test_concurrent_calls_each_get_their_own_seeds_result(hidden):
    x, y, W, b, vx, vy = toy(5)
    kw = {**FAST, "val": (vx, vy), "hidden": hidden, "metric": "random"}
    seeds = (1, 2, 3)
    alone = [af.correct(x, y, W, b, seed=s, **kw) for s in seeds]
    assert not np.array_equal(alone[0].alphas, alone[1].alphas)
    global_state = torch.get_rng_state()
    together = _concurrently([lambda s=s: af.correct(x, y, W, b, seed=s, **kw) for s in seeds])
    assert torch.equal(torch.get_rng_state(), global_state)
    for got, want in zip(together, alone, strict=True):
        np.testing.assert_array_equal(got.alphas, want.alphas)
        np.testing.assert_array_equal(got.neighbors, want.neighbors)
        np.testing.assert_array_equal(got.W, want.W)


def test_concurrent_baselines_each_get_their_own_seeds_result():
    x, y, W, b, _, _ = toy(6)
    calls = [
        lambda: crt(x, y, W, b, epochs=2, seed=1),
        lambda: crt(x, y, W, b, epochs=2, seed=2),
        lambda: lws(x, y, W, b, epochs=2, seed=3),
    ]
    alone = [call() for call in calls]
    for got, want in zip(_concurrently(calls), alone, strict=True):
        np.testing.assert_array_equal(got.W, want.W)
        np.testing.assert_array_equal(got.b, want.b)


@pytest.mark.parametrize(
    ("method", "lr", "match"),
    [
        (crt, 1e30, "training diverged"),
        (lws, 1e37, "training diverged"),
        (crt, 1e300, "float32"),
        (lws, 1e300, "float32"),
    ],
)
def test_baselines_refuse_to_return_diverged_weights(method, lr, match):
    x, y, W, b, _, _ = toy(7)
    with pytest.raises(af.ArgumentError, match=match) as info:
        method(x, y, W, b, epochs=2, lr=lr)
    assert info.value.argument == "lr"
    assert info.value.value == lr


def test_a_reasonable_learning_rate_is_not_called_divergence():
    x, y, W, b, _, _ = toy(7)
    for method in (lws, crt):
        res = method(x, y, W, b, epochs=2)
        assert np.isfinite(res.W).all() and np.isfinite(res.b).all()


def test_correct_divergence_names_lr():
    x, y, W, b, _, _ = toy(26)
    with pytest.raises(af.ArgumentError, match="training diverged") as info:
        af.correct(x, y, W, b, lr=1e30, **FAST)
    assert info.value.argument == "lr"
