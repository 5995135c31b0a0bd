"""What every baseline shares: the checked inputs, the result, validation scoring."""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alphanet_fast._errors import fail
from alphanet_fast._inputs import classifier_inputs, data_pair
from alphanet_fast._memory import release_rows, row_chunks
from alphanet_fast._validation import (
    float_matrix,
)

#: Bytes of validation scores (rows x classes) held at once while candidates are tried.
SCORE_BLOCK_BYTES = 4 << 20


@dataclass(frozen=True)
class FeatureTransform:
    """``x -> (x - center) / ||x - center||``: the "cl2n" transform of Kang et al. 2020.

    Only :func:`ncm` with ``metric="euclidean", cl2n=True`` returns one: its
    ``(W, b)`` scores transformed features, ``transform(x) @ W.T + b``. Rows equal
    to ``center`` stay zero.

    Attributes
    ----------
    center : ndarray of float64, shape (d,)
        The mean training feature.
    """

    center: np.ndarray = field(repr=False)

    def __call__(self, features: Any) -> np.ndarray:
        """The transformed rows (float32, a new array), computed chunk by chunk.

        Parameters
        ----------
        features : array_like or path, shape (n, d)

        Returns
        -------
        ndarray of float32, shape (n, d)
        """
        x = float_matrix(features, "features", ncols=self.center.shape[0])
        out = np.empty(x.shape, dtype=np.float32)
        for start, end in row_chunks(x, 32 << 20):
            out[start:end] = cl2n_rows(x[start:end], self.center)
            release_rows(x, start, end)
        return out


def cl2n_rows(block: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Rows centred on ``center`` and scaled to unit L2 norm (zero rows stay zero).

    In the block's float dtype: float32 rows stay float32 (their sums are still
    accumulated in float64 by the class-sums kernel).
    """
    z = np.asarray(block)
    z = z - center.astype(z.dtype if z.dtype == np.float32 else np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", z, z))
    z /= np.where(norms > 0, norms, 1)[:, None]
    return z


@dataclass(frozen=True, eq=False)
class BaselineResult:
    """A post-hoc classifier ``(W, b)`` of the input's shape, and the settings that made it.

    Attributes
    ----------
    method : str
        "ncm", "tau_norm", "logit_adjust", "lws" or "crt".
    W : ndarray, shape (C, d)
        The new weights, in the input ``W``'s dtype.
    b : ndarray, shape (C,)
        The new biases, in the input ``W``'s dtype.
    settings : dict
        Every setting used, including those chosen on validation (e.g. ``tau``)
        and, where a grid was searched, ``val_accuracy`` per candidate.
    transform : FeatureTransform or None
        ``None`` except for Euclidean cl2n NCM, whose ``(W, b)`` applies to
        ``transform(features)``.
    history : dict or None
        The trained methods' per-epoch mean training loss.
    """

    method: str
    W: np.ndarray = field(repr=False)
    b: np.ndarray = field(repr=False)
    settings: dict[str, Any]
    transform: FeatureTransform | None = None
    history: dict[str, list[float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The method, its settings and history (JSON-ready; no arrays)."""
        return {
            "method": self.method,
            "settings": _plain(self.settings),
            "feature_transform": None if self.transform is None else "cl2n",
            "history": self.history,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return (
            [_plain(v) for v in np.asarray(value).tolist()]
            if isinstance(value, np.ndarray)
            else [_plain(v) for v in value]
        )
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass(frozen=True, eq=False)
class Inputs:
    """The checked common inputs: features (unread), labels, counts, W, b."""

    x: np.ndarray
    y: np.ndarray
    counts: np.ndarray
    W: np.ndarray
    b: np.ndarray


def check_inputs(features: Any, labels: Any, W: Any, b: Any) -> Inputs:
    """Check the arguments every baseline takes, as :func:`alphanet_fast.correct` does."""
    W_arr, x, y, bias = classifier_inputs(features, labels, W, b)
    counts = np.bincount(y, minlength=W_arr.shape[0]).astype(np.int64)
    return Inputs(x=x, y=y, counts=counts, W=W_arr, b=bias)


def check_val(val: Any, d: int, n_classes: int, name: str = "val") -> tuple[np.ndarray, np.ndarray]:
    """``val`` (or the argument ``name``) as a checked (features, labels) pair."""
    return data_pair(val, name, d, n_classes)


def real_number(value: Any, name: str, row: int | None = None) -> float:
    """A finite real number (``row``: its entry in the argument ``name``, if a grid's)."""
    what = "" if row is None else f"entry {row}: "
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        detail = f"{what}expected a real number, found {type(value).__name__} {value!r}"
        raise fail(name, detail, row, value=value, type_error=True)
    if not np.isfinite(value):
        raise fail(name, f"{what}expected a finite number, found {value!r}", row, value=value)
    return float(value)


def grid(values: Any, name: str) -> np.ndarray:
    """A non-empty 1-d grid of finite candidate values, in the order given."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        detail = f"expected a sequence of numbers, found {values!r}"
        raise fail(name, detail, value=values, type_error=True)
    out = np.array([real_number(v, name, i) for i, v in enumerate(values)])
    if out.size == 0:
        raise fail(name, "expected at least one candidate value")
    return out


def score_blocks(x: np.ndarray, W: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(start, end, x[start:end] @ W.T)`` block by block, in ``W``'s dtype.

    Each row is scored once; a block holds about ``SCORE_BLOCK_BYTES`` of scores.
    """
    rows = max(64, SCORE_BLOCK_BYTES // (W.itemsize * W.shape[0]))
    Wt = W.T
    for start in range(0, x.shape[0], rows):
        end = min(start + rows, x.shape[0])
        block = np.asarray(x[start:end], dtype=W.dtype)
        yield start, end, block @ Wt
        release_rows(x, start, end)


def candidate_accuracies(
    vx: np.ndarray,
    vy: np.ndarray,
    W: np.ndarray,
    scales: np.ndarray | None,
    shifts: np.ndarray,
) -> np.ndarray:
    """Top-1 accuracy on ``(vx, vy)`` of every candidate ``scores * scales[j] + shifts[j]``.

    The raw scores ``vx @ W.T`` are computed once, block by block; each candidate is
    a column scaling and shift of them, never a new product.

    Parameters
    ----------
    scales : ndarray, shape (J, C), or None
        Per-candidate column factors (``None``: all ones).
    shifts : ndarray, shape (J, C)
        Per-candidate column offsets.

    Returns
    -------
    ndarray of float64, shape (J,)
    """
    return candidate_hits(vx, vy, W, scales, shifts).sum(axis=1) / vy.shape[0]


def candidate_hits(
    vx: np.ndarray,
    vy: np.ndarray,
    W: np.ndarray,
    scales: np.ndarray | None,
    shifts: np.ndarray,
) -> np.ndarray:
    """Per class, the rows of ``(vx, vy)`` whose top-1 class is right, for every candidate.

    As :func:`candidate_accuracies` (the same scores, computed once), but the
    hits are counted per true class: ``(J, C)`` int64, so that split
    accuracies follow by summing columns.
    """
    return candidate_group_hits(vx, vy, W, [(scales, shifts)])[0]


def candidate_group_hits(
    vx: np.ndarray,
    vy: np.ndarray,
    W: np.ndarray,
    groups: Sequence[tuple[np.ndarray | None, np.ndarray]],
) -> list[np.ndarray]:
    """:func:`candidate_hits` of several groups of candidates from one scoring pass.

    ``groups`` are ``(scales, shifts)`` pairs as :func:`candidate_accuracies`
    takes them (one method's candidates each); every candidate is scored
    exactly as it would be alone. Returns one ``(J, C)`` array per group.
    """
    cast = cast_groups(groups, W.dtype)
    hits = [np.zeros((sh.shape[0], W.shape[0]), dtype=np.int64) for _, sh in cast]
    for start, end, S in score_blocks(vx, W):
        block_hits(S, vy[start:end], cast, hits)
    return hits


def cast_groups(
    groups: Sequence[tuple[np.ndarray | None, np.ndarray]], dtype: np.dtype
) -> list[tuple[np.ndarray | None, np.ndarray]]:
    """The candidates' factors and shifts in the dtype of the scores they apply to."""
    return [(None if sc is None else sc.astype(dtype), sh.astype(dtype)) for sc, sh in groups]


def block_hits(
    S: np.ndarray,
    yb: np.ndarray,
    groups: Sequence[tuple[np.ndarray | None, np.ndarray]],
    hits: Sequence[np.ndarray],
) -> None:
    """Add each candidate's per-class hits on one block of raw scores ``S`` (rows
    labelled ``yb``) to ``hits`` (one ``(J, C)`` array per group)."""
    buf = np.empty_like(S)
    for (scales, shifts), out in zip(groups, hits):
        for j in range(shifts.shape[0]):
            if scales is None:
                np.add(S, shifts[j], out=buf)
            else:
                np.multiply(S, scales[j], out=buf)
                buf += shifts[j]
            out[j] += np.bincount(yb[buf.argmax(axis=1) == yb], minlength=S.shape[1])
