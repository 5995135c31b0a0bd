"""The training loop: steps on the frozen scores, validation, the best epoch, history.

* :class:`Validator`: each epoch's top-1 accuracy per split, from the frozen
  validation scores (or, above ``Budgets.val``, recomputed from the corrected
  few rows).
* :func:`train`: the epochs (steps over a :class:`~.scoring.Feed`, each one
  :meth:`~.network.FewNetwork.step_loss` and an AdamW update), the history and
  the choice of the epoch whose coefficients are kept.

The network and its hand-written step are in :mod:`.network`.
"""

from __future__ import annotations

import functools
import math
import sys
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from alphanet_fast import _core
from alphanet_fast._errors import fail
from alphanet_fast._optim import AdamW
from alphanet_fast.model import few_scores
from alphanet_fast.splits import SPLIT_NAMES, Splits
from alphanet_fast.training.network import FewNetwork
from alphanet_fast.training.sampling import Budgets
from alphanet_fast.training.scoring import Feed, FrozenScores, val_table_bytes
from alphanet_fast.training.stopwatch import Stopwatch

__all__ = [
    "Validator",
    "make_optimizer",
    "sample_losses",
    "train",
]


def sample_losses(
    few_logits: torch.Tensor,
    base_lse: torch.Tensor,
    target_logit: torch.Tensor,
    target_few: torch.Tensor,
) -> torch.Tensor:
    """Cross-entropy over all C classes from frozen base quantities and the few logits.

    ``logsumexp(all) = logsumexp([logsumexp(base), few_1, ..., few_F])``, exactly.
    ``target_few`` is the target's index among the few classes, -1 for a base
    target, whose logit is then ``target_logit``.
    """
    all_lse = torch.logsumexp(torch.cat([base_lse[:, None], few_logits], dim=1), dim=1)
    is_few = target_few >= 0
    # A one-hot product instead of gather: its backward has no scatter, so CUDA
    # results are bitwise repeatable.
    onehot = F.one_hot(target_few.clamp_min(0), few_logits.shape[1]).to(few_logits.dtype)
    few_target = (few_logits * onehot).sum(dim=1)
    return all_lse - torch.where(is_few, few_target, target_logit)


class Validator:
    """Top-1 accuracy per split of the validation rows under given coefficients.

    The rows are scored against ``W`` once (``frozen.val``): their best base class
    always, and their few and neighbour scores when that table fits
    ``budgets.val``; otherwise each call scores the rows against the corrected
    few rows instead.
    """

    def __init__(
        self,
        frozen: FrozenScores,
        x: Any,
        labels: np.ndarray,
        splits: Splits,
        few_bias_t: torch.Tensor,
        budgets: Budgets,
        on_scores: Any = None,
    ):
        n_few, k = frozen.few_t.numel(), frozen.neighbors_t.shape[1]
        self.frozen, self.x, self.few_bias_t = frozen, x, few_bias_t
        self.table = val_table_bytes(x.shape[0], n_few, k) <= budgets.val
        self.own, self.nb, self.base_max, self.base_arg = frozen.val(
            x, sources=self.table, on_scores=on_scores
        )
        dev = frozen.W_t.device
        self.labels_t = torch.tensor(labels, device=dev)
        split_code = np.zeros(splits.n_classes, dtype=np.int64)
        split_code[splits.medium], split_code[splits.many] = 1, 2
        self.split_t = torch.from_numpy(split_code[labels]).to(dev)
        self.split_n = torch.bincount(self.split_t, minlength=3).to(torch.float64)

    def _few_best(self, alphas_t: torch.Tensor, network: FewNetwork):
        frozen = self.frozen
        if not self.table:
            return frozen.few_best(self.x, network.corrected_few_rows(alphas_t), self.few_bias_t)
        n_val, dev = self.base_max.shape[0], frozen.W_t.device
        few_max = torch.empty(n_val, dtype=torch.float32, device=dev)
        few_arg = torch.empty(n_val, dtype=torch.int64, device=dev)
        if dev.type == "cpu":  # one Rust pass over the rows, on the kernels' pool
            own, nbs = self.own.numpy(), self.nb.view(n_val, -1).numpy()
            alphas, bias = alphas_t.contiguous().numpy(), self.few_bias_t.numpy()
            scale = float(frozen.score_scale)
            _core.few_best(own, nbs, alphas, bias, scale, few_max.numpy(), few_arg.numpy())
            return few_max, few_arg

        @torch.no_grad()  # grad mode is per thread
        def chunk(sl: slice) -> None:
            scores = few_scores(
                self.own[sl], self.nb[sl], alphas_t, self.few_bias_t, frozen.score_scale
            )
            torch.max(scores, dim=1, out=(few_max[sl], few_arg[sl]))

        # Chunks small enough that the (rows, F, k) product stays in cache; each
        # is the same computation on whichever thread takes it.
        step = max(64, (4 << 20) // (4 * frozen.few_t.numel() * network.k))
        network.share(chunk, (slice(lo, lo + step) for lo in range(0, n_val, step)))
        return few_max, few_arg

    def top1(self, alphas_t: torch.Tensor, network: FewNetwork) -> dict[str, float]:
        """``{"few", "medium", "many", "overall"}`` top-1 accuracies under ``alphas_t``."""
        few_max, few_arg = self._few_best(alphas_t, network)
        few_cls = self.frozen.few_t[few_arg]
        # Exact ties go to the lower class id, as an argmax over all classes would.
        few_wins = (few_max > self.base_max) | (
            (few_max == self.base_max) & (few_cls < self.base_arg)
        )
        predicted = torch.where(few_wins, few_cls, self.base_arg)
        hits = (predicted == self.labels_t).double()
        per_split = torch.bincount(self.split_t, weights=hits, minlength=3) / self.split_n
        out = dict(zip(SPLIT_NAMES, per_split.tolist()))
        out["overall"] = float(hits.mean())
        return out


def _run_steps(
    steps: tuple[torch.Tensor, ...],
    loss_sum: torch.Tensor,
    network: FewNetwork,
    optimizer: AdamW,
    batch_size: int,
    few_bias_t: torch.Tensor,
    score_scale: float,
) -> None:
    """The batches of one piece of an epoch; pieces start on batch boundaries."""
    for lo in range(0, steps[0].shape[0], batch_size):
        batch = tuple(t[lo : lo + batch_size] for t in steps)
        loss = network.step_loss(batch, few_bias_t, score_scale)
        optimizer.step(network.grads)
        loss_sum += loss.double() * batch[0].shape[0]


def _diverged(epoch: int, lr: float, score_scale: float) -> ValueError:
    return fail(
        "lr",
        f"training diverged: the network's coefficients at epoch {epoch} are not finite; "
        f"lower lr (now {lr:g}) or score_scale (now {score_scale:g})",
        value=lr,
    )


class _Best:
    """The kept epoch: with validation the earliest best at or after ``first_eligible``
    (strictly better only), without it the last."""

    def __init__(self, epochs: int, first_eligible: int, validated: bool):
        self.epochs, self.first_eligible, self.validated = epochs, first_eligible, validated
        self.epoch, self.acc, self.alphas = 0, -math.inf, None

    def offer(self, epoch: int, acc: float | None, alphas_t: torch.Tensor) -> bool:
        """Keep ``alphas_t`` (a copy) if ``epoch`` is the best so far; whether it was."""
        if self.validated:
            keep = epoch >= self.first_eligible and acc > self.acc
            self.acc = max(self.acc, acc) if keep else self.acc
        else:
            keep = epoch == self.epochs
        if keep:
            # A copy, not a view: later steps must not change what was kept.
            self.alphas = alphas_t.detach().to("cpu", torch.float64).numpy().copy()
            self.epoch = epoch
        return keep


def train(
    feed: Feed,
    network: FewNetwork,
    optimizer: AdamW,
    *,
    epochs: int,
    batch_size: int,
    min_epochs: int,
    few_bias_t: torch.Tensor,
    score_scale: float,
    validator: Validator | None,
    watch: Stopwatch,
    show: bool,
) -> tuple[np.ndarray, int, list[dict]]:
    """Run the epochs; return the kept coefficients (F, k) in float64, the kept
    epoch (1-based) and the history (one dict per epoch: loss, lr, val_top1).

    Raises
    ------
    ValueError
        The kept coefficients are not finite (the learning rate or the score
        scale made training diverge).
    """
    dev = few_bias_t.device
    best = _Best(epochs, min(min_epochs, epochs), validator is not None)
    history: list[dict] = []
    first_lr = optimizer.lr
    bar = _progress_bar(epochs, show)
    try:
        for epoch in range(1, epochs + 1):
            with watch.stage("epochs"):
                epoch_lr = optimizer.lr
                loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
            run = functools.partial(
                _run_steps,
                loss_sum=loss_sum,
                network=network,
                optimizer=optimizer,
                batch_size=batch_size,
                few_bias_t=few_bias_t,
                score_scale=score_scale,
            )
            feed.each_chunk(epoch, run)
            with watch.stage("epochs"):
                optimizer.end_epoch()
                alphas_t = network.alphas()
                entry = {"epoch": epoch, "loss": float(loss_sum) / feed.n_per_epoch, "lr": epoch_lr}
            acc = None
            if validator is not None:
                with watch.stage("validation"), torch.no_grad():
                    entry["val_top1"] = validator.top1(alphas_t, network)
                acc = entry["val_top1"]["overall"]
            if best.offer(epoch, acc, alphas_t) and not np.isfinite(best.alphas).all():
                raise _diverged(epoch, first_lr, score_scale)
            history.append(entry)
            _show_epoch(bar, entry)
    finally:
        bar.close()
    return best.alphas, best.epoch, history


def _show_epoch(bar: Any, entry: dict) -> None:
    postfix = {"loss": f"{entry['loss']:.4f}"}
    if "val_top1" in entry:
        postfix["val"] = f"{100 * entry['val_top1']['overall']:.2f}"
    bar.set_postfix(postfix, refresh=False)
    bar.update(1)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(epochs: int, show: bool):
    if not show:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=epochs, desc="alphanet", unit="epoch", file=sys.stderr, leave=True)


def make_optimizer(network: FewNetwork, lr: float, weight_decay: float, step: int, gamma: float):
    """AdamW over the network's parameters with a StepLR-style schedule."""
    return AdamW(
        network.params,
        lr=lr,
        weight_decay=weight_decay,
        step_size=step,
        gamma=gamma,
    )
