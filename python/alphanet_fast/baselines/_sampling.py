"""Class-balanced row draws for the re-training baselines (LWS, cRT).

One function, :func:`balanced_rows`: a class uniformly, then a row of it
uniformly. It is the only place the baselines draw training rows, so a shared
sampler can replace it without touching the methods.
"""

from __future__ import annotations

import numpy as np

__all__ = ["balanced_rows"]


def balanced_rows(labels: np.ndarray, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """``n_draws`` row indices drawn with replacement, class-balanced.

    Each draw picks a class uniformly among the classes with at least one row,
    then a row of that class uniformly: a row of class ``c`` has probability
    ``1 / (n_present * n_c)``.

    Parameters
    ----------
    labels : ndarray of int64, shape (n,)
        Training labels (checked by the caller).
    n_draws : int
        Rows to draw.
    rng : numpy.random.Generator
        The only source of randomness: same generator state, same rows.

    Returns
    -------
    ndarray of int64, shape (n_draws,)
    """
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels)
    present = np.flatnonzero(counts)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    cls = present[rng.integers(0, present.size, size=n_draws)]
    return order[starts[cls] + rng.integers(0, counts[cls])]
