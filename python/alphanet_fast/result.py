"""The result of :func:`alphanet_fast.correct`: corrected weights, alphas, how they were found."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alphanet_fast._errors import fail
from alphanet_fast._validation import float_matrix
from alphanet_fast.files._atomic import json_default, write_npz
from alphanet_fast.files._result_file import bad, fspath, parse_json, read_entries
from alphanet_fast.files.formats import one_line
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
    val_baselines : dict or None
        With validation data: the cheap baselines scored on the same
        validation set, ``{"tau_norm": {"tau": ..., "few": ..., "medium": ...,
        "many": ..., "overall": ...}, "logit_adjust": {...}}`` (tau chosen on
        validation; top-1 per split, NaN for a split without validation rows).
        None without validation data (and in files saved before it existed).
        :meth:`beaten_by` reads it.
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
    val_baselines: dict | None = None

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

    def val_top1(self) -> dict[str, float] | None:
        """AlphaNet's validation top-1 per split at the kept epoch (None without validation)."""
        if not self.history or self.best_epoch < 1:
            return None
        return self.history[self.best_epoch - 1].get("val_top1")

    def beaten_by(self) -> tuple[str, dict[str, float]] | None:
        """The cheap baseline with the best overall validation top-1, when it beats AlphaNet's.

        Returns
        -------
        (name, figures) or None
            ``name`` is a key of :attr:`val_baselines` (``"tau_norm"``,
            ``"logit_adjust"``) and ``figures`` its entry; None when no
            baseline scores higher than AlphaNet's kept epoch on overall
            validation top-1, or without validation data.

        Examples
        --------
        >>> res = AlphaNetResult(
        ...     W=np.eye(2), b=np.zeros(2), alphas=np.ones((1, 2)), few_classes=np.array([0]),
        ...     neighbors=np.array([[1]]), neighbor_distances=np.ones((1, 1)),
        ...     splits=Splits(few=[0], medium=[1], many=[], n_classes=2), counts=np.array([3, 50]),
        ...     history=[{"epoch": 1, "loss": 0.5, "val_top1": {"few": 0.2, "medium": 0.9,
        ...              "many": float("nan"), "overall": 0.6}}], best_epoch=1,
        ...     val_baselines={"tau_norm": {"tau": 1.0, "few": 0.5, "medium": 0.8,
        ...                    "many": float("nan"), "overall": 0.65}})
        >>> res.beaten_by()[0]
        'tau_norm'
        """
        own = self.val_top1()
        if own is None or not self.val_baselines:
            return None
        name, figures = max(self.val_baselines.items(), key=lambda kv: kv[1]["overall"])
        return (name, figures) if figures["overall"] > own["overall"] else None

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
        >>> import os, tempfile
        >>> res = AlphaNetResult(
        ...     W=np.eye(2), b=np.zeros(2), alphas=np.array([[1.0, -0.25]]),
        ...     few_classes=np.array([0]), neighbors=np.array([[1]]),
        ...     neighbor_distances=np.array([[1.5]]),
        ...     splits=Splits(few=[0], medium=[1], many=[], n_classes=2),
        ...     counts=np.array([3, 50]), history=[{"epoch": 1, "loss": 0.5, "lr": 0.01}],
        ...     best_epoch=1, config={"k": 1})
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     res.save(os.path.join(folder, "alphanet.npz"))
        ...     back = load_result(os.path.join(folder, "alphanet.npz"))
        >>> back.alphas, back.neighbors
        (array([[ 1.  , -0.25]]), array([[1]]))
        >>> np.array_equal(back.W, res.W), back.history == res.history, back.config
        (True, True, {'k': 1})
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
            "val_baselines": self.val_baselines,
        }
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAYS}
        arrays["meta"] = np.array(json.dumps(meta, default=json_default))
        # Written under a temporary name and renamed: never half-written.
        write_npz(path, **arrays)


def _read_meta(path: str, data: dict[str, np.ndarray]) -> dict:
    if "meta" not in data:
        raise fail(
            "path",
            f"{path}: not an AlphaNet result (no 'meta' entry; not a result saved by "
            "AlphaNetResult.save or 'correct --result')",
        )
    raw = data["meta"]
    if raw.shape != () or raw.dtype.kind != "U":
        raise bad(path, "meta", f"expected a JSON string, found {raw.dtype} of shape {raw.shape}")
    meta = parse_json(path, "meta", str(raw[()]))
    if not isinstance(meta, dict):
        raise bad(path, "meta", f"expected a JSON object, found {type(meta).__name__}")
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise bad(
            path,
            "meta",
            f"expected format {FORMAT!r} version {FORMAT_VERSION}, "
            f"found {meta.get('format')!r} version {meta.get('version')!r}",
        )
    for key, kind in (("splits", dict), ("history", list), ("config", dict)):
        if not isinstance(meta.get(key), kind):
            raise bad(path, f"meta.{key}", f"expected a JSON {kind.__name__}")
    if not isinstance(meta.get("timings", {}), dict):
        raise bad(path, "meta.timings", "expected a JSON dict")
    return meta


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_history(path: str, history: list, best_epoch: Any) -> int:
    for i, entry in enumerate(history):
        if not isinstance(entry, dict) or not _is_number(entry.get("loss")):
            raise bad(path, f"meta.history[{i}]", "expected an object with a numeric 'loss'")
        acc = entry.get("val_top1")
        if acc is not None and not (
            isinstance(acc, dict) and all(_is_number(acc.get(n)) for n in (*SPLIT_NAMES, "overall"))
        ):
            raise bad(path, f"meta.history[{i}].val_top1", "expected few/medium/many/overall")
    if not isinstance(best_epoch, int) or isinstance(best_epoch, bool):
        raise bad(path, "meta.best_epoch", f"expected an integer, found {best_epoch!r}")
    low = 1 if history else 0
    if not low <= best_epoch <= len(history):
        raise bad(
            path,
            "meta.best_epoch",
            f"expected {low} to {len(history)} (the epochs in the history), found {best_epoch}",
        )
    return best_epoch


_KINDS = {"W": "f", "b": "f", "alphas": "f", "neighbor_distances": "f"}


def _check_dtypes(path: str, arrays: dict[str, np.ndarray]) -> None:
    for name, arr in arrays.items():
        kind = _KINDS.get(name, "iu")
        if arr.dtype.kind not in kind:
            want = "real floats" if kind == "f" else "integers"
            raise bad(path, name, f"expected {want}, found dtype {arr.dtype}")
    W = arrays["W"]
    if W.ndim != 2 or 0 in W.shape:
        raise bad(path, "W", f"expected a non-empty 2-d array, found shape {W.shape}")


def _read_splits(path: str, raw: dict, arrays: dict[str, np.ndarray]) -> Splits:
    """``meta.splits``, checked against the file's own arrays before anything is
    allocated: ``n_classes`` equal to W's rows, class ids JSON integers in range."""
    count, W = raw.get("n_classes"), arrays["W"]
    n_classes = W.shape[0]
    if not isinstance(count, int) or isinstance(count, bool) or count != n_classes:
        if isinstance(count, int) and (count,) == arrays["b"].shape == arrays["counts"].shape:
            # The metadata agrees with b and counts: W is the odd one out.
            raise bad(path, "W", f"expected shape {(count, W.shape[1])}, found {W.shape}")
        raise bad(
            path, "meta.splits.n_classes", f"expected {n_classes} (W's rows), found {count!r}"
        )
    for name in SPLIT_NAMES:
        ids = raw.get(name)
        if not isinstance(ids, list):
            raise bad(path, f"meta.splits.{name}", "expected a JSON list of class ids")
        for i, c in enumerate(ids):
            if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < n_classes:
                raise bad(
                    path,
                    f"meta.splits.{name}[{i}]",
                    f"expected an integer class id in [0, {n_classes}), found {c!r}",
                )
    try:
        return Splits.from_dict(raw)
    except (TypeError, ValueError) as exc:
        raise bad(path, "meta.splits", one_line(exc)) from None


def _check_arrays(path: str, arrays: dict[str, np.ndarray], splits: Splits) -> None:
    C, F = splits.n_classes, splits.few.size
    W, nb = arrays["W"], arrays["neighbors"]
    k = nb.shape[1] if nb.ndim == 2 else -1
    shapes = {
        "W": (C, W.shape[1] if W.ndim == 2 else -1),
        "b": (C,),
        "counts": (C,),
        "few_classes": (F,),
        "neighbors": (F, k),
        "alphas": (F, k + 1),
        "neighbor_distances": (F, k),
    }
    for name, shape in shapes.items():
        if arrays[name].shape != shape or -1 in shape:
            raise bad(path, name, f"expected shape {shape}, found {arrays[name].shape}")
    for name in ("W", "b", "alphas"):
        if not np.isfinite(arrays[name]).all():
            raise bad(path, name, "contains NaN or infinity")
    if np.isinf(arrays["neighbor_distances"]).any():
        raise bad(path, "neighbor_distances", "contains infinity")
    if not np.array_equal(arrays["few_classes"], splits.few):
        raise bad(path, "few_classes", "differs from the splits' few classes (or repeats one)")
    if (arrays["counts"] < 0).any():
        raise bad(path, "counts", "contains a negative count")
    if nb.size and not np.isin(nb, splits.base).all():
        raise bad(path, "neighbors", "contains a class that is not a base (medium or many) class")
    repeats = np.flatnonzero((np.diff(np.sort(nb, axis=1), axis=1) == 0).any(axis=1))
    if repeats.size:
        raise bad(path, "neighbors", f"row {int(repeats[0])} names one class twice")
    if F and not (arrays["alphas"][:, 0] == 1).all():
        raise bad(path, "alphas", "column 0 (the few class's own weight) must be 1")


def load_result(path: str | os.PathLike) -> AlphaNetResult:
    """Read a result written by :meth:`AlphaNetResult.save` (no pickle is ever loaded).

    The file is checked as strictly as a user's arguments: every array
    present, of a real dtype and of a shape consistent with the others and
    with the splits; finite weights and alphas; few classes without repeats
    and equal to the splits'; neighbours among the base classes;
    ``alphas[:, 0] == 1``; ``best_epoch`` within the history; the JSON
    metadata present and well formed.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    AlphaNetResult

    Every size is checked against the file's own arrays before anything is
    allocated: each entry's ``.npy`` header against the entry's size in the
    zip, their total against the memory this process may have, and
    ``meta.splits.n_classes`` against ``W``'s rows; class ids must be JSON
    integers, the metadata at most 64 levels deep, ``W`` non-empty, and no
    neighbour may repeat within a row.

    Raises
    ------
    ArgumentError
        (a ``ValueError``, ``.argument == "path"``) The file is missing, not a
        regular file (a FIFO is refused without being opened, a device
        without being read), damaged (zip CRC), not an AlphaNet result of a
        known version, or any check above fails; the message names the file
        and the entry.
    TypeError
        ``path`` is not a path.

    Examples
    --------
    A result saved after training re-applies its alphas to the original weights:

    >>> import os, tempfile
    >>> import alphanet_fast as af
    >>> d = af.datasets.make_long_tail("small", n_classes=30, dim=8, seed=0)
    >>> res = af.correct(d.train_features, d.train_labels, d.W, d.b, epochs=2,
    ...                  device="cpu", progress=False)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     res.save(os.path.join(folder, "alphanet.npz"))
    ...     back = af.load_result(os.path.join(folder, "alphanet.npz"))
    >>> np.array_equal(back.apply(d.W), res.W), back.best_epoch == res.best_epoch
    (True, True)
    >>> bool((back.W[back.few_classes] != d.W[back.few_classes]).any())
    True
    """
    p = fspath(path)
    entries = read_entries(p)
    meta = _read_meta(p, entries)
    missing = [name for name in _ARRAYS if name not in entries]
    if missing:
        raise bad(p, ", ".join(missing), "missing from the file")
    arrays = {name: entries[name] for name in _ARRAYS}
    _check_dtypes(p, arrays)
    splits = _read_splits(p, meta["splits"], arrays)
    best_epoch = _check_history(p, meta["history"], meta.get("best_epoch"))
    _check_arrays(p, arrays, splits)
    return AlphaNetResult(
        **arrays,
        splits=splits,
        history=meta["history"],
        best_epoch=best_epoch,
        config=meta["config"],
        timings=meta.get("timings", {}),
        val_baselines=_check_val_baselines(p, meta.get("val_baselines")),
    )


def _check_val_baselines(path: str, value: Any) -> dict | None:
    """``meta.val_baselines``: absent (older files) or name -> tau and top-1 per split."""
    if value is None:
        return None
    keys = ("tau", *SPLIT_NAMES, "overall")
    if not isinstance(value, dict):
        raise bad(path, "meta.val_baselines", "expected a JSON object")
    for name, figures in value.items():
        if not (isinstance(figures, dict) and all(_is_number(figures.get(k)) for k in keys)):
            raise bad(path, f"meta.val_baselines.{name}", f"expected numbers {', '.join(keys)}")
    return value
