"""The hand-written training step against autograd, on the Rust products and on torch's."""

from __future__ import annotations

import alphanet_fast as af
import numpy as np
import pytest
import torch
from alphanet_fast.model import build_network, few_scores
from alphanet_fast.training.network import FewNetwork, stacks_transposed
from alphanet_fast.training.trainer import sample_losses


def _batch(n_few, k, rows, gen, dtype):
    own = torch.randn(rows, n_few, generator=gen, dtype=dtype)
    nbs = torch.randn(rows, n_few, k, generator=gen, dtype=dtype)
    lse = torch.randn(rows, generator=gen, dtype=dtype) + 2
    logit = torch.randn(rows, generator=gen, dtype=dtype)
    target_few = torch.randint(-1, n_few, (rows,), generator=gen)
    target_few[:2] = torch.tensor([-1, 0])  # both kinds of target
    return own, nbs, lse, logit, target_few


def _autograd(stacks, k, hidden, seed, batch, bias, scale):
    net = build_network(stacks.shape[1], k, hidden, seed=seed, device=torch.device("cpu"))
    net = net.to(stacks.dtype)
    own, nbs, lse, logit, target_few = batch
    scores = few_scores(own, nbs, net(stacks), bias, scale)
    loss = sample_losses(scores, lse, logit, target_few).mean()
    grads = torch.autograd.grad(loss, list(net.parameters()))
    # The hand-written network keeps the first layer's weight transposed.
    return loss, [grads[0].T, *grads[1:]], net


@pytest.mark.parametrize(
    ("hidden", "native", "scale"),
    [
        ((8, 8), False, 1.0),
        ((8, 8), True, 7.5),
        ((), True, 1.0),
        ((5, 3, 4), True, 0.5),
        ((8, 8), "no copy", 1.0),  # the weight gradient read from the input itself
    ],
)
def test_hand_written_step_equals_autograd_in_float64(hidden, native, scale, monkeypatch):
    from alphanet_fast.training import network

    if native == "no copy":
        monkeypatch.setattr(network, "ROWS_COPY_BYTES", 0)
    gen = torch.Generator().manual_seed(len(hidden))
    n_few, k, d = 7, 3, 37
    stacks = torch.randn(n_few, (k + 1) * d, generator=gen, dtype=torch.float64)
    batch = _batch(n_few, k, 11, gen, torch.float64)
    bias = torch.randn(n_few, generator=gen, dtype=torch.float64)
    want_loss, want_grads, net = _autograd(stacks, k, hidden, 4, batch, bias, scale)
    with FewNetwork(stacks.T.contiguous(), k, hidden, seed=4, workers=2) as fn:
        if not native:  # torch's products, as on CUDA
            fn._native = None
        torch.testing.assert_close(fn.alphas(), net(stacks).detach(), rtol=1e-13, atol=1e-15)
        loss = fn.step_loss(batch, bias, scale)
        torch.testing.assert_close(loss, want_loss.detach(), rtol=1e-13, atol=1e-15)
        for got, want in zip(fn.grads, want_grads, strict=True):
            assert want.abs().max() > 0
            torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-14)


def test_a_zero_output_row_takes_the_norm_floor_as_autograd_does():
    """At ``a == 0`` F.normalize divides by its floor; the gradient must follow it."""
    gen = torch.Generator().manual_seed(9)
    n_few, k, d = 4, 2, 5
    stacks = torch.randn(n_few, (k + 1) * d, generator=gen, dtype=torch.float64)
    stacks[1] = 0.0
    batch = _batch(n_few, k, 6, gen, torch.float64)
    bias = torch.zeros(n_few, dtype=torch.float64)
    net = build_network(stacks.shape[1], k, (), seed=1, device=torch.device("cpu")).double()
    with torch.no_grad():
        net.layers[0].bias.zero_()
    own, nbs, lse, logit, target_few = batch
    loss = sample_losses(few_scores(own, nbs, net(stacks), bias, 1.0), lse, logit, target_few)
    want = torch.autograd.grad(loss.mean(), list(net.parameters()))
    with FewNetwork(stacks.T.contiguous(), k, (), seed=1, workers=1) as fn:
        fn.params[1].zero_()
        fn.step_loss(batch, bias, 1.0)
        assert fn.alphas()[1].abs().max() == 0
        torch.testing.assert_close(fn.grads[0], want[0].T, rtol=1e-11, atol=1e-14)
        torch.testing.assert_close(fn.grads[1], want[1], rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("n_in", [40, 1024, 2 * 1024 + 301])
def test_the_products_give_the_same_bits_on_any_pool_or_the_calling_thread(n_in):
    from alphanet_fast import _core

    assert _core.THIN_PIECE_ROWS == 1024  # the sizes above: one piece, one, three
    gen = torch.Generator().manual_seed(n_in)
    n_few, k = 13, 4
    stacks_t = torch.randn(n_in, n_few, generator=gen)
    batch = _batch(n_few, k, 9, gen, torch.float32)
    bias = torch.randn(n_few, generator=gen)
    runs = []
    kernel_threads = af.get_num_threads()
    try:
        for workers, shared in ((1, False), (2, True), (2, False), (3, True)):
            af.set_num_threads(workers)
            with FewNetwork(stacks_t, k, (6,), seed=2, workers=workers) as fn:
                fn._runner.next_way = lambda shared=shared: shared
                losses = [fn.step_loss(batch, bias, 1.0).clone() for _ in range(2)]
                runs.append((fn.alphas(), *losses, *[g.clone() for g in fn.grads]))
    finally:
        af.set_num_threads(kernel_threads)
    for run in runs[1:]:
        for got, want in zip(run, runs[0], strict=True):
            assert torch.equal(got, want)


def test_stacks_transposed_and_the_corrected_rows():
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(9, 4, generator=gen)
    sources = torch.tensor([[0, 3, 5], [2, 8, 1]])
    st = stacks_transposed(W, sources)
    np.testing.assert_array_equal(st.T.numpy(), W[sources].reshape(2, -1).numpy())
    alphas = torch.tensor([[0.25, -0.75], [1.0, 0.0]])
    with FewNetwork(st, 2, (3,), seed=0, workers=1) as fn:
        rows = fn.corrected_few_rows(alphas)
    want = W[sources[:, 0]] + torch.einsum("fk,fkd->fd", alphas, W[sources[:, 1:]])
    torch.testing.assert_close(rows, want, rtol=1e-6, atol=1e-6)
