"""The cheap baselines scored beside AlphaNet: does a one-line fix beat it on validation?

:func:`alphanet_fast.correct` calls :func:`val_baselines` when it has
validation data, and keeps the figures in ``AlphaNetResult.val_baselines``.
Tau-normalisation and logit adjustment each choose tau on the validation set
exactly as :func:`~alphanet_fast.baselines.tau_norm` and
:func:`~alphanet_fast.baselines.logit_adjust` do with ``val=``; the
validation rows are scored against ``W`` once for both methods and every
candidate tau (a column scaling or shift of those scores), so the check costs
about one scoring pass, and inside :func:`~alphanet_fast.correct` none: it
counts the candidates on the blocks its validation scores anyway
(:class:`BaselineCheck`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

from alphanet_fast.baselines._common import block_hits, cast_groups, score_blocks
from alphanet_fast.baselines.closed_form import (
    DEFAULT_TAUS,
    logit_adjust_candidates,
    tau_norm_candidates,
)

__all__ = ["CHECKED", "BaselineCheck", "checking", "shared_check", "skipping", "val_baselines"]

#: The baselines scored, in the order they are reported.
CHECKED = ("tau_norm", "logit_adjust")

_SKIP: ContextVar[bool] = ContextVar("alphanet_fast_skip_val_baselines", default=False)


@contextmanager
def skipping() -> Iterator[None]:
    """Within the block (this thread or task only), :func:`val_baselines` returns None.

    For callers that score the baselines themselves: :func:`alphanet_fast.compare`
    runs them as rows of its own, so its AlphaNet runs skip the check.
    """
    token = _SKIP.set(True)
    try:
        yield
    finally:
        _SKIP.reset(token)


def _split_figures(hits: np.ndarray, vy: np.ndarray, splits: Any) -> dict[str, float]:
    """Top-1 per split (few, medium, many, overall) from per-class hits; NaN for no rows."""
    per_class = np.bincount(vy, minlength=hits.shape[0])
    out = {}
    for name in ("few", "medium", "many"):
        ids = getattr(splits, name)
        n = int(per_class[ids].sum())
        out[name] = float(hits[ids].sum() / n) if n else float("nan")
    out["overall"] = float(hits.sum() / vy.shape[0])
    return out


class BaselineCheck:
    """Tau-normalisation's and logit adjustment's candidates counted on validation
    scores as they come, block by block, from any thread.

    :func:`val_baselines` feeds it its own scoring pass; :func:`alphanet_fast.correct`
    feeds it the blocks its validation scores anyway (the raw products ``x @ W.T``
    before the bias), so that the check costs no product of its own. Each block's
    counts are added under a lock: integer sums, the same in any order.

    Parameters are :func:`val_baselines`'s; ``dtype`` is the scores'.
    """

    def __init__(
        self,
        W: np.ndarray,
        b: np.ndarray,
        counts: np.ndarray,
        labels: np.ndarray,
        dtype: Any,
        taus: Any = DEFAULT_TAUS,
    ):
        self.labels = labels
        self.taus = np.asarray(taus, dtype=np.float64)
        groups = {"tau_norm": tau_norm_candidates(W, b, self.taus)}
        if (counts > 0).all():  # log-frequencies are finite
            groups["logit_adjust"] = logit_adjust_candidates(counts, b, self.taus)
        self.names = list(groups)
        self.groups = cast_groups(list(groups.values()), np.dtype(dtype))
        self.hits = [np.zeros((sh.shape[0], W.shape[0]), dtype=np.int64) for _, sh in self.groups]
        self._lock = threading.Lock()

    def add(self, start: int, end: int, S: np.ndarray) -> None:
        """Count validation rows ``start:end`` from their raw scores ``S``."""
        block = [np.zeros_like(h) for h in self.hits]
        block_hits(S, self.labels[start:end], self.groups, block)
        with self._lock:
            for total, part in zip(self.hits, block):
                total += part

    def figures(self, splits: Any) -> dict[str, dict[str, float]]:
        """Per method: the tau chosen and its validation top-1 per split."""
        out = {}
        for name, block in zip(self.names, self.hits):
            best = int(np.argmax(block.sum(axis=1)))  # argmax keeps the first of equal counts
            figures = _split_figures(block[best], self.labels, splits)
            out[name] = {"tau": float(self.taus[best]), **figures}
        return out


def val_baselines(
    W: np.ndarray,
    b: np.ndarray,
    counts: np.ndarray,
    val: tuple[Any, np.ndarray],
    splits: Any,
    taus: Any = DEFAULT_TAUS,
) -> dict[str, dict[str, float]] | None:
    """Validation top-1 per split of tau-norm and logit adjustment, tau chosen on ``val``.

    Parameters
    ----------
    W, b : ndarray
        The checked classifier (as :func:`alphanet_fast.correct` holds it).
    counts : ndarray of int64, shape (C,)
        Training samples per class (logit adjustment's frequencies; it is
        left out when a class has none).
    val : (features, labels)
        Checked validation data.
    splits : Splits
    taus : sequence of float, default 0, 0.1, ..., 2.0
        The candidates, as the baselines' own default.

    Returns
    -------
    dict or None
        ``{"tau_norm": {"tau": 0.8, "few": ..., "medium": ..., "many": ...,
        "overall": ...}, "logit_adjust": {...}}``: the tau chosen (best overall
        validation top-1, the earliest candidate on ties) and its validation
        top-1 per split (NaN for a split without validation rows). None when
        the validation rows are not in this process (a Dask source), or
        within :func:`skipping`.
    """
    vx, vy = val
    if not checking(vx):
        return None
    check = BaselineCheck(W, b, counts, vy, W.dtype, taus)
    for start, end, S in score_blocks(vx, W):
        check.add(start, end, S)
    return check.figures(splits)


def shared_check(
    W: np.ndarray, b: np.ndarray, counts: np.ndarray, val: Any, device: Any
) -> BaselineCheck | None:
    """A :class:`BaselineCheck` for ``correct()`` to feed the raw validation scores it
    computes anyway: on the CPU, and only for a float32 ``W`` (the dtype its frozen
    scores have, and the baselines' own for such a ``W``); otherwise None, and
    :func:`val_baselines` scores the rows itself."""
    if val is None or device.type != "cpu" or W.dtype != np.float32 or not checking(val[0]):
        return None
    return BaselineCheck(W, b, counts, val[1], np.float32)


def checking(vx: Any) -> bool:
    """Whether the check runs: validation rows in this process, outside :func:`skipping`."""
    return isinstance(vx, np.ndarray) and not _SKIP.get()
