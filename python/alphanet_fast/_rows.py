"""Feature matrices that live elsewhere (a Dask cluster), read row by row.

:func:`alphanet_fast.correct` needs only class means (one reduction) and the
rows it samples; a :class:`RowSource` gives it exactly those, so the whole
matrix is never brought to the training process.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class RowSource:
    """A 2-d float matrix that can gather rows and reduce itself to class means.

    Subclasses implement :meth:`gather` and :meth:`class_means`; the rest of
    the interface is what numpy's ``np.take(x, rows, axis=0, out=...)`` needs.
    """

    ndim = 2

    def __init__(self, shape: tuple[int, int], dtype: np.dtype):
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """The rows ``rows`` (sorted, distinct) as a numpy array."""
        raise NotImplementedError

    def class_means(self, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-class means and counts, as :func:`alphanet_fast.class_means`."""
        raise NotImplementedError

    def take(self, indices: Any, axis: int = 0, out: Any = None, mode: str = "raise") -> np.ndarray:
        if axis != 0:
            raise ValueError("axis: only rows (axis=0) can be taken")
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if mode == "clip":
            idx = np.clip(idx, 0, self.shape[0] - 1)
        elif idx.size and (idx.min() < 0 or idx.max() >= self.shape[0]):
            raise IndexError(f"row index out of range for {self.shape[0]} rows")
        unique, inverse = np.unique(idx, return_inverse=True)
        rows = self.gather(unique)[inverse.reshape(-1)]
        if out is None:
            return rows
        out[...] = rows
        return out

    def __getitem__(self, rows: Any) -> np.ndarray:
        return self.take(rows)
