"""The method's settings: every knob of :func:`alphanet_fast.correct`, its default
and its valid range, declared once.

``correct()``'s keyword defaults, the command line's flags (their names, types,
defaults and help), the demo and a result's ``config`` are all derived from
:class:`Settings`; nothing else writes a default down again.

Examples
--------
>>> from alphanet_fast.settings import Settings
>>> s = Settings(rho=0.5)
>>> s.rho, s.k, s.hidden
(0.5, 5, (32, 32, 32))
>>> Settings(k=0)
Traceback (most recent call last):
...
alphanet_fast._errors.ArgumentError: k: expected an integer >= 1, found 0
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alphanet_fast._errors import fail

__all__ = ["DISTANCES", "METRICS", "FEW_BELOW", "MANY_ABOVE", "Settings", "knob"]

#: The distances between rows (class means, or any features) that the neighbour
#: kernel and nearest-class-mean classification compute.
DISTANCES = ("euclidean", "cosine")
#: How ``correct()`` chooses neighbours: by one of the distances, or at random.
METRICS = (*DISTANCES, "random")

# Split thresholds on training counts: few < FEW_BELOW <= medium <= MANY_ABOVE < many.
FEW_BELOW = 20
MANY_ABOVE = 100


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _not_an_integer(value: Any, name: str) -> Exception:
    found = f"{type(value).__name__} {value!r}"
    return fail(name, f"expected an integer, found {found}", value=value, type_error=True)


def check_positive_int(value: Any, name: str) -> int:
    """``value`` as a Python int >= 1 (a TypeError for a non-integer, a ValueError below 1)."""
    if not _is_int(value):
        raise _not_an_integer(value, name)
    if value < 1:
        raise fail(name, f"expected an integer >= 1, found {value}", value=value)
    return int(value)


def check_count(value: Any, name: str) -> int:
    """A split threshold on training counts: an integer >= 0."""
    if not _is_int(value):
        raise _not_an_integer(value, name)
    if value < 0:
        raise fail(name, f"expected a non-negative integer, found {value}", value=value)
    return int(value)


def check_seed(value: Any, name: str = "seed") -> int:
    """A seed numpy and torch both accept: an integer in [0, 2**63)."""
    if not _is_int(value) or not 0 <= value < 2**63:
        raise fail(name, f"expected an integer in [0, 2**63), found {value!r}", value=value)
    return int(value)


def check_number(value: Any, name: str, *, minimum: float, strict: bool) -> float:
    """A finite real >= ``minimum`` (> when ``strict``) as a Python float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        found = f"{type(value).__name__} {value!r}"
        raise fail(name, f"expected a real number, found {found}", value=value, type_error=True)
    value = float(value)
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        detail = f"expected a finite number {relation} {minimum:g}, found {value!r}"
        raise fail(name, detail, value=value)
    return value


def check_hidden(value: Any, name: str = "hidden") -> tuple[int, ...]:
    """Hidden layer widths: a sequence of positive integers (a bad one is ``.row``)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        detail = f"expected a sequence of layer widths, found {value!r}"
        raise fail(name, detail, value=value, type_error=True)
    for i, h in enumerate(value):
        if not _is_int(h):
            detail = f"entry {i} is {type(h).__name__} {h!r}, expected an integer"
            raise fail(name, detail, i, value=h, type_error=True)
        if h < 1:
            raise fail(name, f"entry {i} is {h}, expected an integer >= 1", i, value=h)
    return tuple(int(h) for h in value)


def check_metric(value: Any, name: str = "metric") -> str:
    if value not in METRICS:
        raise fail(name, f"expected one of {METRICS}, found {value!r}", value=value)
    return str(value)


def _positive_real(name: str) -> Any:
    return lambda v: check_number(v, name, minimum=0.0, strict=True)


def _non_negative_real(name: str) -> Any:
    return lambda v: check_number(v, name, minimum=0.0, strict=False)


def knob(default: Any, help: str, check: Any, *, metavar: str | None = None) -> Any:
    """A settings field: its default, its help text (the CLI's), and its check.

    ``check`` takes the value and returns it normalised or raises, through
    :func:`~alphanet_fast._errors.fail`, an error whose ``.argument`` is the
    setting's name.
    """
    factory = {"default_factory": lambda: default} if isinstance(default, list) else {}
    kwargs = factory or {"default": default}
    return field(metadata={"help": help, "check": check, "metavar": metavar}, **kwargs)


@dataclass(frozen=True)
class Settings:
    """Every knob of the method, checked on construction.

    Each field's ``metadata`` holds its help text and its check; the command
    line builds its flags from :func:`dataclasses.fields` of this class.
    ``device`` is only checked for its type here: whether CUDA exists is asked
    of torch when training starts.
    """

    k: int = knob(
        5,
        "neighbours (base classes) per few class",
        lambda v: check_positive_int(v, "k"),
        metavar="K",
    )
    metric: str = knob(
        "euclidean",
        "neighbour distance: euclidean, cosine, or random (the paper's control)",
        check_metric,
    )
    rho: float = knob(
        1.0,
        "base samples per few sample each epoch; smaller favours few classes",
        _non_negative_real("rho"),
        metavar="X",
    )
    epochs: int = knob(
        25, "training epochs", lambda v: check_positive_int(v, "epochs"), metavar="N"
    )
    batch_size: int = knob(
        64, "batch size", lambda v: check_positive_int(v, "batch_size"), metavar="N"
    )
    lr: float = knob(1e-3, "AdamW learning rate", _positive_real("lr"), metavar="X")
    weight_decay: float = knob(
        0.01, "AdamW weight decay", _non_negative_real("weight_decay"), metavar="X"
    )
    lr_step: int = knob(
        10,
        "StepLR: epochs between learning-rate drops",
        lambda v: check_positive_int(v, "lr_step"),
        metavar="N",
    )
    lr_gamma: float = knob(
        0.1, "StepLR: factor of each drop", _positive_real("lr_gamma"), metavar="X"
    )
    hidden: tuple[int, ...] = knob(
        (32, 32, 32), "hidden layer widths of the network", check_hidden, metavar="N"
    )
    few_below: int = knob(
        FEW_BELOW,
        "a class with fewer training samples is few",
        lambda v: check_count(v, "few_below"),
        metavar="N",
    )
    many_above: int = knob(
        MANY_ABOVE,
        "a class with more training samples is many",
        lambda v: check_count(v, "many_above"),
        metavar="N",
    )
    score_scale: float = knob(
        1.0,
        "multiply every score (the paper used 100 for tiny weights)",
        _positive_real("score_scale"),
        metavar="X",
    )
    min_epochs: int = knob(
        5,
        "first epoch eligible when the validation set picks the best",
        lambda v: check_positive_int(v, "min_epochs"),
        metavar="N",
    )
    device: Any = knob(
        "auto", "torch device: auto (CUDA if available), cpu, cuda, cuda:1, ...", lambda v: v
    )
    seed: int = knob(
        0, "seed of the initialisation, the sampling and random neighbours", check_seed, metavar="N"
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            checked = f.metadata["check"](getattr(self, f.name))
            object.__setattr__(self, f.name, checked)
        if self.few_below > self.many_above + 1:
            detail = (
                f"expected at most many_above + 1 = {self.many_above + 1} so that no class "
                f"is both few and many, found {self.few_below}"
            )
            raise fail("few_below", detail, value=self.few_below)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every setting's default, by name."""
        return {f.name: f.default for f in dataclasses.fields(cls)}

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-friendly values (tuples as lists, devices as text)."""
        out = dataclasses.asdict(self)
        out["hidden"] = list(self.hidden)
        out["device"] = str(self.device)
        return out
