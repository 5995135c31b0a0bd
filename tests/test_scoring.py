"""The frozen scores against the naive computation, and the bounded feed."""

from __future__ import annotations

import alphanet_fast as af
import numpy as np
import pytest
import torch
from alphanet_fast.model import build_network, few_scores
from alphanet_fast.training.sampling import (
    Budgets,
    step_bytes,
    table_row_bytes,
    using_budgets,
)
from alphanet_fast.training.scoring import Feed, FrozenScores
from alphanet_fast.training.trainer import sample_losses
from training_toys import FAST, naive_loss, toy


def test_frozen_pipeline_matches_naive_in_float32():
    """The real frozen-score code (blocks, gathers, masks) against the naive loss."""
    x, y, W, b, _, _ = toy(2)
    few, nb = np.array([0, 1, 2]), np.array([[5, 3, 4], [4, 7, 3], [3, 9, 11]])
    scale = 3.0
    rows = np.sort(np.random.default_rng(0).choice(y.size, 150, replace=False))
    source_classes = np.unique(np.concatenate([few, nb.ravel()]))
    W_t, b_t = torch.from_numpy(W), torch.from_numpy(b)
    frozen = FrozenScores(
        W_t,
        b_t,
        torch.from_numpy(few),
        torch.from_numpy(nb),
        torch.from_numpy(source_classes),
        scale,
        workers=2,
        budgets=Budgets(),
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
    fast = sample_losses(scores, base_lse, target_logit, target_few).mean()
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


@pytest.fixture(scope="module")
def long_tail_small():
    return af.datasets.make_long_tail("small", seed=4)


def _record_frozen(monkeypatch):
    """Count the training-row scorings; record each feed's windows and buffer bytes."""
    seen = {"tables": [], "feeds": []}
    train, prepare = FrozenScores.train, Feed.prepare

    def counted_train(self, x, labels, rows, *args, **kwargs):
        seen["tables"].append(rows.size)
        return train(self, x, labels, rows, *args, **kwargs)

    def recorded_prepare(self):
        seen["feeds"].append({"windows": self.n_windows, "bytes": self.nbytes()})
        return prepare(self)

    monkeypatch.setattr(FrozenScores, "train", counted_train)
    monkeypatch.setattr(Feed, "prepare", recorded_prepare)
    return seen


def _frozen_sizes(res, batch_size=64):
    """Bytes of one batch's table rows (at most) and of one batch's gather buffers."""
    n_source = np.unique(np.concatenate([res.few_classes, res.neighbors.ravel()])).size
    k = res.neighbors.shape[1]
    row_bytes = table_row_bytes(n_source)
    per_step = step_bytes(n_source, res.few_classes.size, k)
    return batch_size * row_bytes, batch_size * per_step


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
    seen["tables"].clear()
    budgets = Budgets(frozen=gather_batch + 3 * table_batch)
    with using_budgets(budgets):
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
        seen["feeds"].clear()
        with using_budgets(Budgets(frozen=budget)):
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
    few_best = FrozenScores.few_best

    def counted(self, *a):
        calls.append(1)
        return few_best(self, *a)

    monkeypatch.setattr(FrozenScores, "few_best", counted)
    with using_budgets(Budgets(val=0)):
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


def test_shared_val_scores_are_scored_once_per_classifier(monkeypatch):
    """Within sharing_val_scores, a second run on the same classifier and validation
    set (another rho) reuses the validation scores, with the same result as alone;
    another classifier, or the same one changed in place, is scored again. (As in
    compare(), the tau-norm check, which must see the scores, is skipped.)"""
    from alphanet_fast.baselines.self_check import skipping
    from alphanet_fast.training import scoring

    x, y, W, b, vx, vy = toy(4)
    kw = {**FAST, "val": (vx, vy)}
    alone = {rho: af.correct(x, y, W, b, rho=rho, **kw) for rho in (0.5, 1.5)}
    scored = []
    original = scoring.FrozenScores._val
    monkeypatch.setattr(
        scoring.FrozenScores, "_val", lambda self, *a: scored.append(1) or original(self, *a)
    )
    with skipping(), scoring.sharing_val_scores():
        shared = {rho: af.correct(x, y, W, b, rho=rho, **kw) for rho in (0.5, 1.5)}
        assert len(scored) == 1
        W2 = W.copy()
        W2[5] += 0.25  # a base row: the same few classes and neighbours
        af.correct(x, y, W2, b, **kw)
        assert len(scored) == 2
        W2[5] -= 0.25  # back to W's values, in place: equal contents are reused
        W2[6] += 0.25
        af.correct(x, y, W2, b, **kw)
        assert len(scored) == 3
    with skipping():
        af.correct(x, y, W, b, **kw)  # outside the block: scored alone
    assert len(scored) == 4
    for rho in (0.5, 1.5):
        np.testing.assert_array_equal(shared[rho].W, alone[rho].W)
        assert shared[rho].history == alone[rho].history
