"""Few / medium / many splits of the classes by their training counts.

The thresholds' defaults are :data:`alphanet_fast.settings.FEW_BELOW` and
:data:`~alphanet_fast.settings.MANY_ABOVE`, written nowhere else.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from alphanet_fast._errors import fail
from alphanet_fast._validation import int_array
from alphanet_fast.settings import FEW_BELOW, MANY_ABOVE, check_count
from alphanet_fast.typing import ArrayLike

__all__ = ["SPLIT_NAMES", "Splits", "splits_from_counts"]

SPLIT_NAMES = ("few", "medium", "many")


def _class_ids(value: Any, name: str, n_classes: int) -> np.ndarray:
    ids = int_array(value, name) if np.size(value) else np.zeros(0, dtype=np.int64)
    bad = np.flatnonzero((ids < 0) | (ids >= n_classes))
    if bad.size:
        i = int(bad[0])
        raise fail(name, f"entry {i} is {ids[i]}, expected a class id in [0, {n_classes})", i)
    return np.sort(ids)


@dataclass(frozen=True, eq=False)
class Splits:
    """The class ids of each split.

    Attributes
    ----------
    few, medium, many : ndarray of int64
        Sorted class ids; together they cover ``range(n_classes)`` exactly once.
    n_classes : int
        Number of classes.

    Examples
    --------
    >>> import alphanet_fast as af
    >>> s = af.splits_from_counts([5, 50, 500])
    >>> s.few, s.medium, s.many, s.base
    (array([0]), array([1]), array([2]), array([1, 2]))
    >>> s.split_of()
    array(['few', 'medium', 'many'], dtype='<U6')
    """

    few: np.ndarray
    medium: np.ndarray
    many: np.ndarray
    n_classes: int

    def __post_init__(self) -> None:
        if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, numbers.Integral):
            detail = f"expected an integer, found {self.n_classes!r}"
            raise fail("n_classes", detail, value=self.n_classes, type_error=True)
        n = int(self.n_classes)
        if n < 0:
            raise fail("n_classes", f"expected a non-negative integer, found {n}", value=n)
        object.__setattr__(self, "n_classes", n)
        seen = np.zeros(n, dtype=np.int64)
        for name in SPLIT_NAMES:
            ids = _class_ids(getattr(self, name), name, n)
            ids.setflags(write=False)  # frozen means frozen: no edits through the arrays either
            object.__setattr__(self, name, ids)
            np.add.at(seen, ids, 1)
            twice = np.flatnonzero(seen > 1)
            if twice.size:  # named by the split where the class is seen again
                raise fail(name, f"class {int(twice[0])} is in more than one split")
        missing = np.flatnonzero(seen == 0)
        if missing.size:
            raise fail("n_classes", f"class {int(missing[0])} is in no split")

    @property
    def base(self) -> np.ndarray:
        """Sorted class ids of the base classes (medium and many)."""
        return np.union1d(self.medium, self.many)

    def split_of(self) -> np.ndarray:
        """The split name ("few", "medium" or "many") of every class, shape ``(n_classes,)``."""
        out = np.empty(self.n_classes, dtype="<U6")
        for name in SPLIT_NAMES:
            out[getattr(self, name)] = name
        return out

    def to_dict(self) -> dict:
        """JSON-friendly form: plain lists of ints."""
        return {
            "few": self.few.tolist(),
            "medium": self.medium.tolist(),
            "many": self.many.tolist(),
            "n_classes": self.n_classes,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Splits:
        """Inverse of :meth:`to_dict`."""
        missing = [key for key in (*SPLIT_NAMES, "n_classes") if key not in data]
        if missing:
            raise fail("data", f"missing keys {missing}; expected few, medium, many, n_classes")
        return cls(
            few=np.asarray(data["few"], dtype=np.int64),
            medium=np.asarray(data["medium"], dtype=np.int64),
            many=np.asarray(data["many"], dtype=np.int64),
            n_classes=data["n_classes"],
        )

    def __repr__(self) -> str:
        return (
            f"Splits(n_classes={self.n_classes}, few={self.few.size}, "
            f"medium={self.medium.size}, many={self.many.size})"
        )


def splits_from_counts(
    counts: ArrayLike, *, few_below: int = FEW_BELOW, many_above: int = MANY_ABOVE
) -> Splits:
    """Split classes by training count: few if ``n_c < few_below``, many if ``n_c > many_above``.

    Parameters
    ----------
    counts : array_like of int, shape (C,)
        Training samples per class (``np.bincount(labels, minlength=C)``).
    few_below : int, default 20
        A class with fewer training samples is "few".
    many_above : int, default 100
        A class with more training samples is "many"; the rest are "medium".

    Returns
    -------
    Splits

    Raises
    ------
    TypeError
        Non-integer counts or thresholds.
    ValueError
        Negative counts, ``counts`` not 1-d, or ``few_below > many_above + 1``
        (the two ranges would overlap).

    Examples
    --------
    >>> import alphanet_fast as af
    >>> af.splits_from_counts([3, 20, 100, 101], few_below=20, many_above=100)
    Splits(n_classes=4, few=1, medium=2, many=1)
    """
    n = int_array(counts, "counts")
    negative = np.flatnonzero(n < 0)
    if negative.size:
        i = int(negative[0])
        raise fail("counts", f"entry {i} is {n[i]}, counts must be non-negative", i)
    few_below = check_count(few_below, "few_below")
    many_above = check_count(many_above, "many_above")
    if few_below > many_above + 1:
        raise fail(
            "few_below",
            f"expected at most many_above + 1 = {many_above + 1} so that no class is "
            f"both few and many, found {few_below}",
            value=few_below,
        )
    few = np.flatnonzero(n < few_below)
    many = np.flatnonzero(n > many_above)
    medium = np.flatnonzero((n >= few_below) & (n <= many_above))
    return Splits(few=few, medium=medium, many=many, n_classes=n.shape[0])
