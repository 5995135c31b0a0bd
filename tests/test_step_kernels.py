"""The training step's Rust kernels: the first layer's products
(``_core.thin_t_dot``, ``_core.thin_dot``) and the few-class loss (``_core.few_loss``).

The products against float64 numpy references on random shapes (several pieces
of ``THIN_PIECE_ROWS`` rows and a short last one, odd widths, strided views), on
every SIMD path this CPU has, bitwise the same on 1, 2 and 3 kernel threads and
on the calling thread. The loss and its gradient against torch's autograd of
the same formula on random batches, extreme scores included. Bad arguments are
refused with the argument named.
"""

from __future__ import annotations

import alphanet_fast as af
import numpy as np
import pytest
import torch
from alphanet_fast import _core
from hypothesis import given, settings
from hypothesis import strategies as st
from test_kernel_paths import cpu_paths

PIECE = _core.THIN_PIECE_ROWS


def _both(a, b, g, parallel):
    """The forward ``a.T @ b`` and the gradient ``a @ g`` (``a`` read column-major)."""
    fwd = np.empty((a.shape[1], b.shape[1]), dtype=a.dtype)
    grad = np.empty((a.shape[0], g.shape[1]), dtype=a.dtype)
    _core.thin_t_dot(a, b, fwd, parallel)
    _core.thin_dot(np.ascontiguousarray(a.T).T, g, grad, parallel)
    return fwd, grad


def _inputs(seed, k, f, h, dtype, scale=1.0):
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((k, f)) * scale).astype(dtype)
    b = rng.standard_normal((k, h)).astype(dtype)
    g = rng.standard_normal((f, h)).astype(dtype)
    return a, b, g


def _check_against_reference(a, b, g, fwd, grad):
    a64, b64, g64 = (m.astype(np.float64) for m in (a, b, g))
    # A sum of K products: error within K rounding units of the sum of magnitudes.
    eps = np.finfo(a.dtype).eps
    bound_f = a.shape[0] * eps * (np.abs(a64).T @ np.abs(b64)) + 1e-300
    bound_g = a.shape[1] * eps * (np.abs(a64) @ np.abs(g64)) + 1e-300
    assert (np.abs(fwd - a64.T @ b64) <= bound_f).all()
    assert (np.abs(grad - a64 @ g64) <= bound_g).all()


@pytest.mark.parametrize("path", cpu_paths())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_path_matches_the_reference_and_is_the_same_on_any_pool(path, dtype, monkeypatch):
    monkeypatch.setenv("ALPHANET_FAST_SIMD", path)
    a, b, g = _inputs(1, 2 * PIECE + 301, 37, 19, dtype)
    before = af.get_num_threads()
    runs = []
    try:
        for n, parallel in ((1, True), (2, True), (3, True), (2, False)):
            af.set_num_threads(n)
            runs.append(_both(a, b, g, parallel))
    finally:
        af.set_num_threads(before)
    _check_against_reference(a, b, g, *runs[0])
    for fwd, grad in runs[1:]:
        np.testing.assert_array_equal(fwd, runs[0][0])
        np.testing.assert_array_equal(grad, runs[0][1])


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(1, 3 * PIECE),
    f=st.sampled_from([1, 7, 16, 40, 3000]),
    h=st.integers(1, 24),
    dtype=st.sampled_from([np.float32, np.float64]),
    scale=st.sampled_from([1.0, 1e-30, 1e30]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_shapes_and_magnitudes_match_the_reference(k, f, h, dtype, scale, seed):
    if dtype == np.float32 and scale != 1.0:
        scale = 1e-15 if scale < 1 else 1e15  # far apart, still finite products in float32
    a, b, g = _inputs(seed, k, f, h, dtype, scale)
    fwd, grad = _both(a, b, g, parallel=True)
    _check_against_reference(a, b, g, fwd, grad)
    again = _both(a, b, g, parallel=False)
    np.testing.assert_array_equal(again[0], fwd)
    np.testing.assert_array_equal(again[1], grad)
    # a row-major: pieces of at most 1 MiB of it (gemm copies it at every call)
    rows = np.empty_like(grad)
    _core.thin_dot(a, g, rows, True)
    _check_against_reference(a, b, g, fwd, rows)
    again = np.empty_like(grad)
    _core.thin_dot(a, g, again, False)
    np.testing.assert_array_equal(again, rows)


def test_strided_views_are_read_in_place():
    a, b, g = _inputs(3, 3000, 20, 9, np.float32)
    a_view, b_view = a[::2, ::2], b[::2]
    fwd = np.empty((10, 9), dtype=np.float32)
    _core.thin_t_dot(a_view, b_view, fwd, True)
    _check_against_reference(a_view, b_view, g[::2], fwd, a_view @ g[::2])


def test_zero_rows_give_zeros():
    a, b, _ = _inputs(0, 0, 4, 3, np.float32)
    fwd = np.full((4, 3), np.nan, dtype=np.float32)
    _core.thin_t_dot(a, b, fwd, True)
    np.testing.assert_array_equal(fwd, 0.0)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda a, b, g: _core.thin_t_dot(a, b[1:], np.empty((5, 3), np.float32), True), "b"),
        (lambda a, b, g: _core.thin_t_dot(a, b, np.empty((3, 5), np.float32), True), "out"),
        (lambda a, b, g: _core.thin_t_dot(a, b, np.empty((3, 5), np.float32).T, True), "out"),
        (lambda a, b, g: _core.thin_dot(a, g[1:], np.empty((50, 3), np.float32), False), "g"),
        (lambda a, b, g: _core.thin_dot(a, g, np.empty((49, 3), np.float32), True), "out"),
    ],
)
def test_shapes_that_disagree_are_refused_with_the_argument_named(call, argument):
    a, b, g = _inputs(0, 50, 5, 3, np.float32)
    with pytest.raises(af.ArgumentError) as err:
        call(a, b, g)
    assert err.value.argument == argument


def test_mixed_dtypes_and_a_read_only_output_are_refused():
    a, b, g = _inputs(0, 50, 5, 3, np.float32)
    with pytest.raises(TypeError, match="out"):
        _core.thin_t_dot(a, b, np.empty((5, 3), np.float64), True)
    with pytest.raises(TypeError, match="b"):
        _core.thin_t_dot(a, b.astype(np.float64), np.empty((5, 3), np.float32), True)
    out = np.empty((5, 3), np.float32)
    out.flags.writeable = False
    with pytest.raises(Exception, match="writeable|read-only|readonly"):
        _core.thin_t_dot(a, b, out, True)
    with pytest.raises(Exception, match="borrow|alias|overlap|writeable|exclusive"):
        _core.thin_dot(a, g, a, True)  # the output may not be an input


def _loss_inputs(seed, rows, n_few, k, dtype, spread=1.0):
    rng = np.random.default_rng(seed)
    own = (rng.standard_normal((rows, n_few)) * spread).astype(dtype)
    nbs = (rng.standard_normal((rows, n_few * k)) * spread).astype(dtype)
    lse = (rng.standard_normal(rows) * spread + 2).astype(dtype)
    logit = rng.standard_normal(rows).astype(dtype)
    target = rng.integers(-1, n_few, rows).astype(np.int64)
    alphas = rng.standard_normal((n_few, k)).astype(dtype)
    bias = rng.standard_normal(n_few).astype(dtype)
    return own, nbs, lse, logit, target, alphas, bias


def _autograd_loss(own, nbs, lse, logit, target, alphas, bias, scale):
    arrays = {"own": own, "nbs": nbs, "lse": lse, "logit": logit, "alphas": alphas, "bias": bias}
    t = {n: torch.from_numpy(v).double() for n, v in arrays.items()}
    a = t["alphas"].requires_grad_()
    n, f = own.shape
    scores = (t["own"] + (t["nbs"].view(n, f, -1) * a).sum(2) + t["bias"]) * scale
    all_lse = torch.logsumexp(torch.cat([t["lse"][:, None], scores], dim=1), dim=1)
    tt = torch.from_numpy(target)
    few_target = scores.gather(1, tt.clamp_min(0)[:, None])[:, 0]
    loss = (all_lse - torch.where(tt >= 0, few_target, t["logit"])).mean()
    (grad,) = torch.autograd.grad(loss, a)
    return float(loss.detach()), grad.numpy()


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 70),
    n_few=st.integers(1, 30),
    k=st.integers(1, 6),
    dtype=st.sampled_from([np.float32, np.float64]),
    spread=st.sampled_from([1.0, 30.0, 300.0]),
    scale=st.sampled_from([1.0, 0.01, 7.5]),
    seed=st.integers(0, 2**32 - 1),
)
def test_few_loss_matches_autograd(rows, n_few, k, dtype, spread, scale, seed):
    args = _loss_inputs(seed, rows, n_few, k, dtype, spread)
    grad = np.full((n_few, k), np.nan, dtype=dtype)
    loss = _core.few_loss(*args[:7], scale, grad)
    want_loss, want_grad = _autograd_loss(*args, scale)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-12, atol=1e-12 * abs(want_loss) + 1e-300)
    # Both in float64 (the reference's softmax through exp(s - lse), ours through
    # exp(s - max) / sum: relative differences up to |lse| ulps), then rounded once
    # to the dtype.
    rtol = 1e-12 * (1 + abs(want_loss)) + 2 * np.finfo(dtype).eps
    atol = rtol * np.abs(want_grad).max() + 2 * np.finfo(dtype).smallest_subnormal
    np.testing.assert_allclose(grad, want_grad.astype(dtype), rtol=rtol, atol=atol)


def test_few_loss_lets_nan_through():
    args = list(_loss_inputs(0, 5, 4, 2, np.float32))
    args[5] = args[5].copy()
    args[5][1, 0] = np.nan  # a diverged coefficient
    grad = np.zeros((4, 2), dtype=np.float32)
    assert np.isnan(_core.few_loss(*args, 1.0, grad))


@pytest.mark.parametrize(
    ("position", "bad", "argument"),
    [
        (4, np.array([0, 1, 4, -1, 2], dtype=np.int64), "target_few"),
        (4, np.array([0, 1, -2, -1, 2], dtype=np.int64), "target_few"),
        (1, np.zeros((5, 7), dtype=np.float32), "neighbors"),
        (2, np.zeros(4, dtype=np.float32), "base_lse"),
        (5, np.zeros((3, 2), dtype=np.float32), "alphas"),
        (6, np.zeros(5, dtype=np.float32), "few_bias"),
    ],
)
def test_few_loss_refuses_bad_arguments_with_their_name(position, bad, argument):
    args = list(_loss_inputs(1, 5, 4, 2, np.float32))
    args[position] = bad
    with pytest.raises(af.ArgumentError) as err:
        _core.few_loss(*args, 1.0, np.zeros((4, 2), dtype=np.float32))
    assert err.value.argument == argument
    if argument == "target_few":
        assert err.value.row == 2


@settings(max_examples=30, deadline=None)
@given(
    rows=st.integers(1, 700),
    n_few=st.integers(1, 30),
    k=st.integers(1, 6),
    dtype=st.sampled_from([np.float32, np.float64]),
    ties=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_few_best_matches_the_reference_on_any_pool(rows, n_few, k, dtype, ties, seed):
    own, nbs, _, _, _, alphas, bias = _loss_inputs(seed, rows, n_few, k, dtype)
    if ties:  # whole numbers: equal scores are common, the first must win
        own, nbs, alphas, bias = (np.round(v * 2).astype(dtype) for v in (own, nbs, alphas, bias))
    scores = (own + (nbs.reshape(rows, n_few, k) * alphas).sum(2, dtype=np.float64) + bias) * 1.5
    runs = []
    before = af.get_num_threads()
    try:
        for n in (1, 3):
            af.set_num_threads(n)
            best, arg = np.empty(rows, dtype=dtype), np.empty(rows, dtype=np.int64)
            _core.few_best(own, nbs, alphas, bias, 1.5, best, arg)
            runs.append((best, arg))
    finally:
        af.set_num_threads(before)
    np.testing.assert_array_equal(runs[1][0], runs[0][0])
    np.testing.assert_array_equal(runs[1][1], runs[0][1])
    best, arg = runs[0]
    want = scores.max(axis=1)
    np.testing.assert_allclose(best, want, rtol=4 * np.finfo(dtype).eps, atol=1e-6)
    if ties:
        np.testing.assert_array_equal(arg, scores.argmax(axis=1))
    else:  # the class found scores the maximum (up to the rounding of the reference)
        picked = scores[np.arange(rows), arg]
        np.testing.assert_allclose(picked, want, rtol=1e-12, atol=1e-9)


def test_few_best_refuses_shapes_that_disagree():
    own, nbs, _, _, _, alphas, bias = _loss_inputs(0, 5, 4, 2, np.float32)
    best, arg = np.empty(5, dtype=np.float32), np.empty(5, dtype=np.int64)
    with pytest.raises(af.ArgumentError) as err:
        _core.few_best(own, nbs[:, :-1], alphas, bias, 1.0, best, arg)
    assert err.value.argument == "neighbors"
    with pytest.raises(af.ArgumentError) as err:
        _core.few_best(own, nbs, alphas, bias, 1.0, best, arg[:4])
    assert err.value.argument == "arg"
