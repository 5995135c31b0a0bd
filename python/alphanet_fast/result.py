"""The result of :func:`alphanet_fast.correct`: corrected weights, alphas, how they were found."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alphanet_fast._validation import float_matrix
from alphanet_fast.kernels import combine
from alphanet_fast.splits import SPLIT_NAMES, Splits

__all__ = ["AlphaNetResult", "load_result"]

FORMAT = "alphanet_fast.AlphaNetResult"
FORMAT_VERSION = 1
_ARRAYS = ("W", "b", "alphas", "few_classes", "neighbors", "neighbor_distances", "counts")


@dataclass(eq=False)
class AlphaNetResult:
    """Corrected classifier and everything needed to reproduce or re-apply it.

    Attributes
    ----------
    W : ndarray, shape (C, d)
        The classifier with its few-class rows replaced by ``w'_f``, in the
        input's dtype.
    b : ndarray, shape (C,)
        The biases, unchanged (a copy; zeros when none were given).
    alphas : ndarray of float64, shape (F, k + 1)
        Coefficients of ``[W_f, W_n1, ..., W_nk]``; column 0 is 1.
    few_classes : ndarray of int64, shape (F,)
        The corrected classes (``splits.few``).
    neighbors : ndarray of int64, shape (F, k)
        Each few class's source classes, nearest first.
    neighbor_distances : ndarray of float64, shape (F, k)
        Distances between class means (NaN for random or user-given neighbours).
    splits : Splits
    counts : ndarray of int64, shape (C,)
        Training samples per class.
    history : list of dict
        One entry per epoch: ``epoch`` (1-based), ``loss`` (mean training loss),
        ``lr``, and with validation data ``val_top1`` (a dict with keys few,
        medium, many, overall).
    best_epoch : int
        The epoch whose alphas were kept (1-based; 0 when nothing was trained).
    config : dict
        Every hyperparameter of the run.
    timings : dict
        Seconds spent per stage of :func:`~alphanet_fast.correct`.
    """

    W: np.ndarray
    b: np.ndarray
    alphas: np.ndarray
    few_classes: np.ndarray
    neighbors: np.ndarray
    neighbor_distances: np.ndarray
    splits: Splits
    counts: np.ndarray
    history: list = field(default_factory=list)
    best_epoch: int = 0
    config: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    def apply(self, W: Any) -> np.ndarray:
        """Re-apply the learned alphas to a classifier with the same classes.

        Parameters
        ----------
        W : array_like, shape (C, d)
            Usually the original weights the alphas were learned on.

        Returns
        -------
        ndarray, shape (C, d)
            A copy of ``W`` with row ``f`` replaced by
            ``W_f + sum_i alphas[f, i] * W_ni`` (computed by the Rust ``combine``).

        Raises
        ------
        TypeError, ValueError
            ``W`` not a float matrix, or not ``n_classes`` rows.

        Examples
        --------
        >>> import numpy as np
        >>> res = AlphaNetResult(
        ...     W=np.eye(2), b=np.zeros(2), alphas=np.array([[1.0, 0.5]]),
        ...     few_classes=np.array([0]), neighbors=np.array([[1]]),
        ...     neighbor_distances=np.full((1, 1), np.nan),
        ...     splits=Splits(few=[0], medium=[1], many=[], n_classes=2),
        ...     counts=np.array([3, 50]))
        >>> res.apply(np.eye(2))
        array([[1. , 0.5],
               [0. , 1. ]])
        """
        w = float_matrix(W, "W")
        if w.shape[0] != self.splits.n_classes:
            raise ValueError(
                f"W: expected {self.splits.n_classes} rows (one per class), found shape {w.shape}"
            )
        if self.few_classes.size == 0:
            return np.array(w, order="C", copy=True)
        return combine(w, self.few_classes, self.neighbors, self.alphas)

    def summary(self) -> str:
        """A few lines on what was corrected and how well it validated."""
        s = self.splits
        k = self.neighbors.shape[1] if self.neighbors.ndim == 2 else 0
        metric = self.config.get("metric", "?")
        lines = [
            f"AlphaNet: {s.few.size} few classes corrected (of {s.n_classes}: "
            f"{s.many.size} many, {s.medium.size} medium), k={k} {metric} neighbours"
        ]
        if self.history:
            lines.append(
                f"trained {len(self.history)} epochs at rho={self.config.get('rho')}, "
                f"kept epoch {self.best_epoch}, final loss {self.history[-1]['loss']:.4f}"
            )
            kept = self.history[self.best_epoch - 1]
            if "val_top1" in kept:
                acc = kept["val_top1"]
                parts = ", ".join(
                    f"{name} {100 * acc[name]:.2f}" for name in (*SPLIT_NAMES, "overall")
                )
                lines.append(f"val top-1 at kept epoch (%): {parts}")
        else:
            lines.append("nothing trained: the classifier is unchanged")
        if self.alphas.size and self.alphas.shape[1] > 1:
            nb = self.alphas[:, 1:]
            lines.append(
                f"neighbour alphas: mean {nb.mean():+.3f}, "
                f"{100 * (nb < 0).mean():.1f}% negative, largest |alpha| {np.abs(nb).max():.3f}"
            )
        if np.isfinite(self.neighbor_distances).any():
            lines.append(f"mean neighbour distance {np.nanmean(self.neighbor_distances):.4g}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"AlphaNetResult(W={self.W.shape} {self.W.dtype}, few={self.few_classes.size}, "
            f"k={self.neighbors.shape[1] if self.neighbors.ndim == 2 else 0}, "
            f"best_epoch={self.best_epoch})"
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the result to one ``.npz`` file, without pickle.

        The arrays are stored as they are; splits, history, config and timings
        as one JSON string. The file is written under a temporary name in the
        same folder and renamed, so ``path`` never holds a partial file.

        Parameters
        ----------
        path : str or path-like
            The file to write (used as given; no suffix is added).

        Examples
        --------
        >>> import tempfile, os, alphanet_fast as af
        >>> # res = af.correct(...); res.save("alphanet.npz"); af.load_result("alphanet.npz")
        """
        path = os.fspath(path)
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "splits": self.splits.to_dict(),
            "history": self.history,
            "best_epoch": int(self.best_epoch),
            "config": self.config,
            "timings": self.timings,
        }
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAYS}
        arrays["meta"] = np.array(json.dumps(meta, default=_json_default))
        # Written under a temporary name and renamed: never half-written.
        from alphanet_fast._atomic import atomic_write

        with atomic_write(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays sneak into configs (e.g. a hidden tuple of np.int64).
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in the result's JSON metadata")


def load_result(path: str | os.PathLike) -> AlphaNetResult:
    """Read a result written by :meth:`AlphaNetResult.save` (no pickle is ever loaded).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    AlphaNetResult

    Raises
    ------
    ValueError
        The file is not an AlphaNet result of a known version, or lacks an array.

    Examples
    --------
    >>> import alphanet_fast as af
    >>> # res = af.load_result("alphanet.npz"); res.apply(W)
    """
    with np.load(os.fspath(path), allow_pickle=False) as data:
        if "meta" not in data.files:
            raise ValueError(f"path: {os.fspath(path)!r} is not an AlphaNet result (no 'meta')")
        meta = json.loads(str(data["meta"][()]))
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"path: expected format {FORMAT!r} version {FORMAT_VERSION}, "
                f"found {meta.get('format')!r} version {meta.get('version')!r}"
            )
        missing = [name for name in _ARRAYS if name not in data.files]
        if missing:
            raise ValueError(f"path: {os.fspath(path)!r} lacks arrays {missing}")
        arrays = {name: data[name] for name in _ARRAYS}
    return AlphaNetResult(
        **arrays,
        splits=Splits.from_dict(meta["splits"]),
        history=meta["history"],
        best_epoch=int(meta["best_epoch"]),
        config=meta["config"],
        timings=meta.get("timings", {}),
    )
