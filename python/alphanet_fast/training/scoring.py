"""The frozen scores: every score against an original weight row, computed once.

Scores ``x · W_c`` never change during training (only the few rows do, and
their scores X, so
:class:`FrozenScores` computes, per row, what a step or a validation pass needs:

* training rows: the log-sum-exp of the base-class scores, the target's score
  when the target is a base class, and ``x · W_c`` for the few classes and
  their neighbours (the "source scores");
* validation rows: the best base class and its score, and (when the table fits
  ``Budgets.val``) the few and neighbour scores.

Rows are gathered block by block (never the whole feature matrix) and scored on
several worker threads, each block by one thread: on the CPU with the Rust
product :func:`alphanet_fast._core.thin_dot` (1.6-1.8x torch's one-thread
product at these shapes, ``benches/product_shapes.py``). :class:`Feed` is what
the steps read: the epochs' samples cut into windows that fit
``Budgets.frozen`` (see :func:`~alphanet_fast.training.sampling.windows`), each
window's rows scored on entry, gathered a few batches at a time into reused
buffers.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

import numpy as np
import torch

from alphanet_fast import _core
from alphanet_fast._memory import is_releasable, release_rows
from alphanet_fast.training.sampling import (
    Budgets,
    chunk_positions,
    step_bytes,
    table_row_bytes,
    windows,
)
from alphanet_fast.training.stopwatch import Stopwatch

__all__ = ["Feed", "FrozenScores", "sharing_val_scores", "val_table_bytes", "weights_tensor"]


class _ValScores(NamedTuple):
    """One validation scoring (:meth:`FrozenScores.val`) and what it was computed from."""

    W_t: torch.Tensor
    b_t: torch.Tensor
    few_t: torch.Tensor
    neighbors_t: torch.Tensor
    score_scale: float
    x: Any  # the validation features, the very object
    sources: bool
    result: tuple


_SHARED_VAL: ContextVar[list[_ValScores] | None] = ContextVar(
    "alphanet_fast_shared_val_scores", default=None
)


@contextmanager
def sharing_val_scores() -> Iterator[None]:
    """Within the block, consecutive ``correct()`` calls of this thread (or task) that
    validate the same classifier, few classes and neighbours on the same validation
    features (the same object) score the validation rows once.

    For :func:`alphanet_fast.compare`, whose AlphaNet runs at several rhos share
    their base, seed and validation set. The latest scoring, and a copy of the
    weights it was scored against, are kept until the block ends: at most one
    validation table (``Budgets.val``) and one ``W`` more are held. The
    validation features must not change in place within the block.
    """
    token = _SHARED_VAL.set([])
    try:
        yield
    finally:
        _SHARED_VAL.reset(token)


def _same_val_scores(kept: _ValScores, frozen: FrozenScores, x: Any, sources: bool) -> bool:
    """Whether ``kept`` is what ``frozen.val(x, sources)`` would compute (bit for bit)."""
    return (
        kept.x is x
        and kept.sources == sources
        and kept.score_scale == frozen.score_scale
        and all(
            a.shape == b.shape and a.device == b.device and bool(torch.equal(a, b))
            for a, b in (
                (kept.W_t, frozen.W_t),
                (kept.b_t, frozen.b_t),
                (kept.few_t, frozen.few_t),
                (kept.neighbors_t, frozen.neighbors_t),
            )
        )
    )


def weights_tensor(W: np.ndarray, device: torch.device) -> torch.Tensor:
    """``W`` as a float32 tensor on ``device``: the caller's own memory when it is
    already a C-ordered float32 array on the CPU (it is only ever read), else a copy."""
    if device.type == "cpu" and W.dtype == np.float32 and W.flags.c_contiguous:
        with warnings.catch_warnings():
            # A read-only array is fine: nothing writes to this tensor.
            warnings.filterwarnings("ignore", message=".*not writable", category=UserWarning)
            return torch.from_numpy(W)
    return torch.tensor(W, dtype=torch.float32, device=device)


def val_table_bytes(n_val: int, n_few: int, k: int) -> int:
    """Bytes of the frozen validation table: few and neighbour scores, best base score
    and class, per row."""
    return n_val * (4 * n_few * (k + 1) + 4 + 8)


def nonfinite_error(x: np.ndarray, rows: np.ndarray, name: str) -> ValueError:
    block = np.asarray(x[rows])
    bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
    if bad.size:
        return ValueError(
            f"{name}: row {int(rows[bad[0]])} contains NaN or infinity; all values must be finite"
        )
    return ValueError(
        f"{name}: the scores of row {int(rows[0])}..{int(rows[-1])} against W overflow float32"
    )


class _Scratch:
    """One worker's reusable buffers for a block of rows: the gathered rows as stored,
    the same in float32 on the device, and their scores against every class.

    Reused from block to block, so scoring allocates nothing per block: freed and
    reallocated blocks of this size would stay in the allocator's per-thread
    arenas and inflate the resident memory by hundreds of megabytes.
    """

    def __init__(self, rows: int, d: int, n_classes: int, dtype: np.dtype, device: torch.device):
        self.host = np.empty((rows, d), dtype=dtype)
        shares = dtype == np.float32 and device.type == "cpu"
        self.x = (
            torch.from_numpy(self.host)
            if shares
            else torch.empty((rows, d), dtype=torch.float32, device=device)
        )
        self.copy = not shares
        self.raw = torch.empty((rows, n_classes), dtype=torch.float32, device=device)


def _logsumexp_(scores: torch.Tensor) -> torch.Tensor:
    """Row-wise log-sum-exp that overwrites ``scores`` (scratch) instead of allocating."""
    top = scores.max(dim=1).values
    return scores.sub_(top[:, None]).exp_().sum(dim=1).log_().add_(top)


class FrozenScores:
    """Per-row quantities that never change during training: scores against ``W``.

    Use as a context manager: it owns the worker threads and their buffers.
    """

    def __init__(
        self,
        W_t: torch.Tensor,
        b_t: torch.Tensor,
        few_t: torch.Tensor,
        neighbors_t: torch.Tensor,
        source_classes_t: torch.Tensor,
        score_scale: float,
        workers: int,
        budgets: Budgets,
    ):
        self.W_t, self.b_t = W_t, b_t
        self.few_t, self.neighbors_t = few_t, neighbors_t
        self.few_mask_t = torch.zeros(W_t.shape[0], dtype=torch.bool, device=W_t.device)
        self.few_mask_t[few_t] = True
        self.source_classes_t = source_classes_t
        self.score_scale = score_scale
        self.workers = workers
        self.budgets = budgets
        self._local = threading.local()
        self._pool = (
            ThreadPoolExecutor(workers, thread_name_prefix="alphanet-score")
            if workers > 1
            else None
        )

    def __enter__(self) -> FrozenScores:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        self._local = threading.local()  # the main thread's buffers go with it

    def _score_blocks(
        self,
        x: np.ndarray,
        rows: np.ndarray,
        name: str,
        work: Callable[[int, int, torch.Tensor], None],
        weights: torch.Tensor | None = None,
    ) -> None:
        """Call ``work(lo, hi, x[rows[lo:hi]] @ weights.T)`` for consecutive blocks of
        rows; ``weights`` is ``W`` unless given (at most as many rows as ``W``).

        ``work`` may overwrite the scores (they are scratch). Blocks write disjoint
        slices of the outputs, so they run on several workers; each worker takes
        the next block when free, and the first bad block in row order is reported.
        """
        n_classes, d = self.W_t.shape
        weights = self.W_t if weights is None else weights
        cols = weights.shape[0]
        step = self.budgets.block_rows(d, n_classes)
        device = self.W_t.device

        @torch.no_grad()
        def one(lo: int) -> None:
            sel = rows[lo : lo + step]
            n = sel.size
            scratch = getattr(self._local, "scratch", None)
            if scratch is None or scratch.host.dtype != x.dtype:
                scratch = self._local.scratch = _Scratch(step, d, n_classes, x.dtype, device)
            # Only these rows are copied (any memory order, memory maps included);
            # mode="clip" lets numpy write straight into the buffer.
            np.take(x, sel, axis=0, out=scratch.host[:n], mode="clip")
            # A memory-mapped file would otherwise stay mapped page by page (and
            # with the kernel's fault-around, most of it): hand the pages back.
            if is_releasable(x):
                release_rows(x, int(sel.min()), int(sel.max()) + 1)
            xb = scratch.x[:n]
            if scratch.copy:
                xb.copy_(torch.from_numpy(scratch.host[:n]))
            out = scratch.raw.view(-1)[: n * cols].view(n, cols)
            if device.type == "cpu":
                # Pieces of the block's rows, one after another on this worker.
                _core.thin_dot(xb.numpy(), weights.numpy().T, out.numpy(), False)
                raw = out
            else:
                raw = torch.mm(xb, weights.T, out=out)
            # min and max are finite exactly when every score is (NaN propagates);
            # unlike isfinite().all() this allocates no (rows, classes) mask.
            if not bool(torch.isfinite(torch.stack(torch.aminmax(raw))).all()):
                raise nonfinite_error(x, sel, name)
            work(lo, lo + n, raw)

        starts = range(0, rows.size, step)
        if self._pool is not None and len(starts) > 1:
            for _ in self._pool.map(one, starts):
                pass
        else:
            for lo in starts:
                one(lo)

    def train(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        rows: np.ndarray,
        few_index: np.ndarray,
        out: tuple[torch.Tensor, ...] | None = None,
    ):
        """Per drawn row: scores against the source classes, base log-sum-exp, base target
        score, and the target's few index (-1 for a base target); written into ``out``
        (four tensors of ``rows.size`` rows) when given."""
        n, n_src = rows.size, self.source_classes_t.numel()
        dev = self.W_t.device
        if out is None:
            out = (
                torch.empty((n, n_src), dtype=torch.float32, device=dev),
                torch.empty(n, dtype=torch.float32, device=dev),
                torch.empty(n, dtype=torch.float32, device=dev),
                torch.empty(n, dtype=torch.int64, device=dev),
            )
        source, base_lse, target_logit, target_few = out
        y_t = torch.from_numpy(labels[rows]).to(dev)

        def work(lo: int, hi: int, raw: torch.Tensor) -> None:
            torch.index_select(raw, 1, self.source_classes_t, out=source[lo:hi])
            full = raw.add_(self.b_t).mul_(self.score_scale)
            target_logit[lo:hi] = full.gather(1, y_t[lo:hi, None]).squeeze(1)
            base_lse[lo:hi] = _logsumexp_(full.masked_fill_(self.few_mask_t, -math.inf))

        self._score_blocks(x, rows, "features", work)
        target_few.copy_(torch.from_numpy(few_index[labels[rows]]))
        return source, base_lse, target_logit, target_few

    def val(self, x: np.ndarray, sources: bool = True, on_scores: Any = None):
        """Per validation row: scores against each few class (F) and its neighbours
        (F x k), the best base score and the best base class. Without ``sources``
        (the few classes' columns are then recomputed every epoch, see `few_best`),
        the first two are None. ``on_scores(lo, hi, S)``, if given, also sees each
        block's raw scores ``x[lo:hi] @ W.T`` (a numpy array; CPU only), from the
        scoring workers."""
        shared = _SHARED_VAL.get() if on_scores is None else None
        if shared and _same_val_scores(shared[0], self, x, sources):
            return shared[0].result
        if shared:
            shared.clear()  # its tables can go before this scoring's are made
        result = self._val(x, sources, on_scores)
        if shared is not None:
            # Copies: W may be the caller's array, which it could change in place.
            kept = (self.W_t, self.b_t, self.few_t, self.neighbors_t)
            shared.append(
                _ValScores(*(t.clone() for t in kept), self.score_scale, x, sources, result)
            )
        return result

    def _val(self, x: np.ndarray, sources: bool, on_scores: Any):
        n, n_few, k = x.shape[0], self.few_t.numel(), self.neighbors_t.shape[1]
        dev = self.W_t.device
        own = torch.empty((n, n_few), dtype=torch.float32, device=dev) if sources else None
        nb = torch.empty((n, n_few, k), dtype=torch.float32, device=dev) if sources else None
        base_max = torch.empty(n, dtype=torch.float32, device=dev)
        base_arg = torch.empty(n, dtype=torch.int64, device=dev)
        nb_flat = self.neighbors_t.reshape(-1)

        def work(lo: int, hi: int, raw: torch.Tensor) -> None:
            if on_scores is not None:
                on_scores(lo, hi, raw.numpy())
            if sources:
                torch.index_select(raw, 1, self.few_t, out=own[lo:hi])
                torch.index_select(raw, 1, nb_flat, out=nb[lo:hi].view(hi - lo, n_few * k))
            full = (
                raw.add_(self.b_t).mul_(self.score_scale).masked_fill_(self.few_mask_t, -math.inf)
            )
            # max returns the first maximal index: ties go to the lower class, as argmax does.
            torch.max(full, dim=1, out=(base_max[lo:hi], base_arg[lo:hi]))

        self._score_blocks(x, np.arange(n), "val[0] (features)", work)
        return own, nb, base_max, base_arg

    def few_best(self, x: np.ndarray, few_W: torch.Tensor, few_bias: torch.Tensor):
        """Per row of ``x``: the best corrected few score ``(x · w'_f + b_f) * scale`` and
        its index into the few classes, from the corrected few rows ``few_W`` (F, d)."""
        n, dev = x.shape[0], self.W_t.device
        best = torch.empty(n, dtype=torch.float32, device=dev)
        arg = torch.empty(n, dtype=torch.int64, device=dev)

        def work(lo: int, hi: int, raw: torch.Tensor) -> None:
            torch.max(
                raw.add_(few_bias).mul_(self.score_scale), dim=1, out=(best[lo:hi], arg[lo:hi])
            )

        self._score_blocks(x, np.arange(n), "val[0] (features)", work, weights=few_W)
        return best, arg


# --------------------------------------------------------------------------- correct


class Feed:
    """The steps' inputs, within ``Budgets.frozen``.

    The epochs' samples are cut into windows of whole batches (`windows`) whose
    distinct rows' frozen quantities fit the budget; on entering a window its rows
    are scored into one table, whose buffers every window reuses. The steps then
    read an epoch's part of a window in chunks of whole batches, gathered into
    reused buffers: per sample, its own (F) and neighbour (F x k) source scores,
    base log-sum-exp, target score and target few index.

    A small problem is one window, scored once before the first step (`prepare`),
    and one chunk per epoch. A large one pays for its bound: a row drawn in several
    windows is scored in each of them. Few-split rows are drawn every epoch and
    base draws rarely repeat within an epoch, so scoring then costs about
    ``epochs x n_per_epoch / n_distinct_rows`` times the up-front scoring (the
    figure at the iNaturalist-2018 shape is in benches/README.md).

    Buffers are allocated once: windows and chunks of varying sizes, freed and
    reallocated, would stay in the allocator's arenas and inflate resident memory.
    """

    def __init__(
        self,
        frozen: FrozenScores,
        x: Any,
        labels: np.ndarray,
        few_index: np.ndarray,
        order: np.ndarray,
        batch_size: int,
        own_cols_t: torch.Tensor,
        nb_cols_t: torch.Tensor,
        watch: Stopwatch,
        budget: int,
    ):
        self.frozen, self.x, self.labels, self.few_index = frozen, x, labels, few_index
        self.own_cols_t, self.nb_cols_flat_t = own_cols_t, nb_cols_t.reshape(-1)
        self.flat = order.reshape(-1)
        self.n_per_epoch = order.shape[1]
        self.watch = watch
        n_src, n_few, k = frozen.source_classes_t.numel(), own_cols_t.numel(), nb_cols_t.shape[1]
        per_step = step_bytes(n_src, n_few, k)
        self.chunk = chunk_positions(self.n_per_epoch, batch_size, per_step, budget)
        table_budget = budget - self.chunk * per_step
        self.bounds, capacity = windows(order, batch_size, table_row_bytes(n_src), table_budget)
        dev = frozen.W_t.device
        self.table = (
            torch.empty((capacity, n_src), dtype=torch.float32, device=dev),
            torch.empty(capacity, dtype=torch.float32, device=dev),
            torch.empty(capacity, dtype=torch.float32, device=dev),
            torch.empty(capacity, dtype=torch.int64, device=dev),
        )
        m = self.chunk
        self.picked = torch.empty((m, n_src), dtype=torch.float32, device=dev)
        self.steps = (
            torch.empty((m, n_few), dtype=torch.float32, device=dev),
            torch.empty((m, n_few, k), dtype=torch.float32, device=dev),
            torch.empty(m, dtype=torch.float32, device=dev),
            torch.empty(m, dtype=torch.float32, device=dev),
            torch.empty(m, dtype=torch.int64, device=dev),
        )
        self._index = -1
        self._rows = 0
        self._pos: torch.Tensor | None = None

    @property
    def n_windows(self) -> int:
        return self.bounds.size - 1

    def nbytes(self) -> int:
        """Bytes of the table and gather buffers."""
        return sum(t.nbytes for t in (*self.table, self.picked, *self.steps))

    def prepare(self) -> None:
        """Score the first window now (with one window: every row, once)."""
        self._enter(0)

    def _enter(self, index: int) -> None:
        lo, hi = int(self.bounds[index]), int(self.bounds[index + 1])
        with self.watch.stage("frozen_train"):
            rows, pos = np.unique(self.flat[lo:hi], return_inverse=True)
            self._pos = torch.from_numpy(pos.reshape(-1)).to(self.frozen.W_t.device)
            out = tuple(t[: rows.size] for t in self.table)
            self.frozen.train(self.x, self.labels, rows, self.few_index, out=out)
            self._rows = rows.size
        self._index = index

    def each_chunk(self, epoch: int, run: Callable[[tuple[torch.Tensor, ...]], None]) -> None:
        """Call ``run(steps)`` for the epoch's consecutive chunks of whole batches, in
        order; ``steps`` are views (valid until the next call of ``run``) of the own
        scores (m, F), neighbour scores (m, F, k), base log-sum-exp, target score
        and target few index of the chunk's samples."""
        e0 = (epoch - 1) * self.n_per_epoch
        e1 = e0 + self.n_per_epoch
        first = int(np.searchsorted(self.bounds, e0, side="right")) - 1
        last = int(np.searchsorted(self.bounds, e1, side="left")) - 1
        for index in range(first, last + 1):
            if index != self._index:
                self._enter(index)
            w0 = int(self.bounds[index])
            lo, hi = max(e0, w0), min(e1, int(self.bounds[index + 1]))
            # Pieces start on batch boundaries (windows do), and chunks are whole batches.
            for c0 in range(lo, hi, self.chunk):
                c1 = min(hi, c0 + self.chunk)
                with self.watch.stage("epochs"):
                    run(self._gather(self._pos[c0 - w0 : c1 - w0]))

    def _gather(self, pos: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m, n = pos.numel(), self._rows
        source, base_lse, target_logit, target_few = (t[:n] for t in self.table)
        own, nbs, lse, logit, tfew = (t[:m] for t in self.steps)
        picked = torch.index_select(source, 0, pos, out=self.picked[:m])
        torch.index_select(picked, 1, self.own_cols_t, out=own)
        torch.index_select(picked, 1, self.nb_cols_flat_t, out=nbs.view(m, -1))
        torch.index_select(base_lse, 0, pos, out=lse)
        torch.index_select(target_logit, 0, pos, out=logit)
        torch.index_select(target_few, 0, pos, out=tfew)
        return own, nbs, lse, logit, tfew
