"""correct() against an independent AlphaNet written here from the paper alone.

The reference below imports nothing from the package: its own splits, class means
(float64 numpy), exact nearest neighbours (numpy), class-balanced sampler, network
(``nn.Sequential`` of ``Linear`` and ``LeakyReLU(0.01)`` with PyTorch's default
initialisation), signed L1 normalisation with the own coefficient fixed at 1,
softmax cross-entropy over every class from the full corrected logits, torch's own
``AdamW`` and ``StepLR``, and the best validation epoch at or after ``min_epochs``.

Where the draws can be shared (the reference asks the same numpy generator for the
same numbers in the same order, and seeds torch the same way for the
initialisation), ``correct()`` must agree with it to float rounding. Where they
cannot (the reference's own generator), the two must give the same rare-class
gains on average over several seeds. The network is also pinned directly: with a
learning rate of 1e-12 the alphas ``correct()`` returns are those of the
initialised network.

Mutations of the package these tests catch (``python benches/mutations.py``
applies each to a copy of the package and runs the tests; its table):

============================  ==================================================
mutation                      failing tests (as ``benches/mutations.py`` printed)
============================  ==================================================
softmax instead of signed L1  test_correct_equals_the_reference_with_shared_draws
                              (all 3 cases), test_initial_network_is_the_papers
                              (both), test_alphas_are_signed_and_l1_normalised,
                              test_gains_match_the_reference_with_its_own_draws,
                              test_method.py::test_few_accuracy_rises_about_18_
                              points_and_overall_moves_far_less
ReLU instead of LeakyReLU     test_correct_equals_the_reference_with_shared_draws
                              (all 3), test_initial_network_is_the_papers (both)
uniform-by-row base sampler   test_correct_equals_the_reference_with_shared_draws
                              (all 3)
last epoch instead of best    test_the_best_validation_epoch_is_kept,
                              test_correct_equals_the_reference_with_shared_draws
                              [k3-rho0.5-scale]
farthest neighbours           test_correct_equals_the_reference_with_shared_draws
                              (all 3), test_method.py::test_neighbors_come_from_
                              the_same_group
============================  ==================================================
"""

from __future__ import annotations

import functools

import alphanet_fast as af
import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

# --------------------------------------------------------------------------- data


def long_tail(seed, n_groups=6, per_group=6, d=12, few_per_group=2):
    """Classes in groups of close centres; the first ``few_per_group`` of each group are
    rare. The classifier scores ``-|x - w_c|^2 / 8`` (as ``x . W_c + b_c``) with the
    base classes' own centres, but a rare class's ``w_c`` is pulled towards its group's
    centre and shrunk, as too few samples leave it; its group mates are its nearest
    base classes, so AlphaNet has something to correct."""
    rng = np.random.default_rng(seed)
    n_classes = n_groups * per_group
    group_of = np.arange(n_classes) // per_group
    group_centres = rng.standard_normal((n_groups, d)) * 3.0
    centres = group_centres[group_of] + rng.standard_normal((n_classes, d))
    rare = (np.arange(n_classes) % per_group) < few_per_group
    counts = np.where(rare, rng.integers(3, 12, n_classes), rng.integers(30, 160, n_classes))
    labels = rng.permutation(np.repeat(np.arange(n_classes), counts))
    x = (centres[labels] + rng.standard_normal((labels.size, d))).astype(np.float32)
    w = centres.copy()
    w[rare] = 0.6 * (0.5 * centres[rare] + 0.5 * group_centres[group_of[rare]])
    W = (w / 4).astype(np.float32)
    b = (-(w**2).sum(axis=1) / 8).astype(np.float32)
    vy = np.repeat(np.arange(n_classes), 8)
    vx = (centres[vy] + rng.standard_normal((vy.size, d))).astype(np.float32)
    ty = np.repeat(np.arange(n_classes), 30)
    tx = (centres[ty] + rng.standard_normal((ty.size, d))).astype(np.float32)
    return x, labels, W, b, (vx, vy), (tx, ty)


# --------------------------------------------------------------------------- the reference


def reference_network(in_features, k, hidden, seed):
    """The paper's network: Linear -> LeakyReLU(0.01) -> ... -> Linear(h, k), PyTorch's
    default initialisation drawn after ``torch.manual_seed(seed)``."""
    widths = [in_features, *hidden, k]
    layers = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i, (a, c) in enumerate(zip(widths[:-1], widths[1:])):
            if i:
                layers.append(nn.LeakyReLU(0.01))
            layers.append(nn.Linear(a, c))
    return nn.Sequential(*layers)


def signed_l1(out):
    """Outputs divided by their L1 norm: signed, summing to 1 in absolute value."""
    return out / out.abs().sum(dim=1, keepdim=True)


def reference_neighbors(x, y, n_classes, few, base, k, farthest=False):
    means = np.zeros((n_classes, x.shape[1]))
    for c in range(n_classes):
        means[c] = x[y == c].astype(np.float64).mean(axis=0)
    # One few class at a time: the (F, B, d) differences of a large problem would not fit.
    dist = np.stack([((means[base] - means[f]) ** 2).sum(axis=1) for f in few])
    order = np.argsort(-dist if farthest else dist, axis=1, kind="stable")
    return base[order[:, :k]]


def shared_draws(y, few_rows, base, counts, n_base, epochs, seed):
    """correct()'s generator, asked for the same numbers: per epoch a base class
    uniformly, then a row of it uniformly (rows of a class in file order), then a
    shuffle of the few rows and the drawn rows."""
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
    rows_of = [np.flatnonzero(y == c) for c in base]
    out = []
    for _ in range(epochs):
        cls = rng.integers(0, base.size, size=n_base)
        pick = rng.integers(0, counts[base][cls])
        drawn = np.array([rows_of[c][i] for c, i in zip(cls, pick)], dtype=np.int64)
        out.append(rng.permutation(np.concatenate([few_rows, drawn])))
    return out


def own_draws(y, few_rows, base, counts, n_base, epochs, seed):
    """An independent class-balanced sampler: each base row drawn with weight 1 / n_class."""
    rng = np.random.default_rng([seed, 12345])
    is_base = np.isin(y, base)
    weights = np.where(is_base, 1.0 / counts[y], 0.0)
    weights /= weights.sum()
    out = []
    for _ in range(epochs):
        drawn = rng.choice(y.size, size=n_base, p=weights)
        out.append(rng.permutation(np.concatenate([few_rows, drawn])))
    return out


def reference_alphanet(
    x,
    y,
    W,
    b,
    *,
    val,
    k=5,
    rho=1.0,
    epochs=25,
    batch_size=64,
    lr=1e-3,
    weight_decay=0.01,
    lr_step=10,
    lr_gamma=0.1,
    hidden=(32, 32, 32),
    few_below=20,
    many_above=100,
    score_scale=1.0,
    min_epochs=5,
    seed=0,
    draws=shared_draws,
    init_seed=None,
):
    """AlphaNet from the paper, without shortcuts: every step forms the corrected
    classifier and scores the batch against every class."""
    n_classes = W.shape[0]
    counts = np.bincount(y, minlength=n_classes)
    few = np.flatnonzero(counts < few_below)
    base = np.flatnonzero(counts >= few_below)
    nb = reference_neighbors(x, y, n_classes, few, base, k)
    few_rows = np.flatnonzero(np.isin(y, few))
    order = draws(y, few_rows, base, counts, int(round(rho * few_rows.size)), epochs, seed)

    W_t, b_t = torch.tensor(W, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
    stacks = W_t[torch.from_numpy(np.column_stack([few, nb]))].reshape(few.size, -1)
    net = reference_network(stacks.shape[1], k, hidden, seed if init_seed is None else init_seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_step, gamma=lr_gamma)

    few_t, nb_t = torch.from_numpy(few), torch.from_numpy(nb)

    def corrected(alphas):
        W_new = W_t.clone()
        W_new[few_t] = W_t[few_t] + torch.einsum("fk,fkd->fd", alphas, W_t[nb_t])
        return W_new

    vx, vy = torch.tensor(val[0], dtype=torch.float32), val[1]
    best, best_acc, best_epoch, losses = None, -1.0, 0, []
    for epoch in range(1, epochs + 1):
        total = 0.0
        for lo in range(0, order[epoch - 1].size, batch_size):
            rows = order[epoch - 1][lo : lo + batch_size]
            W_new = corrected(signed_l1(net(stacks)))
            logits = (torch.from_numpy(x[rows]) @ W_new.T + b_t) * score_scale
            loss = F.cross_entropy(logits, torch.from_numpy(y[rows]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * rows.size
        sched.step()
        losses.append(total / order[epoch - 1].size)
        with torch.no_grad():
            alphas = signed_l1(net(stacks))
            acc = float(np.mean(torch.argmax(vx @ corrected(alphas).T + b_t, 1).numpy() == vy))
        if epoch >= min(min_epochs, epochs) and acc > best_acc:
            best, best_acc, best_epoch = alphas.double().numpy(), acc, epoch
    alphas = np.hstack([np.ones((few.size, 1)), best])
    W_new = W.astype(np.float64)
    W_new[few] = W_new[few] + np.einsum("fk,fkd->fd", best, W_new[nb])
    return dict(
        few=few,
        neighbors=nb,
        alphas=alphas,
        W=W_new.astype(W.dtype),
        best_epoch=best_epoch,
        losses=losses,
    )


def split_gain(W_new, W, b, test, few):
    """Few-split top-1 gain of ``W_new`` over ``W`` on a balanced test set."""
    tx, ty = test
    before = np.argmax(tx @ W.T + b, axis=1) == ty
    after = np.argmax(tx @ W_new.T + b, axis=1) == ty
    rare = np.isin(ty, few)
    return float(after[rare].mean() - before[rare].mean())


# --------------------------------------------------------------------------- shared draws

CASES = {
    "defaults": dict(epochs=8, lr=3e-3, min_epochs=2),
    "k3-rho0.5-scale": dict(k=3, rho=0.5, epochs=7, batch_size=16, score_scale=2.0, lr=3e-3),
    "one-hidden": dict(k=4, rho=1.5, epochs=6, batch_size=32, hidden=(16,), lr_step=2, lr=1e-2),
}


@functools.cache
def shared_case(case):
    kwargs = dict(CASES[case], seed=4)
    x, y, W, b, val, _ = long_tail(7)
    res = af.correct(x, y, W, b, val=val, progress=False, device="cpu", **kwargs)
    return res, reference_alphanet(x, y, W, b, val=val, **kwargs)


@pytest.mark.parametrize("case", list(CASES))
def test_correct_equals_the_reference_with_shared_draws(case):
    res, ref = shared_case(case)
    np.testing.assert_array_equal(res.few_classes, ref["few"])
    np.testing.assert_array_equal(res.neighbors, ref["neighbors"])
    np.testing.assert_allclose([h["loss"] for h in res.history], ref["losses"], rtol=1e-5)
    assert res.best_epoch == ref["best_epoch"]
    np.testing.assert_allclose(res.alphas, ref["alphas"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.W, ref["W"], rtol=1e-4, atol=1e-5)


def test_a_shared_draws_case_selects_an_epoch_before_the_last():
    # Otherwise keeping the last epoch instead of the best would go unnoticed above.
    chosen = {case: shared_case(case)[1]["best_epoch"] for case in CASES}
    assert any(chosen[case] < CASES[case]["epochs"] for case in CASES), chosen


def test_the_best_validation_epoch_is_kept():
    """The first epoch of the highest validation accuracy at or after ``min_epochs``, with
    that epoch's alphas: a run stopped there (no validation) gives the same bits, as the
    draws of the first epochs do not depend on the total."""
    x, y, W, b, val, _ = long_tail(7)
    kwargs = dict(k=3, epochs=12, lr=1e-2, batch_size=16, progress=False, device="cpu", seed=1)
    res = af.correct(x, y, W, b, val=val, min_epochs=3, **kwargs)
    overall = [h["val_top1"]["overall"] for h in res.history]
    assert res.best_epoch == 3 + int(np.argmax(overall[2:]))
    assert res.best_epoch < 12, overall  # else keeping the last epoch would pass
    stopped = af.correct(x, y, W, b, **{**kwargs, "epochs": res.best_epoch})
    np.testing.assert_array_equal(res.alphas, stopped.alphas)
    np.testing.assert_array_equal(res.W, stopped.W)


# --------------------------------------------------------------------------- the network


def initial_alphas(x, y, W, b, **kwargs):
    """correct()'s alphas after one epoch at a learning rate of 1e-12 and no weight
    decay: those of the network as initialised, to ~1e-9."""
    res = af.correct(
        x,
        y,
        W,
        b,
        epochs=1,
        min_epochs=1,
        lr=1e-12,
        weight_decay=0.0,
        progress=False,
        device="cpu",
        **kwargs,
    )
    return res


@pytest.mark.parametrize("hidden", [None, (7, 5)])
def test_initial_network_is_the_papers(hidden):
    """Layer widths ((k+1)d -> 32 -> 32 -> 32 -> k by default), LeakyReLU(0.01), signed
    L1 normalisation and PyTorch's default initialisation from the seed."""
    x, y, W, b, _, _ = long_tail(3)
    extra = {} if hidden is None else {"hidden": hidden}
    res = initial_alphas(x, y, W, b, k=4, seed=11, **extra)
    stacks = torch.from_numpy(W[np.column_stack([res.few_classes, res.neighbors])])
    stacks = stacks.reshape(res.few_classes.size, -1)
    net = reference_network(stacks.shape[1], 4, hidden or (32, 32, 32), seed=11)
    with torch.no_grad():
        want = signed_l1(net(stacks)).double().numpy()
    np.testing.assert_allclose(res.alphas[:, 1:], want, rtol=1e-5, atol=1e-7)
    # The comparison can tell the paper's network from near variants.
    relu = nn.Sequential(*(nn.ReLU() if isinstance(m, nn.LeakyReLU) else m for m in net))
    with torch.no_grad():
        for other in (signed_l1(relu(stacks)), torch.softmax(net(stacks), dim=1)):
            assert np.abs(other.double().numpy() - want).max() > 1e-4


def test_alphas_are_signed_and_l1_normalised():
    x, y, W, b, val, _ = long_tail(5)
    for res in (
        initial_alphas(x, y, W, b, seed=2),
        af.correct(x, y, W, b, val=val, epochs=4, min_epochs=1, progress=False, device="cpu"),
    ):
        assert (res.alphas[:, 0] == 1.0).all()
        np.testing.assert_allclose(np.abs(res.alphas[:, 1:]).sum(axis=1), 1.0, rtol=1e-6)
        assert (res.alphas[:, 1:] < 0).any() and (res.alphas[:, 1:] > 0).any()
        # The corrected rows are the own row plus the signed combination, nothing else.
        want = W[res.few_classes] + np.einsum(
            "fk,fkd->fd", res.alphas[:, 1:], W[res.neighbors].astype(np.float64)
        )
        np.testing.assert_allclose(res.W[res.few_classes], want, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- own draws

SEEDS = range(12)


def test_gains_match_the_reference_with_its_own_draws():
    """Different draws and initial weights: the same method gives the same rare-class
    gain on average (12 seeds; measured: 36.8 and 37.2 points, standard error of
    the difference 4.9), and both gain."""
    ours, theirs = [], []
    kwargs = dict(k=3, rho=0.5, epochs=20, batch_size=32, lr=1e-2, min_epochs=3)
    for seed in SEEDS:
        x, y, W, b, val, test = long_tail(100 + seed)
        res = af.correct(x, y, W, b, val=val, seed=seed, progress=False, device="cpu", **kwargs)
        ref = reference_alphanet(
            x, y, W, b, val=val, seed=seed, draws=own_draws, init_seed=1000 + seed, **kwargs
        )
        ours.append(split_gain(res.W, W, b, test, res.few_classes))
        theirs.append(split_gain(ref["W"], W, b, test, ref["few"]))
    ours, theirs = np.array(ours), np.array(theirs)
    spread = np.sqrt((ours.var(ddof=1) + theirs.var(ddof=1)) / len(SEEDS))
    assert ours.mean() > 0.2 and theirs.mean() > 0.2, (ours, theirs)
    assert abs(ours.mean() - theirs.mean()) < 3 * spread, (ours, theirs)


# --------------------------------------------------------------------------- CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_agrees_with_the_cpu():
    """What the device changes: the training steps, the validation scores, the epoch
    chosen and the alphas (neighbours come from the CPU kernels on either device)."""
    x, y, W, b, val, _ = long_tail(9)
    kwargs = dict(val=val, k=3, epochs=8, min_epochs=2, lr=3e-3, progress=False, seed=3)
    cpu = af.correct(x, y, W, b, device="cpu", **kwargs)
    gpu = af.correct(x, y, W, b, device="cuda", **kwargs)
    again = af.correct(x, y, W, b, device="cuda", **kwargs)
    assert gpu.config["device"].startswith("cuda")
    np.testing.assert_array_equal(gpu.alphas, again.alphas)
    n_val = val[1].size
    for h_cpu, h_gpu in zip(cpu.history, gpu.history):
        assert h_gpu["loss"] == pytest.approx(h_cpu["loss"], rel=1e-4)
        # At most one validation row may flip between devices in an epoch.
        for split, acc in h_cpu["val_top1"].items():
            assert abs(h_gpu["val_top1"][split] - acc) <= 1.0 / n_val + 1e-12
    chosen = [h["val_top1"]["overall"] for h in cpu.history]
    # The same epoch, or one the CPU rates as good as the one it chose.
    assert chosen[gpu.best_epoch - 1] >= chosen[cpu.best_epoch - 1] - 1.0 / n_val
    if gpu.best_epoch == cpu.best_epoch:
        np.testing.assert_allclose(gpu.alphas, cpu.alphas, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(gpu.W, cpu.W, rtol=1e-3, atol=1e-4)
    fixed = {**kwargs, "val": None}
    last_gpu = af.correct(x, y, W, b, device="cuda", **fixed)
    last_cpu = af.correct(x, y, W, b, device="cpu", **fixed)
    np.testing.assert_allclose(last_gpu.alphas, last_cpu.alphas, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(last_gpu.W, last_cpu.W, rtol=1e-3, atol=1e-4)
