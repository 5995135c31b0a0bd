"""AlphaNet training: :func:`correct` (DESIGN §1) with the exact shortcuts of DESIGN §2.

How the work is laid out
------------------------
Every score against an original weight row is computed once, as far as the
memory budgets allow:

* all epochs' samples are drawn up front from the seeded generator; the rows
  drawn at least once are gathered block by block (never the whole feature
  matrix) and scored against ``W`` once. What a step needs is kept per row:
  the log-sum-exp of the base-class scores, the target's score when the
  target is a base class, and ``x · W_c`` for the few classes and their
  neighbours (the "source scores");
* when that table would exceed ``FROZEN_BUDGET_BYTES``, the same draws are
  instead cut into windows of whole batches whose distinct rows fit, and each
  window's rows are scored when the steps reach it: memory stays bounded, and a
  row drawn in several windows is scored once per window. The steps read the
  table through gathers of a few batches at a time, into reused buffers;
* validation rows are scored once the same way, keeping their best base class
  and their source scores; when that table would exceed ``VAL_BUDGET_BYTES``,
  only the best base class is kept and each epoch recomputes the few classes'
  columns from the corrected few rows ``w'_f`` (``n_val x F x d`` an epoch);
* a step then costs ``O(batch x F x (k+1))`` for the logits plus the network,
  whose ``F x (k+1)d`` input (all few classes in one batch) is a constant.
"""

from __future__ import annotations

import functools
import math
import numbers
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from alphanet_fast._memory import is_releasable, release_rows
from alphanet_fast._optim import AdamW
from alphanet_fast._rows import RowSource
from alphanet_fast._validation import (
    float_dtype_of,
    float_matrix,
    float_vector,
    int_array,
    labels_array,
    positive_int,
    require_finite,
)
from alphanet_fast.kernels import class_means, combine, nearest_neighbors
from alphanet_fast.model import ChunkedLinear, build_network, few_scores
from alphanet_fast.result import AlphaNetResult
from alphanet_fast.splits import SPLIT_NAMES, Splits, splits_from_counts

__all__ = ["METRICS", "correct"]

METRICS = ("euclidean", "cosine", "random")

# Torch's intra-op threads wait for each other at every op: when another process
# holds a core, a 2-thread op stalls until the descheduled thread runs. Measured on
# a shared 2-core machine, 10 epochs took 2.2-3.4 s on one thread and 13-19 s on two
# (on an idle machine two were 1.3x faster). So torch runs on one thread here, and
# the one-off scoring spreads blocks of rows over `torch.get_num_threads()` Python
# workers that each take the next block when free, which a busy core cannot stall.
LOOP_THREADS = 1

# Rows gathered per block when scoring: bounded so that the gathered rows and
# their scores against every class stay around this many bytes.
BLOCK_BYTES = 16 << 20

# Bound on the frozen training quantities held at once: the table of a window's
# distinct rows (per row: scores against the source classes, base log-sum-exp,
# target score, few index) plus the buffers the steps' chunks are gathered into.
# When every epoch's distinct rows fit, they are scored once up front; otherwise the
# steps run in windows of whole batches, each window's rows scored on entry (`_Feed`).
# At the iNaturalist-2018 shape (~8,000 source classes) a window holds ~2,800 rows.
FROZEN_BUDGET_BYTES = 96 << 20

# The size of the network's input (F x (k+1)d float32, a constant) from which its
# first layer is computed in fixed pieces shared by torch.get_num_threads() Python
# workers (`ChunkedLinear`): at this size the layer's two passes over the input are
# bound by memory bandwidth, and one thread leaves much of it unused. At 3,224 x
# 12,288 (151 MiB) on 2 cores, forward and backward ran 1.6x faster than torch's
# one-thread Linear (benches/test_bench_correct.py::test_bench_first_layer).
CHUNKED_LAYER_BYTES = 32 << 20

# Bound on the frozen validation table (per row: scores against each few class and
# its neighbours). Above it, validation keeps each row's best base class only and
# recomputes the few classes' columns every epoch from the corrected few rows.
VAL_BUDGET_BYTES = 128 << 20


# --------------------------------------------------------------------------- checks


def _number(value: Any, name: str, *, minimum: float, strict: bool) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, found {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise ValueError(
            f"{name}: expected a finite number {relation} {minimum:g}, found {value!r}"
        )
    return value


def _hidden(hidden: Any) -> tuple[int, ...]:
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise TypeError(f"hidden: expected a sequence of layer widths, found {hidden!r}")
    return tuple(positive_int(h, f"hidden[{i}]") for i, h in enumerate(hidden))


def _device(device: Any) -> torch.device:
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', found {device!r}"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but torch sees no CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected a cpu or cuda device, found {device!r}")
    return dev


def _show_progress(progress: Any) -> bool:
    if progress is None:
        stream = sys.stderr
        return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress: expected None, True or False, found {progress!r}")
    return bool(progress)


def _seed(seed: Any) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, found {seed!r}")
    return int(seed)


def _user_neighbors(neighbors: Any, few: np.ndarray, is_base: np.ndarray, k: int) -> np.ndarray:
    nb = int_array(neighbors, "neighbors", ndim=2)
    if nb.shape != (few.size, k):
        raise ValueError(
            f"neighbors: expected shape (F, k) = ({few.size}, {k}), one row per few class and "
            f"k={k} columns, found {nb.shape} (pass k=neighbors.shape[1])"
        )
    n_classes = is_base.size
    outside = np.argwhere((nb < 0) | (nb >= n_classes))
    if outside.size:
        row, col = outside[0]
        raise ValueError(
            f"neighbors: entry ({row}, {col}) is {nb[row, col]}, expected a class id "
            f"in [0, {n_classes})"
        )
    not_base = np.argwhere(~is_base[nb])
    if not_base.size:
        row, col = not_base[0]
        raise ValueError(
            f"neighbors: entry ({row}, {col}) is class {nb[row, col]}, which is not a base "
            "(medium or many) class"
        )
    sorted_nb = np.sort(nb, axis=1)
    repeats = np.flatnonzero((sorted_nb[:, 1:] == sorted_nb[:, :-1]).any(axis=1))
    if repeats.size:
        row = int(repeats[0])
        raise ValueError(f"neighbors: row {row} (few class {few[row]}) repeats a class")
    return nb


def _val_pair(val: Any, d: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(val, (tuple, list)) or len(val) != 2:
        raise TypeError(f"val: expected a (features, labels) pair, found {type(val).__name__}")
    vx = val[0] if isinstance(val[0], RowSource) else float_matrix(val[0], "val[0] (features)")
    if vx.shape[1] != d:
        raise ValueError(f"val[0] (features): expected {d} columns (as W), found shape {vx.shape}")
    vy, _ = labels_array(val[1], "val[1] (labels)", n_rows=vx.shape[0], n_classes=n_classes)
    return vx, vy


# --------------------------------------------------------------------------- helpers


class _Stopwatch:
    """Seconds per stage; on CUDA the queue is drained at stage edges so times are honest."""

    def __init__(self, device: torch.device):
        self.seconds: dict[str, float] = {}
        self._cuda = device.type == "cuda"

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self._cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self._cuda:
                torch.cuda.synchronize()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@contextmanager
def _torch_settings(threads: int | None, device: torch.device) -> Iterator[None]:
    """Set torch's thread count (CPU) and full-precision float32 matmuls; restore on exit."""
    prev_threads = torch.get_num_threads()
    prev_precision = torch.get_float32_matmul_precision()
    try:
        if threads is not None and device.type == "cpu" and threads != prev_threads:
            torch.set_num_threads(threads)
        # TF32 (if the caller enabled it) would make CUDA disagree with the CPU by ~1e-3.
        torch.set_float32_matmul_precision("highest")
        yield
    finally:
        if torch.get_num_threads() != prev_threads:
            torch.set_num_threads(prev_threads)
        torch.set_float32_matmul_precision(prev_precision)


def _weights_tensor(W: np.ndarray, device: torch.device) -> torch.Tensor:
    """``W`` as a float32 tensor on ``device``: the caller's own memory when it is
    already a C-ordered float32 array on the CPU (it is only ever read), else a copy."""
    if device.type == "cpu" and W.dtype == np.float32 and W.flags.c_contiguous:
        with warnings.catch_warnings():
            # A read-only array is fine: nothing writes to this tensor.
            warnings.filterwarnings("ignore", message=".*not writable", category=UserWarning)
            return torch.from_numpy(W)
    return torch.tensor(W, dtype=torch.float32, device=device)


def _val_table_bytes(n_val: int, n_few: int, k: int) -> int:
    """Bytes of the frozen validation table: few and neighbour scores, best base score
    and class, per row."""
    return n_val * (4 * n_few * (k + 1) + 4 + 8)


def _block_rows(d: int, n_classes: int) -> int:
    return max(64, BLOCK_BYTES // (4 * (d + n_classes)))


def _nonfinite_error(x: np.ndarray, rows: np.ndarray, name: str) -> ValueError:
    block = np.asarray(x[rows])
    bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
    if bad.size:
        return ValueError(
            f"{name}: row {int(rows[bad[0]])} contains NaN or infinity; all values must be finite"
        )
    return ValueError(
        f"{name}: the scores of row {int(rows[0])}..{int(rows[-1])} against W overflow float32"
    )


def _draw_epochs(
    labels: np.ndarray,
    few_rows: np.ndarray,
    splits: Splits,
    counts: np.ndarray,
    rho: float,
    epochs: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Every epoch's shuffled sample rows, shape (epochs, n_few + round(rho * n_few)).

    Class-balanced base draws with replacement: a base class uniformly, then a row
    of it uniformly, which is drawing rows with weight 1 / n_class.
    """
    base = splits.base
    base_counts = counts[base]
    is_base = np.zeros(splits.n_classes, dtype=bool)
    is_base[base] = True
    base_rows = np.flatnonzero(is_base[labels])
    base_rows = base_rows[np.argsort(labels[base_rows], kind="stable")]
    starts = np.concatenate(([0], np.cumsum(base_counts)[:-1]))
    n_base_draws = int(round(rho * few_rows.size))
    order = np.empty((epochs, few_rows.size + n_base_draws), dtype=np.int64)
    # Epoch by epoch, so the first E epochs' samples do not depend on the total.
    for epoch in range(epochs):
        cls = rng.integers(0, base.size, size=n_base_draws)
        drawn = base_rows[starts[cls] + rng.integers(0, base_counts[cls])]
        order[epoch] = rng.permutation(np.concatenate([few_rows, drawn]))
    return order


def _table_row_bytes(n_source: int) -> int:
    """Bytes per distinct row in the frozen table: float32 source scores, base
    log-sum-exp and target score, int64 few index."""
    return 4 * n_source + 4 + 4 + 8


def _step_bytes(n_source: int, n_few: int, k: int) -> int:
    """Bytes per sample position gathered for the steps: the row's source scores
    (picked first), the own (F) and neighbour (F x k) columns of them, and its
    log-sum-exp, target score and few index."""
    return 4 * (n_source + n_few * (k + 1)) + 4 + 4 + 8


def _chunk_positions(n_per_epoch: int, batch_size: int, step_bytes: int, budget: int) -> int:
    """Sample positions gathered at once for the steps: whole batches, an epoch at most,
    within an eighth of the budget (at least one batch)."""
    batches_per_epoch = -(-n_per_epoch // batch_size)
    fit = (budget // 8) // (step_bytes * batch_size)
    return batch_size * max(1, min(batches_per_epoch, fit))


def _windows(
    order: np.ndarray, batch_size: int, row_bytes: int, budget: int
) -> tuple[np.ndarray, int]:
    """Cut the epochs' samples, read in order, into windows of whole batches.

    ``order`` is (epochs, n_per_epoch); a position ``p`` in the flattened order is
    sample ``p % n_per_epoch`` of epoch ``p // n_per_epoch``, and batches start at
    multiples of ``batch_size`` within each epoch. Windows are grown batch by batch
    while their distinct rows x ``row_bytes`` stay within ``budget``; a window holds
    at least one batch (so a budget below one batch is exceeded by that batch), and
    may span an epoch boundary. Returns the window bounds in flattened positions,
    ``[0, c_1, ..., epochs * n_per_epoch]``, and the most distinct rows of a window.
    """
    epochs, n = order.shape
    flat = order.reshape(-1)
    starts = (np.arange(epochs)[:, None] * n + np.arange(0, n, batch_size)[None, :]).ravel()
    ends = np.append(starts[1:], flat.size)
    # stamp[row] == w: the row is already in window w (no clearing between windows).
    stamp = np.full(int(flat.max()) + 1, -1, dtype=np.int64)
    bounds = [0]
    window, distinct, most = 0, 0, 0
    for lo, hi in zip(starts.tolist(), ends.tolist()):
        batch = flat[lo:hi]
        new = np.unique(batch[stamp[batch] != window])
        if lo > bounds[-1] and (distinct + new.size) * row_bytes > budget:
            bounds.append(lo)
            window, distinct = window + 1, 0
            new = np.unique(batch)
        stamp[new] = window
        distinct += new.size
        most = max(most, distinct)
    bounds.append(flat.size)
    return np.asarray(bounds, dtype=np.int64), most


class _Feed:
    """The steps' inputs, within ``FROZEN_BUDGET_BYTES``.

    The epochs' samples are cut into windows of whole batches (`_windows`) whose
    distinct rows' frozen quantities fit the budget; on entering a window its rows
    are scored into one table, whose buffers every window reuses. The steps then
    read an epoch's part of a window in chunks of whole batches, gathered into
    reused buffers: per sample, its own (F) and neighbour (F x k) source scores,
    base log-sum-exp, target score and target few index.

    A small problem is one window, scored once before the first step (`prepare`),
    and one chunk per epoch. A large one pays for its bound: a row drawn in several
    windows is scored in each of them. Few-split rows are drawn every epoch and
    base draws rarely repeat within an epoch, so scoring then costs about
    ``epochs x n_per_epoch / n_distinct_rows`` times the up-front scoring: about 4x
    at the iNaturalist-2018 shape (25 epochs of ~64K samples, ~380K distinct rows,
    ~8,000 source classes), where one table would take 11 GiB.

    Buffers are allocated once: windows and chunks of varying sizes, freed and
    reallocated, would stay in the allocator's arenas and inflate resident memory.
    """

    def __init__(
        self,
        frozen: _Frozen,
        x: Any,
        labels: np.ndarray,
        few_index: np.ndarray,
        order: np.ndarray,
        batch_size: int,
        own_cols_t: torch.Tensor,
        nb_cols_t: torch.Tensor,
        watch: _Stopwatch,
        budget: int,
    ):
        self.frozen, self.x, self.labels, self.few_index = frozen, x, labels, few_index
        self.own_cols_t, self.nb_cols_flat_t = own_cols_t, nb_cols_t.reshape(-1)
        self.flat = order.reshape(-1)
        self.n_per_epoch = order.shape[1]
        self.watch = watch
        n_src, n_few, k = frozen.source_classes_t.numel(), own_cols_t.numel(), nb_cols_t.shape[1]
        step_bytes = _step_bytes(n_src, n_few, k)
        self.chunk = _chunk_positions(self.n_per_epoch, batch_size, step_bytes, budget)
        table_budget = budget - self.chunk * step_bytes
        self.bounds, capacity = _windows(order, batch_size, _table_row_bytes(n_src), table_budget)
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


def _sample_losses(
    few_logits: torch.Tensor,
    base_lse: torch.Tensor,
    target_logit: torch.Tensor,
    target_few: torch.Tensor,
) -> torch.Tensor:
    """Cross-entropy over all C classes from frozen base quantities and the few logits.

    ``logsumexp(all) = logsumexp([logsumexp(base), few_1, ..., few_F])``, exactly.
    """
    all_lse = torch.logsumexp(torch.cat([base_lse[:, None], few_logits], dim=1), dim=1)
    is_few = target_few >= 0
    # A one-hot product instead of gather: its backward has no scatter, so CUDA
    # results are bitwise repeatable.
    onehot = F.one_hot(target_few.clamp_min(0), few_logits.shape[1]).to(few_logits.dtype)
    few_target = (few_logits * onehot).sum(dim=1)
    return all_lse - torch.where(is_few, few_target, target_logit)


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


class _Frozen:
    """Per-row quantities that never change during training (DESIGN §2).

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
    ):
        self.W_t, self.b_t = W_t, b_t
        self.few_t, self.neighbors_t = few_t, neighbors_t
        self.few_mask_t = torch.zeros(W_t.shape[0], dtype=torch.bool, device=W_t.device)
        self.few_mask_t[few_t] = True
        self.source_classes_t = source_classes_t
        self.score_scale = score_scale
        self.workers = workers
        self._local = threading.local()
        self._pool = (
            ThreadPoolExecutor(workers, thread_name_prefix="alphanet-score")
            if workers > 1
            else None
        )

    def __enter__(self) -> _Frozen:
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
        step = _block_rows(d, n_classes)
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
            raw = torch.mm(xb, weights.T, out=out)
            # min and max are finite exactly when every score is (NaN propagates);
            # unlike isfinite().all() this allocates no (rows, classes) mask.
            if not bool(torch.isfinite(torch.stack(torch.aminmax(raw))).all()):
                raise _nonfinite_error(x, sel, name)
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

    def val(self, x: np.ndarray, sources: bool = True):
        """Per validation row: scores against each few class (F) and its neighbours
        (F x k), the best base score and the best base class. Without ``sources``
        (the few classes' columns are then recomputed every epoch, see `few_best`),
        the first two are None."""
        n, n_few, k = x.shape[0], self.few_t.numel(), self.neighbors_t.shape[1]
        dev = self.W_t.device
        own = torch.empty((n, n_few), dtype=torch.float32, device=dev) if sources else None
        nb = torch.empty((n, n_few, k), dtype=torch.float32, device=dev) if sources else None
        base_max = torch.empty(n, dtype=torch.float32, device=dev)
        base_arg = torch.empty(n, dtype=torch.int64, device=dev)
        nb_flat = self.neighbors_t.reshape(-1)

        def work(lo: int, hi: int, raw: torch.Tensor) -> None:
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


def correct(
    features: Any,
    labels: Any,
    W: Any,
    b: Any = None,
    *,
    k: int = 5,
    metric: str = "euclidean",
    rho: float = 1.0,
    epochs: int = 25,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    lr_step: int = 10,
    lr_gamma: float = 0.1,
    hidden: Sequence[int] = (32, 32, 32),
    few_below: int = 20,
    many_above: int = 100,
    score_scale: float = 1.0,
    val: tuple[Any, Any] | None = None,
    min_epochs: int = 5,
    device: Any = "auto",
    seed: int = 0,
    progress: bool | None = None,
    neighbors: Any = None,
) -> AlphaNetResult:
    """Correct a long-tailed classifier's rare-class weights with AlphaNet.

    Each few class ``f`` (fewer than ``few_below`` training samples) gets the
    weights ``w'_f = W_f + sum_i ã_f,i W_ni`` where ``n_1..n_k`` are its ``k``
    nearest base classes by class-mean distance and ``ã_f`` comes from one
    small network shared by all few classes, trained with softmax
    cross-entropy over all classes on every few-class sample plus
    ``round(rho * n_few_samples)`` class-balanced base samples per epoch.
    Base-class weights and all biases are left as they are.

    Parameters
    ----------
    features : array_like, shape (n, d)
        Training features, float32 or float64, any memory order (memory maps
        and strided views are read in place; only the rows sampled are copied).
    labels : array_like of int, shape (n,)
        Training labels in ``[0, C)``.
    W : array_like, shape (C, d)
        Classifier weights.
    b : array_like, shape (C,), optional
        Classifier biases; zeros when omitted.
    k : int, default 5
        Neighbours per few class.
    metric : {"euclidean", "cosine", "random"}, default "euclidean"
        Distance between class means, or ``"random"``: k distinct random base
        classes per few class (the paper's control), drawn from ``seed``.
    rho : float, default 1.0
        Base samples per few sample in each epoch; smaller favours few classes.
    epochs, batch_size : int, default 25, 64
    lr, weight_decay : float, default 1e-3, 0.01
        AdamW's learning rate and decoupled weight decay.
    lr_step, lr_gamma : int, float, default 10, 0.1
        StepLR: multiply the learning rate by ``lr_gamma`` every ``lr_step`` epochs.
    hidden : sequence of int, default (32, 32, 32)
        Hidden layer widths of the network.
    few_below, many_above : int, default 20, 100
        Split thresholds on training counts (see :func:`splits_from_counts`).
    score_scale : float, default 1.0
        Multiplies every score (the paper used 100 for tiny weight norms).
    val : (features, labels), optional
        Validation data; each epoch's top-1 accuracy per split is recorded and
        the epoch with the best overall accuracy at or after ``min_epochs`` is
        kept. Without it, the last epoch is kept.
    min_epochs : int, default 5
        First epoch eligible for selection (capped at ``epochs``).
    device : str or torch.device, default "auto"
        ``"auto"`` trains on CUDA when torch sees a GPU, else on the CPU.
    seed : int, default 0
        Seeds the network's initialisation, the sampling and random neighbours.
        Same seed, same device: identical results.
    progress : bool, optional
        Show a tqdm bar over epochs. ``None``: only when stderr is a terminal.
    neighbors : array_like of int, shape (F, k), optional
        Your own neighbour classes (base class ids) for the few classes in
        ascending class order. Needed for a few class without training samples.

    Returns
    -------
    AlphaNetResult
        ``W`` (few rows replaced, the input's dtype), ``b`` (unchanged copy),
        ``alphas`` (F x (k+1), column 0 is 1), ``neighbors``, ``splits``,
        ``history``, ``best_epoch``, ``config`` and ``timings`` (seconds per stage).

    Raises
    ------
    TypeError
        Arguments of the wrong type or dtype.
    ValueError
        Shapes that disagree (features/labels/W/b/val/neighbors), labels out of
        ``[0, C)``, NaN or infinity (first bad row named), no base class, a few
        class without training samples (and no ``neighbors``), ``k`` larger
        than the number of base classes, bad hyperparameter values.

    Warns
    -----
    UserWarning
        No class is few: the classifier is returned unchanged.

    Notes
    -----
    Scores against the original weight rows never change (DESIGN §2): the
    rows drawn in any epoch and the validation rows are scored against ``W``
    in blocks, once when they fit the budgets below, so a step costs
    ``O(batch x F x (k+1))`` plus the network. ``result.timings`` has the
    seconds per stage.

    Memory: the frozen training quantities (per distinct drawn row ``4 x
    (n_source + 4)`` bytes, ``n_source`` = few classes and their neighbours,
    plus the buffers the steps gather into) are kept within
    ``alphanet_fast.training.FROZEN_BUDGET_BYTES`` (96 MiB). Larger problems
    run in windows of whole batches whose distinct rows are scored on entry;
    the samples, and so the result, are the same, but a row drawn in several
    windows is scored again (``timings["frozen_train"]`` is the total). The
    validation rows' few and neighbour scores (``4 x F x (k+1)`` bytes a row)
    are kept when they fit ``VAL_BUDGET_BYTES`` (128 MiB); otherwise each
    epoch scores the validation rows against the corrected few rows instead.
    A float32, C-ordered ``W`` is read in place; other dtypes or orders are
    copied once as float32.

    For the duration of the call, torch runs on one intra-op thread (on a
    shared machine, multi-threaded small ops stall on descheduled threads;
    the one-off scoring instead spreads blocks over ``torch.get_num_threads()``
    Python workers) and float32 matmuls at full precision (no TF32); both
    settings are restored afterwards. The global random generators of numpy
    and torch are not touched.

    Examples
    --------
    >>> import alphanet_fast as af
    >>> data = af.datasets.make_long_tail("small", seed=0)
    >>> res = af.correct(data.train_features, data.train_labels, data.W, data.b,
    ...                  val=(data.val_features, data.val_labels), progress=False)
    >>> res.W.shape == data.W.shape, bool((res.alphas[:, 0] == 1).all())
    (True, True)
    """
    t_start = time.perf_counter()

    # ---- every check before any work
    W_arr = float_matrix(W, "W")
    n_classes, d = W_arr.shape
    # A RowSource (Dask features) is read only through class_means and row gathers.
    x = features if isinstance(features, RowSource) else float_matrix(features, "features")
    if x.shape[1] != d:
        raise ValueError(f"features: expected {d} columns (as W), found shape {x.shape}")
    y, _ = labels_array(labels, "labels", n_rows=x.shape[0], n_classes=n_classes)
    require_finite(W_arr, "W")
    if b is None:
        bias = np.zeros(n_classes, dtype=W_arr.dtype)
    else:
        bias = float_vector(b, "b", length=n_classes, dtype=float_dtype_of(b, "b")).copy()
        require_finite(bias, "b")
    k = positive_int(k, "k")
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {METRICS}, found {metric!r}")
    rho = _number(rho, "rho", minimum=0.0, strict=False)
    epochs = positive_int(epochs, "epochs")
    batch_size = positive_int(batch_size, "batch_size")
    lr = _number(lr, "lr", minimum=0.0, strict=True)
    weight_decay = _number(weight_decay, "weight_decay", minimum=0.0, strict=False)
    lr_step = positive_int(lr_step, "lr_step")
    lr_gamma = _number(lr_gamma, "lr_gamma", minimum=0.0, strict=True)
    hidden = _hidden(hidden)
    score_scale = _number(score_scale, "score_scale", minimum=0.0, strict=True)
    min_epochs = positive_int(min_epochs, "min_epochs")
    seed = _seed(seed)
    show = _show_progress(progress)
    dev = _device(device)
    vx = vy = None
    if val is not None:
        vx, vy = _val_pair(val, d, n_classes)

    counts = np.bincount(y, minlength=n_classes).astype(np.int64)
    splits = splits_from_counts(counts, few_below=few_below, many_above=many_above)
    # Copies: the splits' arrays are read-only, and torch.from_numpy warns on those.
    few, base = splits.few.copy(), splits.base
    config = {
        "k": k,
        "metric": metric if neighbors is None else "given",
        "rho": rho,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "lr_step": lr_step,
        "lr_gamma": lr_gamma,
        "hidden": list(hidden),
        "few_below": int(few_below),
        "many_above": int(many_above),
        "score_scale": score_scale,
        "min_epochs": min_epochs,
        "device": str(dev),
        "seed": seed,
        "user_neighbors": neighbors is not None,
        "validation": val is not None,
        "loop_threads": LOOP_THREADS if dev.type == "cpu" else None,
    }

    if few.size == 0:
        warnings.warn(
            f"labels: no class has fewer than few_below={few_below} training samples; "
            "nothing to correct, the classifier is returned unchanged",
            UserWarning,
            stacklevel=2,
        )
        return AlphaNetResult(
            W=np.array(W_arr, order="C", copy=True),
            b=bias,
            alphas=np.zeros((0, k + 1)),
            few_classes=few.copy(),
            neighbors=np.zeros((0, k), dtype=np.int64),
            neighbor_distances=np.zeros((0, k)),
            splits=splits,
            counts=counts,
            config=config,
            timings={"total": time.perf_counter() - t_start},
        )
    if base.size == 0:
        raise ValueError(
            f"labels: every class has fewer than few_below={few_below} training samples; "
            "AlphaNet needs base (medium or many) classes to borrow from"
        )
    is_base = np.zeros(n_classes, dtype=bool)
    is_base[base] = True
    if neighbors is not None:
        nb = _user_neighbors(neighbors, few, is_base, k)
    else:
        if k > base.size:
            raise ValueError(
                f"k: expected at most {base.size} (the number of base classes), found {k}"
            )
        empty = few[counts[few] == 0]
        if empty.size:
            raise ValueError(
                f"labels: few class {int(empty[0])} has no training samples (and "
                f"{empty.size - 1} more), so it has no mean to find neighbours by; "
                "pass neighbors=... to correct it"
            )
    few_index = np.full(n_classes, -1, dtype=np.int64)
    few_index[few] = np.arange(few.size)
    few_rows = np.flatnonzero(few_index[y] >= 0)
    if few_rows.size == 0:
        raise ValueError("labels: no training sample belongs to a few class; nothing to train on")

    watch = _Stopwatch(dev)
    watch.seconds["checks"] = time.perf_counter() - t_start
    seeds = np.random.SeedSequence(seed).spawn(2)
    sample_rng, neighbor_rng = (np.random.default_rng(s) for s in seeds)

    # ---- neighbours
    if neighbors is not None:
        distances = np.full(nb.shape, np.nan)
    elif metric == "random":
        with watch.stage("neighbors"):
            nb = np.stack([neighbor_rng.choice(base, size=k, replace=False) for _ in few])
            distances = np.full(nb.shape, np.nan)
    else:
        with watch.stage("means"):
            if isinstance(x, RowSource):
                means, _ = x.class_means(y, n_classes)
            else:
                means, _ = class_means(x, y, n_classes)
        with watch.stage("neighbors"):
            idx, dist = nearest_neighbors(means[few], means[base], k, metric)
            nb, distances = base[idx], dist.astype(np.float64)
            del means

    workers = torch.get_num_threads() if dev.type == "cpu" else 1
    with _torch_settings(LOOP_THREADS, dev), ExitStack() as threads:
        # The scoring workers may go early (scoring.close()); the network's stay.
        scoring = threads.enter_context(ExitStack())
        # ---- frozen scores
        with watch.stage("sampling"):
            order = _draw_epochs(y, few_rows, splits, counts, rho, epochs, sample_rng)
        n_per_epoch = order.shape[1]
        source_classes = np.unique(np.concatenate([few, nb.ravel()]))
        own_cols = np.searchsorted(source_classes, few)
        nb_cols = np.searchsorted(source_classes, nb)
        W_t = _weights_tensor(W_arr, dev)
        b_t = torch.from_numpy(bias.astype(np.float32)).to(dev)
        few_t = torch.from_numpy(few).to(dev)
        nb_t = torch.tensor(nb, dtype=torch.int64, device=dev)
        source_classes_t = torch.from_numpy(source_classes).to(dev)
        own_cols_t = torch.from_numpy(own_cols).to(dev)
        nb_cols_t = torch.from_numpy(nb_cols).to(dev)
        frozen = scoring.enter_context(
            _Frozen(W_t, b_t, few_t, nb_t, source_classes_t, score_scale, workers)
        )
        few_bias_t = b_t[few_t]
        # Validation keeps each row's few and neighbour scores when they fit
        # VAL_BUDGET_BYTES; otherwise only its best base class, and the few classes'
        # columns are recomputed each epoch from the corrected few rows (DESIGN §2).
        val_frozen = False
        if vx is not None:
            with watch.stage("frozen_val"):
                val_frozen = _val_table_bytes(vx.shape[0], few.size, k) <= VAL_BUDGET_BYTES
                val_own, val_nb, val_base_max, val_base_arg = frozen.val(vx, sources=val_frozen)
                val_labels_t = torch.tensor(vy, device=dev)
                split_code = np.zeros(n_classes, dtype=np.int64)
                split_code[splits.medium], split_code[splits.many] = 1, 2
                val_split_t = torch.from_numpy(split_code[vy]).to(dev)
                val_split_n = torch.bincount(val_split_t, minlength=3).to(torch.float64)

        with watch.stage("sampling"):
            feed = _Feed(
                frozen,
                x,
                y,
                few_index,
                order,
                batch_size,
                own_cols_t,
                nb_cols_t,
                watch,
                FROZEN_BUDGET_BYTES,
            )
        feed.prepare()
        if feed.n_windows == 1 and (vx is None or val_frozen):
            scoring.close()  # no more scoring: the workers and their buffers can go
        del order

        # The network's input: each few class's flattened [W_f; W_n1..W_nk], a constant.
        stacks = W_t[torch.cat([few_t[:, None], nb_t], dim=1)].reshape(few.size, -1)
        del W_t

        def corrected_few_rows(alphas_t: torch.Tensor) -> torch.Tensor:
            """``w'_f = W_f + sum_i ã_f,i W_ni`` for every few class, (F, d)."""
            parts = stacks.view(few.size, k + 1, -1)
            return parts[:, 0] + torch.bmm(alphas_t[:, None, :], parts[:, 1:])[:, 0]

        def val_top1(alphas_t: torch.Tensor) -> dict[str, float]:
            n_val = val_base_max.shape[0]
            if val_frozen:
                few_max = torch.empty(n_val, dtype=torch.float32, device=dev)
                few_arg = torch.empty(n_val, dtype=torch.int64, device=dev)
                # Chunks small enough that the (rows, F, k) product stays in cache.
                step = max(64, (4 << 20) // (4 * few.size * k))
                for lo in range(0, n_val, step):
                    sl = slice(lo, lo + step)
                    scores = few_scores(val_own[sl], val_nb[sl], alphas_t, few_bias_t, score_scale)
                    torch.max(scores, dim=1, out=(few_max[sl], few_arg[sl]))
            else:
                few_max, few_arg = frozen.few_best(vx, corrected_few_rows(alphas_t), few_bias_t)
            few_cls = few_t[few_arg]
            # Exact ties go to the lower class id, as an argmax over all classes would.
            few_wins = (few_max > val_base_max) | (
                (few_max == val_base_max) & (few_cls < val_base_arg)
            )
            predicted = torch.where(few_wins, few_cls, val_base_arg)
            hits = (predicted == val_labels_t).double()
            per_split = torch.bincount(val_split_t, weights=hits, minlength=3) / val_split_n
            out = dict(zip(SPLIT_NAMES, per_split.tolist()))
            out["overall"] = float(hits.mean())
            return out

        # ---- training
        net = build_network(stacks.shape[1], k, hidden, seed=seed, device=dev)
        optimizer = AdamW(
            list(net.parameters()),
            lr=lr,
            weight_decay=weight_decay,
            step_size=lr_step,
            gamma=lr_gamma,
        )
        # A large first layer (thousands of few classes) is bound by memory bandwidth:
        # cut into fixed pieces that the workers share (`ChunkedLinear`). Whether it
        # is cut depends on the shape only, so results do not depend on the workers.
        chunked = (
            dev.type == "cpu" and stacks.numel() * stacks.element_size() >= CHUNKED_LAYER_BYTES
        )
        pool = None
        if chunked and workers > 1:
            pool = threads.enter_context(
                ThreadPoolExecutor(workers, thread_name_prefix="alphanet-layer")
            )

        def run_all(fn: Callable[[Any], None], items: Iterable[Any]) -> None:
            if pool is None:
                for item in items:
                    fn(item)
            else:
                for _ in pool.map(fn, items):
                    pass

        def alphas_of_net() -> torch.Tensor:
            if not chunked:
                return net(stacks)
            first = net.layers[0]
            return net.head(ChunkedLinear.apply(stacks, first.weight, first.bias, run_all))

        first_eligible = min(min_epochs, epochs)
        history: list[dict] = []
        best_epoch, best_acc, best_alphas = 0, -math.inf, None

        def run_steps(steps: tuple[torch.Tensor, ...], loss_sum: torch.Tensor) -> None:
            """The batches of one piece of an epoch; pieces start on batch boundaries."""
            own, nbs, lse, logit, target_few = steps
            for lo in range(0, own.shape[0], batch_size):
                sl = slice(lo, lo + batch_size)
                alphas_t = alphas_of_net()
                scores = few_scores(own[sl], nbs[sl], alphas_t, few_bias_t, score_scale)
                loss = _sample_losses(scores, lse[sl], logit[sl], target_few[sl]).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach().double() * scores.shape[0]

        bar = _progress_bar(epochs, show)
        try:
            for epoch in range(1, epochs + 1):
                with watch.stage("epochs"):
                    epoch_lr = optimizer.lr
                    net.train()
                    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
                feed.each_chunk(epoch, functools.partial(run_steps, loss_sum=loss_sum))
                with watch.stage("epochs"):
                    optimizer.end_epoch()
                    net.eval()
                    with torch.no_grad():
                        alphas_t = alphas_of_net()
                    entry = {
                        "epoch": epoch,
                        "loss": float(loss_sum) / n_per_epoch,
                        "lr": epoch_lr,
                    }
                if vx is not None:
                    with watch.stage("validation"), torch.no_grad():
                        entry["val_top1"] = val_top1(alphas_t)
                    acc = entry["val_top1"]["overall"]
                    # Strictly better only: the earliest of equally good epochs is kept.
                    keep = epoch >= first_eligible and acc > best_acc
                    best_acc = max(best_acc, acc) if keep else best_acc
                else:
                    keep = epoch == epochs
                if keep:
                    # A copy, not a view: later steps must not change what was kept.
                    best_alphas = alphas_t.detach().to("cpu", torch.float64).numpy().copy()
                    best_epoch = epoch
                history.append(entry)
                postfix = {"loss": f"{entry['loss']:.4f}"}
                if "val_top1" in entry:
                    postfix["val"] = f"{100 * entry['val_top1']['overall']:.2f}"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
        finally:
            bar.close()
            feed = None  # drop the frozen table before the final update

    # ---- final update, in the input's dtype, by the Rust kernel
    with watch.stage("final_update"):
        alphas = np.hstack([np.ones((few.size, 1)), best_alphas])
        W_new = combine(W_arr, few, nb, alphas)
    watch.seconds["total"] = time.perf_counter() - t_start
    return AlphaNetResult(
        W=W_new,
        b=bias,
        alphas=alphas,
        few_classes=few.copy(),
        neighbors=np.array(nb, dtype=np.int64),  # a copy: nb may be the caller's array
        neighbor_distances=distances,
        splits=splits,
        counts=counts,
        history=history,
        best_epoch=best_epoch,
        config=config,
        timings=dict(watch.seconds),
    )


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
