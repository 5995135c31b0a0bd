"""What each epoch trains on, and how much of it is held at once.

* :class:`Budgets`: the memory bounds of a run, passed to the stages that
  allocate (never read from module globals).
* :func:`class_balanced_rows` / :class:`ClassBalancedSampler`: draws of rows
  with every class equally likely, the base half of an AlphaNet epoch.
* :func:`draw_epochs`: every epoch's shuffled sample rows, drawn up front.
* :func:`windows`: those samples cut into windows of whole batches whose
  distinct rows fit a budget (see ``training.scoring.Feed``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from alphanet_fast._errors import fail
from alphanet_fast._memory import memory_limit, memory_limit_bytes
from alphanet_fast.splits import Splits

__all__ = [
    "Budgets",
    "ClassBalancedSampler",
    "class_balanced_rows",
    "current_budgets",
    "draw_epochs",
    "memory_limit_bytes",
    "using_budgets",
    "windows",
]


@dataclass(frozen=True)
class Budgets:
    """Memory bounds of one :func:`alphanet_fast.correct` run, in bytes.

    The defaults are what ``correct()`` uses; tests and callers that want the
    bounded code paths on small data run it under smaller ones (``with
    using_budgets(Budgets(frozen=300_000)): correct(...)``), and the stages take
    a ``Budgets`` argument. The budgeted paths compute the same quantities,
    only in pieces.

    Attributes
    ----------
    frozen : int, default 96 MiB
        The frozen training quantities held at once: the table of a window's
        distinct rows (per row: scores against the source classes, base
        log-sum-exp, target score, few index) plus the buffers the steps'
        chunks are gathered into. When every epoch's distinct rows fit, they are
        scored once up front; otherwise the steps run in windows of whole
        batches, each window's rows scored on entry (benches/README.md has the
        window size at the iNaturalist-2018 shape).
    val : int, default 128 MiB
        The frozen validation table (per row: scores against each few class and
        its neighbours). Above it, validation keeps each row's best base class
        only and recomputes the few classes' columns every epoch from the
        corrected few rows.
    block : int, default 16 MiB
        Rows gathered per scoring block: the gathered rows and their scores
        against every class stay around this many bytes.
    """

    frozen: int = 96 << 20
    val: int = 128 << 20
    block: int = 16 << 20

    def block_rows(self, d: int, n_classes: int) -> int:
        """Rows per scoring block for ``d`` features and ``n_classes`` classes."""
        return max(64, self.block // (4 * (d + n_classes)))


_BUDGETS: ContextVar[Budgets | None] = ContextVar("alphanet_fast_budgets", default=None)


def current_budgets() -> Budgets:
    """The budgets :func:`alphanet_fast.correct` runs under in this thread (or task)."""
    active = _BUDGETS.get()
    return Budgets() if active is None else active


@contextmanager
def using_budgets(budgets: Budgets) -> Iterator[Budgets]:
    """Run the ``correct()`` calls of the ``with`` block under ``budgets``.

    The setting belongs to the calling thread (a context variable): other
    threads' runs keep theirs, and it is restored on leaving the block.

    Examples
    --------
    >>> from alphanet_fast.training import Budgets, using_budgets, current_budgets
    >>> with using_budgets(Budgets(val=0)):
    ...     current_budgets().val
    0
    >>> current_budgets().val == Budgets().val
    True
    """
    if not isinstance(budgets, Budgets):
        raise TypeError(f"budgets: expected a Budgets, found {type(budgets).__name__}")
    token = _BUDGETS.set(budgets)
    try:
        yield budgets
    finally:
        _BUDGETS.reset(token)


class ClassBalancedSampler:
    """Draws rows with replacement so that every class of ``classes`` is equally likely.

    A draw picks a class uniformly among ``classes``, then one of its rows
    uniformly: row ``i`` of class ``c`` is drawn with probability
    ``1 / (len(classes) * n_c)``. The rows of each class are found once, so
    repeated draws (one per epoch) cost only the draw.

    Parameters
    ----------
    labels : ndarray of int, shape (n,)
        Every row's class.
    classes : ndarray of int
        Sorted, distinct class ids to draw from; each must have a row.

    Raises
    ------
    ValueError
        A class in ``classes`` has no row.
    """

    def __init__(self, labels: np.ndarray, classes: np.ndarray):
        counts = np.bincount(labels, minlength=int(classes.max(initial=-1)) + 1)[classes]
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise ValueError(f"classes: class {int(classes[empty[0]])} has no row to draw")
        member = np.zeros(max(int(labels.max(initial=-1)), int(classes.max(initial=-1))) + 1, bool)
        member[classes] = True
        rows = np.flatnonzero(member[labels])
        self.rows = rows[np.argsort(labels[rows], kind="stable")]
        self.counts = counts.astype(np.int64)
        self.starts = np.concatenate(([0], np.cumsum(self.counts)[:-1])).astype(np.int64)

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` row indices (int64), drawn with replacement."""
        cls = rng.integers(0, self.counts.size, size=n)
        return self.rows[self.starts[cls] + rng.integers(0, self.counts[cls])]


def class_balanced_rows(
    labels: np.ndarray, classes: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Draw ``n`` rows with replacement, every class of ``classes`` equally likely.

    A class uniformly, then one of its rows uniformly (the base half of an
    AlphaNet epoch). For repeated draws over the same labels, build a
    :class:`ClassBalancedSampler` once instead.

    Parameters
    ----------
    labels : ndarray of int, shape (n_rows,)
    classes : ndarray of int
        Sorted, distinct class ids to draw from; each must have a row.
    n : int
        Rows to draw.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray of int64, shape (n,)
        Row indices into ``labels``.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([0, 0, 0, 1, 2, 2])
    >>> rows = class_balanced_rows(labels, np.array([0, 1]), 6, np.random.default_rng(0))
    >>> sorted(set(labels[rows].tolist()))
    [0, 1]
    """
    return ClassBalancedSampler(labels, classes).draw(n, rng)


def draw_epochs(
    labels: np.ndarray,
    few_rows: np.ndarray,
    splits: Splits,
    rho: float,
    epochs: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Every epoch's shuffled sample rows, shape ``(epochs, n_few + round(rho * n_few))``.

    Each epoch holds every few-split row once plus class-balanced draws of base
    rows (:class:`ClassBalancedSampler`), shuffled. Drawn epoch by epoch, so the
    first E epochs' samples do not depend on the total.

    Raises
    ------
    ValueError
        The draws would not fit in the machine's memory (``rho`` too large).
    """
    n_base_draws = int(round(rho * few_rows.size))
    n_per_epoch = few_rows.size + n_base_draws
    # The table of every epoch's rows, plus one epoch's temporaries (draws, shuffle)
    # and the window cutting's per-row stamps.
    need = 8 * n_per_epoch * (epochs + 6)
    limit, what = memory_limit()
    if need > limit:
        raise fail(
            "rho",
            f"{rho:g} base samples per few sample make {n_per_epoch:,} samples an epoch, "
            f"whose draws over {epochs} epochs would need {need / 2**30:,.1f} GiB, more than "
            f"the {limit / 2**30:,.1f} GiB of {what}; use a smaller rho",
            value=rho,
        )
    sampler = ClassBalancedSampler(labels, splits.base)
    order = np.empty((epochs, n_per_epoch), dtype=np.int64)
    for epoch in range(epochs):
        drawn = sampler.draw(n_base_draws, rng)
        order[epoch] = rng.permutation(np.concatenate([few_rows, drawn]))
    return order


def table_row_bytes(n_source: int) -> int:
    """Bytes per distinct row in the frozen table: float32 source scores, base
    log-sum-exp and target score, int64 few index."""
    return 4 * n_source + 4 + 4 + 8


def step_bytes(n_source: int, n_few: int, k: int) -> int:
    """Bytes per sample position gathered for the steps: the row's source scores
    (picked first), the own (F) and neighbour (F x k) columns of them, and its
    log-sum-exp, target score and few index."""
    return 4 * (n_source + n_few * (k + 1)) + 4 + 4 + 8


def chunk_positions(n_per_epoch: int, batch_size: int, step_bytes: int, budget: int) -> int:
    """Sample positions gathered at once for the steps: whole batches, an epoch at most,
    within an eighth of the budget (at least one batch)."""
    batches_per_epoch = -(-n_per_epoch // batch_size)
    fit = (budget // 8) // (step_bytes * batch_size)
    return batch_size * max(1, min(batches_per_epoch, fit))


def windows(
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
