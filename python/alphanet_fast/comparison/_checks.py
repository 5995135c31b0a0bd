"""The checks of :func:`~alphanet_fast.compare`'s arguments, each error naming its argument.

Everything is checked here, before any method runs: a bad option of the last
AlphaNet row fails at once, not after the baselines have trained.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from alphanet_fast._errors import ArgumentError, fail
from alphanet_fast.baselines.methods import METHODS
from alphanet_fast.evaluation import SPLITS
from alphanet_fast.settings import Settings

__all__ = ["alphanet_options", "criterion", "names", "options", "rhos", "seed"]

# correct()'s keywords that compare() sets itself.
_SET_BY_COMPARE = ("rho", "seed", "val")
# correct()'s keywords besides its settings.
_OTHER_KEYWORDS = ("progress", "neighbors")


def criterion(value: Any) -> dict[str, float]:
    """``"overall"``, ``"few"`` or a mapping of split to weight, as a dict of weights."""
    if isinstance(value, str):
        if value not in ("overall", "few"):
            detail = f"expected 'overall', 'few' or a mapping of split to weight, found {value!r}"
            raise fail("criterion", detail, value=value)
        return {value: 1.0}
    if not isinstance(value, Mapping) or not value:
        detail = f"expected 'overall', 'few' or a mapping of split to weight, found {value!r}"
        raise fail("criterion", detail, type_error=not isinstance(value, Mapping))
    out = {}
    for split, weight in value.items():
        if split not in SPLITS:
            raise fail("criterion", f"unknown split {split!r}, expected one of {SPLITS}")
        if isinstance(weight, (bool, np.bool_)) or not isinstance(weight, numbers.Real):
            detail = f"the weight of {split!r} is {weight!r}, expected a number"
            raise fail("criterion", detail, value=weight, type_error=True)
        if not math.isfinite(weight) or weight < 0:
            detail = f"the weight of {split!r} is {weight!r}, expected a finite number >= 0"
            raise fail("criterion", detail, value=weight)
        out[split] = float(weight)
    if sum(out.values()) == 0:
        raise fail("criterion", "the weights sum to 0")
    return out


def names(value: Any, argument: str, allowed: Sequence[str]) -> tuple[str, ...]:
    """A sequence of names from ``allowed``, duplicates dropped, order kept."""
    if isinstance(value, str) or not isinstance(value, (Sequence, np.ndarray)):
        detail = f"expected a sequence of names from {tuple(allowed)}, found {value!r}"
        raise fail(argument, detail, type_error=True)
    for i, v in enumerate(value):
        if v not in allowed:
            detail = f"unknown method {v!r}, expected one of {tuple(allowed)}"
            raise fail(argument, detail, i, value=v)
    return tuple(dict.fromkeys(str(v) for v in value))


def rhos(value: Any) -> tuple[float, ...]:
    """A non-empty sequence of finite rhos >= 0, duplicates dropped."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise fail("rhos", f"expected a sequence of numbers, found {value!r}", type_error=True)
    out = []
    for i, r in enumerate(value):
        if isinstance(r, (bool, np.bool_)) or not isinstance(r, numbers.Real):
            detail = f"entry {i} is {r!r}, expected a number"
            raise fail("rhos", detail, i, value=r, type_error=True)
        if not math.isfinite(r) or r < 0:
            raise fail("rhos", f"entry {i} is {r!r}, expected a finite number >= 0", i, value=r)
        out.append(float(r))
    if not out:
        raise fail("rhos", "expected at least one rho")
    return tuple(dict.fromkeys(out))


def seed(value: Any) -> int:
    """The first seed: an integer >= 0."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        detail = f"expected a non-negative integer, found {value!r}"
        raise fail("seed", detail, value=value, type_error=True)
    if value < 0:
        raise fail("seed", f"expected a non-negative integer, found {value!r}", value=value)
    return int(value)


def options(value: Any, methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per-method keywords, for the methods that run (others are checked and dropped)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        detail = f"expected a mapping of method to keywords, found {value!r}"
        raise fail("options", detail, type_error=True)
    for key, kw in value.items():
        if key not in METHODS:
            detail = f"unknown method {key!r}, expected one of {tuple(METHODS)}"
            raise fail("options", detail, value=key)
        if not isinstance(kw, Mapping):
            detail = f"{key}: expected a mapping of keywords, found {kw!r}"
            raise fail("options", detail, type_error=True)
        if "seed" in kw or "val" in kw:
            raise fail("options", f"{key}: seed and val are set by compare()")
    return {k: dict(v) for k, v in value.items() if k in methods}


def alphanet_options(value: Any) -> dict[str, Any]:
    """Keywords of ``correct()`` (not ``rho``, ``seed``, ``val``), their values checked."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        detail = f"expected a mapping of correct()'s keywords, found {value!r}"
        raise fail("alphanet_options", detail, type_error=True)
    knobs = {f.name for f in dataclasses.fields(Settings)}
    for key in value:
        if key in _SET_BY_COMPARE:
            raise fail("alphanet_options", f"{key} is set by compare()", value=key)
        if key not in knobs and key not in _OTHER_KEYWORDS:
            raise fail("alphanet_options", f"{key!r} is not a keyword of correct()", value=key)
    try:
        Settings(**{k: v for k, v in value.items() if k in knobs})
    except ArgumentError as exc:
        # The setting at fault is in the message: "alphanet_options: k: expected ...".
        kind = isinstance(exc, TypeError)
        detail = f"{exc.argument}: {exc.detail}"
        raise fail("alphanet_options", detail, exc.row, value=exc.value, type_error=kind) from None
    return dict(value)
