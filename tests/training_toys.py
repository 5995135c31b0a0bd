"""Small problems shared by the training tests."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

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
