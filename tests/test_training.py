"""correct(): the fast path against the naive computation, selection, API, errors, I/O."""

from __future__ import annotations

import io
import json
import os
import zipfile

import alphanet_fast as af
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from alphanet_fast import training
from alphanet_fast.model import AlphaNetwork, ChunkedLinear, build_network, few_scores
from alphanet_fast.splits import Splits
from alphanet_fast.training import _draw_epochs, _Frozen, _sample_losses, _windows

FAST = {"epochs": 6, "min_epochs": 2, "progress": False, "device": "cpu"}


def toy(seed=0, n_classes=12, d=6, counts=None, dtype=np.float32):
    """A small problem: few classes 0..2 (counts < 20), base classes the rest."""
    rng = np.random.default_rng(seed)
    if counts is None:
        counts = [3, 5, 8] + [25 + 10 * i for i in range(n_classes - 3)]
    counts = np.asarray(counts)
    labels = rng.permutation(np.repeat(np.arange(counts.size), counts))
    centres = rng.standard_normal((counts.size, d)) * 2
    x = (centres[labels] + rng.standard_normal((labels.size, d))).astype(dtype)
    W = (centres + 0.3 * rng.standard_normal(centres.shape)).astype(dtype)
    b = (0.1 * rng.standard_normal(counts.size)).astype(dtype)
    vy = np.repeat(np.arange(counts.size), 10)
    vx = (centres[vy] + rng.standard_normal((vy.size, d))).astype(dtype)
    return x, labels, W, b, vx, vy


def val_accuracy(x, y, W, b):
    return float(np.mean(np.argmax(x @ W.T + b, axis=1) == y))


# --------------------------------------------------------------------------- exactness


def naive_loss(x, y, W, b, few, nb, alphas, scale):
    """Full W', full logits over all classes, plain cross-entropy."""
    W_new = W.clone()
    W_new[few] = W[few] + torch.einsum("fk,fkd->fd", alphas, W[nb])
    return F.cross_entropy((x @ W_new.T + b) * scale, y)


@pytest.mark.parametrize("scale", [1.0, 7.5])
def test_fast_loss_and_gradients_equal_naive_in_float64(scale):
    torch.manual_seed(0)
    x, y, W, b, _, _ = toy(1, dtype=np.float64)
    few, nb = np.array([0, 1, 2]), np.array([[5, 3], [4, 7], [3, 9]])
    x_t, y_t, W_t, b_t = map(torch.from_numpy, (x, y, W, b))
    net = AlphaNetwork(3 * W.shape[1], 2, hidden=(8, 8)).double()
    stacks = W_t[torch.from_numpy(np.column_stack([few, nb]))].reshape(3, -1)

    alphas = net(stacks)
    naive = naive_loss(x_t, y_t, W_t, b_t, few, nb, alphas, scale)
    naive_grads = torch.autograd.grad(naive, list(net.parameters()))

    # Fast path: frozen per-sample quantities, computed once, without the network.
    scores = (x_t @ W_t.T + b_t) * scale
    is_few = torch.zeros(W.shape[0], dtype=torch.bool)
    is_few[few] = True
    base_lse = torch.logsumexp(scores.masked_fill(is_few, -torch.inf), dim=1)
    target_logit = scores.gather(1, y_t[:, None]).squeeze(1)
    few_index = torch.full((W.shape[0],), -1)
    few_index[few] = torch.arange(3)
    raw = x_t @ W_t.T
    alphas = net(stacks)
    few_logits = few_scores(raw[:, few], raw[:, nb], alphas, b_t[few], scale)
    fast = _sample_losses(few_logits, base_lse, target_logit, few_index[y_t]).mean()
    fast_grads = torch.autograd.grad(fast, list(net.parameters()))

    assert (few_index[y_t] >= 0).any() and (few_index[y_t] < 0).any()
    torch.testing.assert_close(fast, naive, rtol=1e-12, atol=1e-12)
    for g_fast, g_naive in zip(fast_grads, naive_grads):
        assert g_naive.abs().max() > 0
        torch.testing.assert_close(g_fast, g_naive, rtol=1e-10, atol=1e-12)


def _run_on(workers):
    """A ``run_all`` for ChunkedLinear: sequential, or on a pool of ``workers`` threads
    that take the pieces in reverse order (any order must give the same bits)."""
    from concurrent.futures import ThreadPoolExecutor

    def run_all(fn, items):
        items = list(items)[::-1]
        if workers == 1:
            for item in items:
                fn(item)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(fn, items))

    return run_all


@pytest.mark.parametrize("rows", [3, 37, 200])
def test_chunked_linear_matches_linear_and_ignores_the_workers(rows):
    gen = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, 301, generator=gen)
    layer = torch.nn.Linear(301, 9)
    grad = torch.randn(rows, 9, generator=gen)
    want = layer(x)
    want.backward(grad)
    want_w, want_b = layer.weight.grad.clone(), layer.bias.grad.clone()
    results = []
    for workers in (1, 2, 3):
        layer.zero_grad()
        out = ChunkedLinear.apply(x, layer.weight, layer.bias, _run_on(workers))
        out.backward(grad)
        results.append((out.detach(), layer.weight.grad.clone(), layer.bias.grad.clone()))
    for got in results:
        torch.testing.assert_close(got[0], want.detach(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got[1], want_w, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got[2], want_b, rtol=1e-6, atol=1e-6)
        for a, b in zip(got, results[0]):
            assert torch.equal(a, b)


def test_chunked_first_layer_in_correct_is_the_same_whatever_the_threads(monkeypatch):
    x, y, W, b, vx, vy = toy(23)
    kw = {**FAST, "val": (vx, vy)}
    plain = af.correct(x, y, W, b, **kw)
    monkeypatch.setattr(training, "CHUNKED_LAYER_BYTES", 0)  # every network is "large"
    threads = torch.get_num_threads()
    runs = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            runs.append(af.correct(x, y, W, b, **kw))
    finally:
        torch.set_num_threads(threads)
    for res in runs:
        np.testing.assert_array_equal(res.alphas, runs[0].alphas)
        np.testing.assert_array_equal(res.W, runs[0].W)
        assert res.history == runs[0].history
    np.testing.assert_allclose(runs[0].alphas, plain.alphas, rtol=1e-4, atol=1e-5)


def test_frozen_pipeline_matches_naive_in_float32():
    """The real frozen-score code (blocks, gathers, masks) against the naive loss."""
    x, y, W, b, _, _ = toy(2)
    few, nb = np.array([0, 1, 2]), np.array([[5, 3, 4], [4, 7, 3], [3, 9, 11]])
    scale = 3.0
    rows = np.sort(np.random.default_rng(0).choice(y.size, 150, replace=False))
    source_classes = np.unique(np.concatenate([few, nb.ravel()]))
    W_t, b_t = torch.from_numpy(W), torch.from_numpy(b)
    frozen = _Frozen(
        W_t,
        b_t,
        torch.from_numpy(few),
        torch.from_numpy(nb),
        torch.from_numpy(source_classes),
        scale,
        workers=2,
    )
    few_index = np.full(W.shape[0], -1)
    few_index[few] = np.arange(3)
    source, base_lse, target_logit, target_few = frozen.train(x, y, rows, few_index)

    net = build_network(4 * W.shape[1], 3, (16, 16), seed=3, device=torch.device("cpu"))
    stacks = W_t[torch.from_numpy(np.column_stack([few, nb]))].reshape(3, -1)
    own_cols = torch.from_numpy(np.searchsorted(source_classes, few))
    nb_cols = torch.from_numpy(np.searchsorted(source_classes, nb))
    alphas = net(stacks)
    scores = few_scores(source[:, own_cols], source[:, nb_cols], alphas, b_t[few], scale)
    fast = _sample_losses(scores, base_lse, target_logit, target_few).mean()
    fast_grads = torch.autograd.grad(fast, list(net.parameters()))

    naive = naive_loss(
        torch.from_numpy(x[rows]), torch.from_numpy(y[rows]), W_t, b_t, few, nb, net(stacks), scale
    )
    naive_grads = torch.autograd.grad(naive, list(net.parameters()))
    torch.testing.assert_close(fast, naive, rtol=1e-5, atol=1e-6)
    for g_fast, g_naive in zip(fast_grads, naive_grads):
        torch.testing.assert_close(g_fast, g_naive, rtol=1e-4, atol=1e-6)

    # The validation scores too: best base class and few/neighbour scores per row.
    own, nbs, base_max, base_arg = frozen.val(x[rows])
    full = (x[rows].astype(np.float64) @ W.T + b) * scale
    full[:, few] = -np.inf
    np.testing.assert_array_equal(base_arg.numpy(), np.argmax(full, axis=1))
    np.testing.assert_allclose(base_max.numpy(), full.max(axis=1), rtol=1e-5)
    np.testing.assert_allclose(own.numpy(), x[rows] @ W[few].T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        nbs.numpy(), np.einsum("nd,fkd->nfk", x[rows], W[nb]), rtol=1e-5, atol=1e-5
    )
    # Without the table: the same best base class, and the few scores from corrected rows.
    _, _, base_max2, base_arg2 = frozen.val(x[rows], sources=False)
    torch.testing.assert_close(base_max2, base_max, rtol=0, atol=0)
    torch.testing.assert_close(base_arg2, base_arg, rtol=0, atol=0)
    alphas = np.random.default_rng(1).standard_normal((3, 3)).astype(np.float32)
    few_W = W[few] + np.einsum("fk,fkd->fd", alphas, W[nb])
    best, arg = frozen.few_best(x[rows], torch.from_numpy(few_W), b_t[few])
    few_full = (x[rows].astype(np.float64) @ few_W.T.astype(np.float64) + b[few]) * scale
    np.testing.assert_array_equal(arg.numpy(), np.argmax(few_full, axis=1))
    np.testing.assert_allclose(best.numpy(), few_full.max(axis=1), rtol=1e-5, atol=1e-5)


def test_alphas_are_l1_normalised_and_applied_exactly():
    x, y, W, b, vx, vy = toy(3)
    res = af.correct(x, y, W, b, k=3, **FAST)
    assert res.alphas.shape == (3, 4) and res.alphas.dtype == np.float64
    np.testing.assert_array_equal(res.alphas[:, 0], 1.0)
    np.testing.assert_allclose(np.abs(res.alphas[:, 1:]).sum(axis=1), 1.0, rtol=1e-6)
    expected = W.astype(np.float64).copy()
    for f, nbrs, a in zip(res.few_classes, res.neighbors, res.alphas):
        expected[f] = a[0] * W[f] + a[1:] @ W[nbrs].astype(np.float64)
    np.testing.assert_allclose(res.W, expected, rtol=1e-6, atol=1e-6)
    base = res.splits.base
    np.testing.assert_array_equal(res.W[base], W[base])
    np.testing.assert_array_equal(res.b, b)
    np.testing.assert_array_equal(res.apply(W), res.W)


def naive_correct(
    features,
    labels,
    W,
    b,
    *,
    k=5,
    rho=1.0,
    epochs=25,
    batch_size=64,
    lr=1e-3,
    weight_decay=0.01,
    lr_step=10,
    lr_gamma=0.1,
    hidden=(32, 32, 32),
    val=None,
    min_epochs=5,
    seed=0,
):
    """The method without any shortcut: each step forms W' and scores the batch against all
    classes; validation scores every row against all of W'. Same draws and initial weights
    as correct(), so the two must agree up to float rounding. (Also the peer of the benchmark.)
    """
    counts = np.bincount(labels, minlength=W.shape[0])
    splits = af.splits_from_counts(counts)
    few, base = splits.few.copy(), splits.base
    means, _ = af.class_means(features, labels, W.shape[0])
    idx, _ = af.nearest_neighbors(means[few], means[base], k)
    nb = base[idx]
    sample_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    few_rows = np.flatnonzero(np.isin(labels, few))
    order = _draw_epochs(labels, few_rows, splits, counts, rho, epochs, sample_rng)
    W_t = torch.tensor(W, dtype=torch.float32)
    b_t = torch.tensor(b, dtype=torch.float32)
    nb_t = torch.from_numpy(nb)
    stacks = W_t[torch.from_numpy(np.column_stack([few, nb]))].reshape(few.size, -1)
    net = build_network(stacks.shape[1], k, hidden, seed=seed, device=torch.device("cpu"))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_step, gamma=lr_gamma)

    def corrected(alphas):
        W_new = W_t.clone()
        W_new[few] = W_t[few] + torch.einsum("fk,fkd->fd", alphas, W_t[nb_t])
        return W_new

    best, best_acc, losses = None, -1.0, []
    for epoch in range(1, epochs + 1):
        total = 0.0
        for lo in range(0, order.shape[1], batch_size):
            rows = order[epoch - 1, lo : lo + batch_size]
            x = torch.tensor(np.asarray(features[rows]), dtype=torch.float32)
            logits = x @ corrected(net(stacks)).T + b_t
            loss = F.cross_entropy(logits, torch.from_numpy(labels[rows]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * rows.size
        sched.step()
        losses.append(total / order.shape[1])
        with torch.no_grad():
            alphas = net(stacks)
            if val is None:
                best = alphas.double().numpy().copy()
                continue
            vx = torch.tensor(np.asarray(val[0]), dtype=torch.float32)
            pred = torch.argmax(vx @ corrected(alphas).T + b_t, dim=1).numpy()
            acc = float(np.mean(pred == val[1]))
            if epoch >= min(min_epochs, epochs) and acc > best_acc:
                best, best_acc = alphas.double().numpy().copy(), acc
    return np.hstack([np.ones((few.size, 1)), best]), losses


def test_whole_run_equals_the_naive_implementation():
    x, y, W, b, vx, vy = toy(23, n_classes=16)
    kwargs = dict(k=3, rho=1.5, epochs=8, batch_size=16, lr=3e-3, min_epochs=2, seed=5)
    res = af.correct(x, y, W, b, val=(vx, vy), progress=False, device="cpu", **kwargs)
    alphas, losses = naive_correct(x, y, W, b, val=(vx, vy), **kwargs)
    np.testing.assert_allclose([h["loss"] for h in res.history], losses, rtol=1e-5)
    np.testing.assert_allclose(res.alphas, alphas, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- the method's parts


def test_neighbors_are_the_nearest_base_classes_by_mean():
    x, y, W, b, _, _ = toy(4)
    for metric in ("euclidean", "cosine"):
        res = af.correct(x, y, W, b, k=4, metric=metric, **FAST)
        means = np.stack([x[y == c].mean(axis=0) for c in range(W.shape[0])]).astype(np.float64)
        base = res.splits.base
        for f, nbrs, dist in zip(res.few_classes, res.neighbors, res.neighbor_distances):
            if metric == "euclidean":
                d = np.linalg.norm(means[base] - means[f], axis=1)
            else:
                unit = means / np.linalg.norm(means, axis=1, keepdims=True)
                d = 1 - unit[base] @ unit[f]
            order = np.argsort(d, kind="stable")[:4]
            np.testing.assert_array_equal(nbrs, base[order])
            np.testing.assert_allclose(dist, d[order], rtol=1e-4, atol=1e-6)


def test_random_neighbors_are_seeded_distinct_base_classes():
    x, y, W, b, _, _ = toy(5, n_classes=20)
    a = af.correct(x, y, W, b, metric="random", seed=1, **FAST)
    again = af.correct(x, y, W, b, metric="random", seed=1, **FAST)
    other = af.correct(x, y, W, b, metric="random", seed=2, **FAST)
    np.testing.assert_array_equal(a.neighbors, again.neighbors)
    assert not np.array_equal(a.neighbors, other.neighbors)
    assert np.isin(a.neighbors, a.splits.base).all()
    assert all(len(set(row)) == row.size for row in a.neighbors)
    assert np.isnan(a.neighbor_distances).all()
    nearest = af.correct(x, y, W, b, seed=1, **FAST)
    assert not np.array_equal(a.neighbors, nearest.neighbors)


def test_sampler_draws_every_few_row_and_class_balanced_base_rows():
    rng = np.random.default_rng(0)
    counts = np.array([4, 9, 30, 60, 300, 1200])
    labels = rng.permutation(np.repeat(np.arange(6), counts))
    splits = af.splits_from_counts(counts)
    few_rows = np.flatnonzero(labels < 2)
    order = _draw_epochs(labels, few_rows, splits, counts, 2.5, 400, rng)
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
    short = _draw_epochs(labels, few_rows, splits, counts, 1.0, 3, rng_a)
    long = _draw_epochs(labels, few_rows, splits, counts, 1.0, 9, rng_b)
    np.testing.assert_array_equal(short, long[:3])


def test_history_and_learning_rate_schedule():
    x, y, W, b, vx, vy = toy(6)
    res = af.correct(
        x,
        y,
        W,
        b,
        epochs=12,
        lr_step=5,
        lr_gamma=0.5,
        lr=0.01,
        progress=False,
        val=(vx, vy),
        device="cpu",
    )
    assert [h["epoch"] for h in res.history] == list(range(1, 13))
    lrs = [h["lr"] for h in res.history]
    np.testing.assert_allclose(lrs, [0.01] * 5 + [0.005] * 5 + [0.0025] * 2)
    for h in res.history:
        assert np.isfinite(h["loss"]) and h["loss"] > 0
        assert set(h["val_top1"]) == {"few", "medium", "many", "overall"}
    assert res.config["lr_step"] == 5 and res.config["hidden"] == [32, 32, 32]


# --------------------------------------------------------------------------- selection


def test_best_epoch_is_the_real_best_and_its_alphas_are_a_copy():
    data = af.datasets.make_long_tail("small", seed=1)
    kwargs = dict(rho=0.5, epochs=15, min_epochs=3, progress=False, device="cpu", seed=4)
    res = af.correct(
        data.train_features,
        data.train_labels,
        data.W,
        data.b,
        val=(data.val_features, data.val_labels),
        **kwargs,
    )
    overall = np.array([h["val_top1"]["overall"] for h in res.history])
    eligible = overall.copy()
    eligible[:2] = -1
    assert res.best_epoch == int(np.argmax(eligible)) + 1
    # The case the original code got wrong: the best is neither the first eligible
    # epoch nor the last one, and it is strictly better than the first eligible.
    assert res.best_epoch not in (3, 15), "pick a seed where the best epoch is in between"
    assert overall[res.best_epoch - 1] > overall[2]

    # The kept alphas are those of the best epoch, not of the last: training for
    # exactly best_epoch epochs without validation (same draws) gives the same alphas.
    kwargs["epochs"] = res.best_epoch
    upto = af.correct(data.train_features, data.train_labels, data.W, data.b, **kwargs)
    np.testing.assert_array_equal(res.alphas, upto.alphas)
    full = af.correct(
        data.train_features, data.train_labels, data.W, data.b, **{**kwargs, "epochs": 15}
    )
    assert not np.allclose(full.alphas, res.alphas)

    # And the fast validation agrees with a plain argmax over the corrected classifier.
    acc = val_accuracy(data.val_features, data.val_labels, res.W, res.b)
    assert acc == pytest.approx(overall[res.best_epoch - 1], abs=2 / data.val_labels.size)


def test_without_validation_the_last_epoch_is_kept():
    x, y, W, b, _, _ = toy(7)
    res = af.correct(x, y, W, b, **FAST)
    assert res.best_epoch == FAST["epochs"]
    assert all("val_top1" not in h for h in res.history)


def test_min_epochs_beyond_epochs_keeps_the_last():
    x, y, W, b, vx, vy = toy(7)
    res = af.correct(x, y, W, b, epochs=3, min_epochs=5, val=(vx, vy), progress=False)
    assert res.best_epoch == 3


# --------------------------------------------------------------------------- determinism


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    data = af.datasets.make_long_tail("small", seed=0)
    args = (data.train_features, data.train_labels, data.W, data.b)
    kwargs = dict(val=(data.val_features, data.val_labels), epochs=8, progress=False, seed=3)
    cpu = af.correct(*args, device="cpu", **kwargs)
    gpu = af.correct(*args, device="cuda", **kwargs)
    again = af.correct(*args, device="cuda", **kwargs)
    np.testing.assert_array_equal(gpu.alphas, again.alphas)
    np.testing.assert_array_equal(cpu.neighbors, gpu.neighbors)
    for h_cpu, h_gpu in zip(cpu.history, gpu.history):
        assert h_gpu["loss"] == pytest.approx(h_cpu["loss"], rel=1e-4)
    # Selection may flip between two epochs of equal merit; compare the same epoch.
    same = af.correct(*args, device="cuda", **{**kwargs, "val": None})
    ref = af.correct(*args, device="cpu", **{**kwargs, "val": None})
    np.testing.assert_allclose(same.alphas, ref.alphas, rtol=1e-3, atol=2e-3)
    np.testing.assert_allclose(same.W, ref.W, rtol=1e-3, atol=2e-3)
    assert gpu.config["device"].startswith("cuda")


def test_device_auto_picks_what_torch_sees():
    x, y, W, b, _, _ = toy(9)
    res = af.correct(x, y, W, b, **{**FAST, "device": "auto"})
    assert res.config["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------- bounded memory


@pytest.fixture(scope="module")
def long_tail_small():
    return af.datasets.make_long_tail("small", seed=4)


def _record_frozen(monkeypatch):
    """Count the training-row scorings; record each feed's windows and buffer bytes."""
    seen = {"tables": [], "feeds": []}
    train, prepare = _Frozen.train, training._Feed.prepare

    def counted_train(self, x, labels, rows, *args, **kwargs):
        seen["tables"].append(rows.size)
        return train(self, x, labels, rows, *args, **kwargs)

    def recorded_prepare(self):
        seen["feeds"].append({"windows": self.n_windows, "bytes": self.nbytes()})
        return prepare(self)

    monkeypatch.setattr(_Frozen, "train", counted_train)
    monkeypatch.setattr(training._Feed, "prepare", recorded_prepare)
    return seen


def _frozen_sizes(res, batch_size=64):
    """Bytes of one batch's table rows (at most) and of one batch's gather buffers."""
    n_source = np.unique(np.concatenate([res.few_classes, res.neighbors.ravel()])).size
    k = res.neighbors.shape[1]
    row_bytes = training._table_row_bytes(n_source)
    step_bytes = training._step_bytes(n_source, res.few_classes.size, k)
    return batch_size * row_bytes, batch_size * step_bytes


def test_windowed_frozen_scores_give_the_same_result(long_tail_small, monkeypatch):
    d = long_tail_small
    args = (d.train_features, d.train_labels, d.W, d.b)
    kw = {**FAST, "epochs": 4, "val": (d.val_features, d.val_labels)}
    seen = _record_frozen(monkeypatch)
    whole = af.correct(*args, **kw)
    assert len(seen["tables"]) == 1  # small problem: one table, scored up front
    n_per_epoch = whole.counts[whole.few_classes].sum() * 2  # rho = 1
    assert n_per_epoch > 3 * 64  # so 3 batches' worth cuts windows inside epochs

    table_batch, gather_batch = _frozen_sizes(whole)
    monkeypatch.setattr(training, "FROZEN_BUDGET_BYTES", gather_batch + 3 * table_batch)
    seen["tables"].clear()
    windowed = af.correct(*args, **kw)
    # More windows than epochs: at least one window boundary falls inside an epoch.
    assert len(seen["tables"]) > kw["epochs"]
    np.testing.assert_allclose(windowed.alphas, whole.alphas, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(windowed.W, whole.W, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        [h["loss"] for h in windowed.history], [h["loss"] for h in whole.history], rtol=1e-5
    )
    assert windowed.best_epoch == whole.best_epoch
    assert [h["val_top1"] for h in windowed.history] == [h["val_top1"] for h in whole.history]
    assert windowed.timings["frozen_train"] > 0


def test_windowed_frozen_table_stays_within_the_budget(long_tail_small, monkeypatch):
    d = long_tail_small
    args = (d.train_features, d.train_labels, d.W, d.b)
    kw = {**FAST, "epochs": 3, "val": None}
    seen = _record_frozen(monkeypatch)
    whole = af.correct(*args, **kw)
    assert seen["feeds"][-1]["windows"] == 1
    up_front = seen["feeds"][-1]["bytes"]
    table_batch, gather_batch = _frozen_sizes(whole)
    for batches in (1, 2, 5):
        budget = gather_batch + batches * table_batch
        assert budget < up_front
        monkeypatch.setattr(training, "FROZEN_BUDGET_BYTES", budget)
        seen["feeds"].clear()
        res = af.correct(*args, **kw)
        (feed,) = seen["feeds"]
        assert feed["windows"] > 1
        # The table (sized for the largest window) and the gather buffers, all allocated.
        assert feed["bytes"] <= budget
        np.testing.assert_allclose(res.alphas, whole.alphas, rtol=1e-5, atol=1e-5)


def test_validation_recomputed_per_epoch_matches_the_frozen_table(long_tail_small, monkeypatch):
    d = long_tail_small
    args = (d.train_features, d.train_labels, d.W, d.b)
    kw = {**FAST, "epochs": 4, "score_scale": 2.0, "val": (d.val_features, d.val_labels)}
    frozen = af.correct(*args, **kw)
    calls = []
    few_best = _Frozen.few_best

    def counted(self, *a):
        calls.append(1)
        return few_best(self, *a)

    monkeypatch.setattr(_Frozen, "few_best", counted)
    monkeypatch.setattr(training, "VAL_BUDGET_BYTES", 0)
    streamed = af.correct(*args, **kw)
    assert len(calls) == kw["epochs"]  # the few columns, once per epoch
    # Training does not depend on validation; the accuracies are the same counts.
    np.testing.assert_array_equal(streamed.alphas, frozen.alphas)
    assert [h["val_top1"] for h in streamed.history] == [h["val_top1"] for h in frozen.history]
    assert streamed.best_epoch == frozen.best_epoch
    # And they are the corrected classifier's own accuracies at the kept epoch (up to
    # a near-tie or two: the returned W went through float64 and back).
    report = af.evaluate(d.val_features, d.val_labels, streamed.W, d.b, splits=streamed, k=1)
    kept = streamed.history[streamed.best_epoch - 1]["val_top1"]
    for split in ("few", "overall"):
        assert abs(kept[split] - report.accuracy[1][split]) <= 2 / d.val_labels.size


def test_windows_are_whole_batches_within_the_budget():
    rng = np.random.default_rng(0)
    epochs, n, batch = 4, 150, 16  # the last batch of each epoch is short (6 rows)
    order = rng.integers(0, 90, size=(epochs, n))  # rows recur within a window
    row_bytes = 40
    budget = 2000  # windows of 3-5 batches
    bounds, most = _windows(order, batch, row_bytes, budget)
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
    tiny, _ = _windows(order, batch, row_bytes, 1)
    np.testing.assert_array_equal(tiny, ordered)


# --------------------------------------------------------------------------- inputs


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


def test_few_class_without_samples_needs_user_neighbors():
    x, y, W, b, _, _ = toy(14, counts=[0, 5, 8, 30, 40, 50, 60, 70])
    with pytest.raises(ValueError, match=r"few class 0 has no training samples.*neighbors="):
        af.correct(x, y, W, b, k=2, **FAST)
    given = np.array([[3, 4], [5, 6], [7, 3]])
    res = af.correct(x, y, W, b, k=2, neighbors=given, **FAST)
    np.testing.assert_array_equal(res.neighbors, given)
    np.testing.assert_array_equal(res.few_classes, [0, 1, 2])
    assert np.isnan(res.neighbor_distances).all()
    assert not np.array_equal(res.W[0], W[0])  # corrected, though it had no samples
    assert res.config["metric"] == "given" and res.config["user_neighbors"] is True


@pytest.mark.parametrize(
    ("neighbors", "match"),
    [
        (np.array([[3, 4]]), r"neighbors: expected shape \(F, k\) = \(3, 2\)"),
        (np.array([[3, 4], [5, 6], [7, 99]]), r"neighbors: entry \(2, 1\) is 99"),
        (np.array([[3, 4], [5, 1], [7, 3]]), r"neighbors: entry \(1, 1\) is class 1, which is not"),
        (np.array([[3, 3], [5, 6], [7, 3]]), r"neighbors: row 0 \(few class 0\) repeats"),
    ],
)
def test_bad_user_neighbors(neighbors, match):
    x, y, W, b, _, _ = toy(14, counts=[0, 5, 8, 30, 40, 50, 60, 70])
    with pytest.raises(ValueError, match=match):
        af.correct(x, y, W, b, k=2, neighbors=neighbors, **FAST)


def test_no_base_class_is_an_error():
    x, y, W, b, _, _ = toy(15, counts=[3, 5, 8, 10])
    with pytest.raises(ValueError, match="base"):
        af.correct(x, y, W, b, **FAST)


def test_k_beyond_the_base_classes_is_an_error():
    x, y, W, b, _, _ = toy(16, counts=[3, 5, 30, 40])
    with pytest.raises(ValueError, match=r"k: expected at most 2 \(the number of base classes\)"):
        af.correct(x, y, W, b, k=3, **FAST)


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
        ((x, y, W, b), {"val": (vx[:, :4], vy)}, ValueError, r"val\[0\] \(features\): expected 6"),
        ((x, y, W, b), {"val": (vx, vy[:-2])}, ValueError, r"val\[1\] \(labels\): expected"),
        ((x, y, W, b), {"val": vx}, TypeError, r"val: expected a \(features, labels\) pair"),
        ((x, y, W, b), {"metric": "manhattan"}, ValueError, "metric: expected one of"),
        ((x, y, W, b), {"k": 0}, ValueError, "k: expected an integer in"),
        ((x, y, W, b), {"k": 2.5}, TypeError, "k: expected an integer"),
        ((x, y, W, b), {"rho": -1}, ValueError, "rho: expected a finite number >= 0"),
        ((x, y, W, b), {"lr": 0}, ValueError, "lr: expected a finite number > 0"),
        ((x, y, W, b), {"score_scale": float("nan")}, ValueError, "score_scale"),
        ((x, y, W, b), {"hidden": 32}, TypeError, "hidden: expected a sequence"),
        ((x, y, W, b), {"hidden": (32, 0)}, ValueError, r"hidden\[1\]"),
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


# --------------------------------------------------------------------------- progress


def test_progress_bar_only_when_asked_or_on_a_terminal(capsys, monkeypatch):
    x, y, W, b, vx, vy = toy(19)
    af.correct(x, y, W, b, val=(vx, vy), **{**FAST, "progress": True})
    err = capsys.readouterr().err
    assert "alphanet" in err and "epoch" in err and "val=" in err
    af.correct(x, y, W, b, **{**FAST, "progress": False})
    assert capsys.readouterr().err == ""
    af.correct(x, y, W, b, **{**FAST, "progress": None})  # stderr is captured: not a TTY
    assert capsys.readouterr().err == ""

    class FakeTTY(io.StringIO):
        def isatty(self):
            return True

    fake = FakeTTY()
    monkeypatch.setattr("sys.stderr", fake)
    af.correct(x, y, W, b, **{**FAST, "progress": None})
    assert "alphanet" in fake.getvalue()


# --------------------------------------------------------------------------- the result


def test_save_load_round_trip_without_pickle(tmp_path):
    x, y, W, b, vx, vy = toy(20)
    res = af.correct(x, y, W, b, val=(vx, vy), **FAST)
    path = tmp_path / "result.npz"
    res.save(path)
    assert os.listdir(tmp_path) == ["result.npz"]  # no temporary file left behind
    with zipfile.ZipFile(path) as zf:
        assert "meta.npy" in zf.namelist()
    with np.load(path, allow_pickle=False) as data:
        json.loads(str(data["meta"][()]))
    back = af.load_result(path)
    for name in ("W", "b", "alphas", "few_classes", "neighbors", "neighbor_distances", "counts"):
        got, want = getattr(back, name), getattr(res, name)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert back.history == res.history
    assert back.best_epoch == res.best_epoch
    assert back.config == res.config
    assert back.splits.to_dict() == res.splits.to_dict()
    np.testing.assert_array_equal(back.apply(W), res.W)
    assert back.summary() == res.summary()


def test_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    x, y, W, b, _, _ = toy(21)
    res = af.correct(x, y, W, b, **FAST)
    path = tmp_path / "result.npz"
    res.save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        res.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["result.npz"]


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.arange(3))
    with pytest.raises(ValueError, match="not an AlphaNet result"):
        af.load_result(path)
    np.savez(path, meta=np.array(json.dumps({"format": "something", "version": 9})))
    with pytest.raises(ValueError, match="expected format"):
        af.load_result(path)


def test_apply_checks_its_input_and_summary_reads_well():
    x, y, W, b, vx, vy = toy(22)
    res = af.correct(x, y, W, b, val=(vx, vy), **FAST)
    with pytest.raises(ValueError, match=r"W: expected 12 rows"):
        res.apply(W[:5])
    text = res.summary()
    assert "3 few classes corrected" in text and f"kept epoch {res.best_epoch}" in text
    assert "val top-1" in text
    assert "AlphaNetResult(" in repr(res)
    assert set(res.timings) >= {
        "checks",
        "means",
        "neighbors",
        "frozen_train",
        "frozen_val",
        "epochs",
        "validation",
        "final_update",
        "total",
    }


# --------------------------------------------------------------------------- splits


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
