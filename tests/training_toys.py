"""Small problems and the naive reference shared by the training tests (and by
``benches/test_bench_correct.py``, which loads this file by path)."""

from __future__ import annotations

import alphanet_fast as af
import numpy as np
import torch
import torch.nn.functional as F
from alphanet_fast.model import build_network
from alphanet_fast.training.sampling import draw_epochs

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
    order = draw_epochs(labels, few_rows, splits, rho, epochs, sample_rng)
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
