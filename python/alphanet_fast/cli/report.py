"""The JSON reports: one builder for every command that writes one.

Every report is a JSON object that starts with ``alphanet_fast`` (the
version) and ``command``; the rest are the command's fields. NaN becomes
``null``; numpy values and paths are written as plain JSON.

Examples
--------
>>> r = build("neighbors", metric="cosine")
>>> list(r), r["command"]
(['alphanet_fast', 'command', 'metric'], 'neighbors')
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alphanet_fast.evaluation import SPLITS, EvaluationReport
from alphanet_fast.files._atomic import write_json

__all__ = ["build", "few_class_rows", "split_lists", "write"]


def build(command: str, **fields: Any) -> dict[str, Any]:
    """A report: the package version, the command, then ``fields`` in order."""
    from alphanet_fast import __version__

    return {"alphanet_fast": __version__, "command": command, **fields}


def write(path: str | os.PathLike[str], command: str, **fields: Any) -> Path:
    """Build a report (see :func:`build`) and write it atomically as JSON; returns the path."""
    return write_json(path, build(command, **fields))


def split_lists(splits: Any) -> dict[str, list[int]]:
    """``{"few": [...], "medium": [...], "many": [...]}``: the class ids of each split."""
    return {s: getattr(splits, s).tolist() for s in SPLITS[:3]}


def _no_nan(values: Sequence[float]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values]


def few_class_rows(
    few: np.ndarray,
    counts: np.ndarray,
    neighbors: np.ndarray,
    distances: np.ndarray,
    names: Sequence[str] | None = None,
    *,
    alphas: np.ndarray | None = None,
    before: EvaluationReport | None = None,
    after: EvaluationReport | None = None,
) -> list[dict[str, Any]]:
    """Per few class: training count, neighbours, distances, and optionally alphas and accuracy.

    Parameters
    ----------
    few : ndarray of int, shape (F,)
    counts : ndarray of int, shape (C,)
        Training samples per class.
    neighbors : ndarray of int, shape (F, k)
    distances : ndarray of float, shape (F, k)
        NaN (written as null) where there is none.
    names : sequence of str, optional
        Class names: adds ``name`` and ``neighbor_names``.
    alphas : ndarray, shape (F, k + 1), optional
    before, after : EvaluationReport, optional
        Add ``top1_before`` / ``top1_after`` (null for a class without samples).
    """
    rows = []
    for i, f in enumerate(few.tolist()):
        row: dict[str, Any] = {
            "class": f,
            "train_count": int(counts[f]),
            "neighbors": neighbors[i].tolist(),
            "distances": _no_nan(np.asarray(distances[i], dtype=np.float64).tolist()),
        }
        if alphas is not None:
            row["alphas"] = alphas[i].tolist()
        if names is not None:
            row["name"] = names[f]
            row["neighbor_names"] = [names[c] for c in neighbors[i]]
        for key, rep in (("top1_before", before), ("top1_after", after)):
            if rep is not None:
                row[key] = _no_nan([float(rep.per_class[1][f])])[0]
        rows.append(row)
    return rows
