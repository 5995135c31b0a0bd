"""The cheap baselines scored beside AlphaNet: does a one-line fix beat it on validation?

:func:`alphanet_fast.correct` calls :func:`val_baselines` when it has
validation data, and keeps the figures in ``AlphaNetResult.val_baselines``.
Tau-normalisation and logit adjustment each choose tau on the validation set
exactly as :func:`~alphanet_fast.baselines.tau_norm` and
:func:`~alphanet_fast.baselines.logit_adjust` do with ``val=``; the
validation rows are scored against ``W`` once for both methods and every
candidate tau (a column scaling or shift of those scores), so the check costs
about one scoring pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

from alphanet_fast.baselines._common import candidate_group_hits
from alphanet_fast.baselines.closed_form import (
    DEFAULT_TAUS,
    logit_adjust_candidates,
    tau_norm_candidates,
)

__all__ = ["CHECKED", "skipping", "val_baselines"]

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
    if not isinstance(vx, np.ndarray) or _SKIP.get():
        return None
    values = np.asarray(taus, dtype=np.float64)
    groups = {"tau_norm": tau_norm_candidates(W, b, values)}
    if (counts > 0).all():  # log-frequencies are finite
        groups["logit_adjust"] = logit_adjust_candidates(counts, b, values)
    hits = candidate_group_hits(vx, vy, W, list(groups.values()))
    out = {}
    for name, block in zip(groups, hits):
        best = int(np.argmax(block.sum(axis=1)))  # argmax keeps the first of equal counts
        out[name] = {"tau": float(values[best]), **_split_figures(block[best], vy, splits)}
    return out
