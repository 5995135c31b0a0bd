"""The post-hoc baselines against direct computations of their formulas and recipes."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from alphanet_fast.baselines import (
    DEFAULT_TAUS,
    crt,
    logit_adjust,
    lws,
    ncm,
    tau_norm,
)
from alphanet_fast.baselines.trained import init_linear
from alphanet_fast.training import class_balanced_rows


def _problem(seed: int = 0, n: int = 300, C: int = 6, d: int = 5, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(C, d)) * 2
    y = np.concatenate([np.arange(C), rng.integers(0, C, size=n - C)])
    y = np.sort(np.where(rng.random(n) < 0.5, y, 0))  # long-tailed: class 0 frequent
    x = (centers[y] + rng.normal(size=(n, d)) + 1.5).astype(dtype)
    W = rng.normal(size=(C, d)).astype(dtype)
    b = rng.normal(size=C).astype(dtype)
    vy = np.repeat(np.arange(C), 10)
    vx = (centers[vy] + rng.normal(size=(vy.size, d)) + 1.5).astype(dtype)
    return x, y, W, b, (vx, vy)


def _order(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("cl2n", [False, True])
def test_ncm_ranks_as_brute_force_nearest_mean(metric, cl2n):
    x, y, W, b, (vx, _) = _problem()
    res = ncm(x, y, W, b, metric=metric, cl2n=cl2n)
    C = W.shape[0]
    mu = x.mean(axis=0)

    def prep(a):
        if not cl2n:
            return a
        z = a - mu
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    means = np.stack([prep(x)[y == c].mean(axis=0) for c in range(C)])
    q = prep(vx)
    if metric == "euclidean":
        brute = -((q[:, None, :] - means[None]) ** 2).sum(axis=2)
    else:
        brute = (q @ means.T) / np.linalg.norm(q, axis=1)[:, None] / np.linalg.norm(means, axis=1)
    feats = vx if res.transform is None else res.transform(vx)
    assert (res.transform is not None) == (metric == "euclidean" and cl2n)
    linear = feats @ res.W.T + res.b
    np.testing.assert_array_equal(_order(linear), _order(brute))
    assert res.W.shape == W.shape and res.W.dtype == W.dtype and res.b.dtype == W.dtype


def test_ncm_euclidean_formula():
    x, y, W, b, _ = _problem()
    res = ncm(x, y, W, b, metric="euclidean", cl2n=False)
    means = np.stack([x[y == c].mean(axis=0) for c in range(W.shape[0])])
    np.testing.assert_allclose(res.W, means, rtol=1e-12)
    np.testing.assert_allclose(res.b, -0.5 * (means**2).sum(axis=1), rtol=1e-12)


@pytest.mark.parametrize("bias", ["scale", "keep"])
def test_tau_norm_formula(bias):
    x, y, W, b, _ = _problem()
    res = tau_norm(x, y, W, b, tau=0.7, bias=bias)
    norms = np.linalg.norm(W, axis=1) ** 0.7
    np.testing.assert_allclose(res.W, W / norms[:, None], rtol=1e-12)
    np.testing.assert_allclose(res.b, b / norms if bias == "scale" else b, rtol=1e-12)
    assert res.settings["tau"] == 0.7 and res.settings["tau_source"] == "given"


def test_logit_adjust_formula():
    x, y, W, b, _ = _problem()
    res = logit_adjust(x, y, W, b, tau=1.3)
    pi = np.bincount(y, minlength=W.shape[0]) / y.size
    np.testing.assert_allclose(res.b, b - 1.3 * np.log(pi), rtol=1e-12)
    np.testing.assert_array_equal(res.W, W)


def _brute_choice(make, vx, vy, taus):
    accs = []
    for t in taus:
        Wt, bt = make(t)
        accs.append(np.mean(np.argmax(vx @ Wt.T + bt, axis=1) == vy))
    return taus[int(np.argmax(accs))], accs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tau_selection_equals_brute_force_loop(seed):
    x, y, W, b, val = _problem(seed)
    W = W * np.linspace(0.2, 3.0, W.shape[0])[:, None]  # norms that tau can matter for
    norms = np.linalg.norm(W, axis=1)
    log_pi = np.log(np.bincount(y, minlength=W.shape[0]) / y.size)
    taus = list(DEFAULT_TAUS)
    res = tau_norm(x, y, W, b, val=val)
    tau, accs = _brute_choice(lambda t: (W / norms[:, None] ** t, b / norms**t), *val, taus)
    assert res.settings["tau"] == tau
    np.testing.assert_allclose(res.settings["val_accuracy"], accs)
    res = logit_adjust(x, y, W, b, val=val)
    tau, accs = _brute_choice(lambda t: (W, b - t * log_pi), *val, taus)
    assert res.settings["tau"] == tau
    np.testing.assert_allclose(res.settings["val_accuracy"], accs)


def _sgd_naive(params, decay, wd, lr, total):
    groups = [{"params": [p], "weight_decay": wd if dk else 0.0} for p, dk in zip(params, decay)]
    opt = torch.optim.SGD(groups, lr=lr, momentum=0.9)

    def step(i):
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / total))
        opt.step()
        opt.zero_grad()

    return step


def _naive_batches(y, epochs, spe, bs, seed):
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        rows = class_balanced_rows(y, np.flatnonzero(np.bincount(y)), spe, rng)
        for s in range(0, spe, bs):
            yield np.sort(rows[s : s + bs])


def test_lws_equals_naive_torch_recipe():
    x, y, W, b, _ = _problem(dtype=np.float32)
    epochs, spe, bs, lr, wd = 3, 200, 64, 0.1, 0.01
    res = lws(x, y, W, b, epochs=epochs, samples_per_epoch=spe, batch_size=bs, lr=lr,
              weight_decay=wd, seed=4, device="cpu")  # fmt: skip
    scales = torch.ones(W.shape[0], requires_grad=True)
    total = epochs * math.ceil(spe / bs)
    step = _sgd_naive([scales], [True], wd, lr, total)
    for i, idx in enumerate(_naive_batches(y, epochs, spe, bs, 4)):
        logits = scales * (torch.from_numpy(x[idx]) @ torch.from_numpy(W).T + torch.from_numpy(b))
        torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[idx])).backward()
        step(i)
    s = scales.detach().numpy()
    np.testing.assert_allclose(res.W, W * s[:, None], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.b, b * s, rtol=1e-4, atol=1e-5)
    assert not np.allclose(s, 1.0)  # it learned something


def test_crt_equals_naive_torch_recipe():
    x, y, W, b, _ = _problem(dtype=np.float32)
    epochs, spe, bs, lr, wd = 2, 300, 64, 0.05, 5e-4
    res = crt(x, y, W, b, epochs=epochs, samples_per_epoch=spe, batch_size=bs, lr=lr,
              weight_decay=wd, seed=3, device="cpu")  # fmt: skip
    layer = torch.nn.Linear(W.shape[1], W.shape[0])
    w0, b0 = init_linear(W.shape[0], W.shape[1], 3)
    with torch.no_grad():
        layer.weight.copy_(w0)
        layer.bias.copy_(b0)
    total = epochs * math.ceil(spe / bs)
    step = _sgd_naive([layer.weight, layer.bias], [True, False], wd, lr, total)
    for i, idx in enumerate(_naive_batches(y, epochs, spe, bs, 3)):
        loss = torch.nn.functional.cross_entropy(
            layer(torch.from_numpy(x[idx])), torch.from_numpy(y[idx])
        )
        loss.backward()
        step(i)
    np.testing.assert_allclose(res.W, layer.weight.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.b, layer.bias.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert len(res.history["loss"]) == epochs


def test_crt_from_the_given_classifier_starts_there():
    x, y, W, b, _ = _problem(dtype=np.float32)
    kw = dict(epochs=1, samples_per_epoch=64, batch_size=64, device="cpu", weight_decay=0.0)
    still = crt(x, y, W, b, init="given", lr=1e-12, **kw)
    np.testing.assert_allclose(still.W, W, rtol=1e-6)
    np.testing.assert_allclose(still.b, b, rtol=1e-6)
    moved = crt(x, y, W, b, init="given", lr=0.1, **kw)
    assert not np.allclose(moved.W, W) and moved.settings["init"] == "given"


def test_trained_methods_read_memory_maps_and_paths_alike(tmp_path):
    x, y, W, b, _ = _problem(dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    kw = dict(epochs=1, samples_per_epoch=256, batch_size=64, device="cpu", seed=1)
    for fn in (lws, crt):
        ref = fn(x, y, W, b, **kw)
        for source in (tmp_path / "x.npy", np.load(tmp_path / "x.npy", mmap_mode="r")):
            got = fn(source, y, W, b, **kw)
            np.testing.assert_array_equal(got.W, ref.W)
            np.testing.assert_array_equal(got.b, ref.b)


def test_closed_forms_keep_inputs_and_dtype():
    x, y, W, b, val = _problem(dtype=np.float32)
    copies = [a.copy() for a in (x, y, W, b)]
    for res in (ncm(x, y, W, b), tau_norm(x, y, W, b, val=val), logit_adjust(x, y, W, b, val=val)):
        assert res.W.dtype == np.float32 and res.b.dtype == np.float32
        assert res.W.shape == W.shape and res.b.shape == b.shape
        assert isinstance(res.to_dict()["settings"], dict)
    for a, c in zip((x, y, W, b), copies):
        np.testing.assert_array_equal(a, c)


def test_importing_baselines_does_not_import_torch():
    code = "import sys, alphanet_fast, alphanet_fast.baselines; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda x, y, W, b, v: tau_norm(x, y, W, b), ValueError, "^tau: give tau"),
        (lambda x, y, W, b, v: tau_norm(x, y, W, b, val=v, taus=[]), ValueError, "^taus:"),
        (lambda x, y, W, b, v: tau_norm(x, y, W, b, tau="1"), TypeError, "^tau:"),
        (lambda x, y, W, b, v: tau_norm(x, y, W, b, tau=1, bias="x"), ValueError, "^bias:"),
        (lambda x, y, W, b, v: logit_adjust(x, y, W, b, tau=math.nan), ValueError, "^tau:"),
        (
            lambda x, y, W, b, v: logit_adjust(x, y, W, b, val=(v[0][:, :2], v[1])),
            ValueError,
            r"^val: features:",
        ),
        (lambda x, y, W, b, v: ncm(x, y, W, b, metric="l1"), ValueError, "^metric:"),
        (lambda x, y, W, b, v: ncm(x, y, W, b, cl2n=1), TypeError, "^cl2n:"),
        (lambda x, y, W, b, v: ncm(x, y, W[:, :2], b), ValueError, "^features:"),
        (lambda x, y, W, b, v: ncm(x, y + 10, W, b), ValueError, "^labels:"),
        (lambda x, y, W, b, v: lws(x, y, W, b, epochs=0), ValueError, "^epochs:"),
        (lambda x, y, W, b, v: crt(x, y, W, b, lr=-1.0), ValueError, "^lr:"),
        (lambda x, y, W, b, v: crt(x, y, W, b, device="tpu"), ValueError, "^device:"),
        (lambda x, y, W, b, v: crt(x, y, W, b, init="zeros"), ValueError, "^init:"),
        (lambda x, y, W, b, v: crt(x, y, W, b[:2]), ValueError, "^b:"),
        (lambda x, y, W, b, v: lws(x, y, W, b, seed=-1), ValueError, "^seed:"),
    ],
)
def test_bad_input_named_errors(call, error, match):
    x, y, W, b, val = _problem()
    with pytest.raises(error, match=match):
        call(x, y, W, b, val)


def test_class_without_samples_is_a_named_error():
    x, y, W, b, _ = _problem()
    keep = y != 3
    for fn in (ncm, lambda *a: logit_adjust(*a, tau=1.0)):
        with pytest.raises(ValueError, match="^labels: class 3 has no training samples"):
            fn(x[keep], y[keep], W, b)


@pytest.mark.parametrize(
    "name",
    [
        "alphanet_fast.baselines.closed_form",
        "alphanet_fast.baselines.trained",
        "alphanet_fast.comparison",
    ],
)
def test_docstring_examples(name):
    import doctest
    import importlib

    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False, report=True)
    assert result.attempted > 0 and result.failed == 0
