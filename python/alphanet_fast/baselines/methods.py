"""One record per post-hoc method: what :func:`alphanet_fast.compare`, the command
line and the docs need to know about it.

Adding a method is one :class:`Method` in :data:`METHODS` and its function.
Nothing else keeps a table keyed by method name.

Examples
--------
>>> from alphanet_fast.baselines.methods import METHODS
>>> list(METHODS)
['ncm', 'tau_norm', 'logit_adjust', 'lws', 'crt']
>>> METHODS["tau_norm"].label, METHODS["tau_norm"].tunes
('tau-norm', ('tau',))
>>> METHODS["crt"].compare_defaults(n_rows=10_000, n_classes=100)["samples_per_epoch"]
6400
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from alphanet_fast.baselines._common import BaselineResult
from alphanet_fast.baselines.closed_form import logit_adjust, ncm, tau_norm

__all__ = ["METHODS", "Method"]


@dataclass(frozen=True, eq=False)
class Method:
    """A post-hoc method of :mod:`alphanet_fast.baselines`.

    Attributes
    ----------
    name : str
        Its key in :data:`METHODS` and its name on the command line (``tau_norm``).
    label : str
        Its row label in tables and plots (``"tau-norm"``).
    function : callable
        ``function(features, labels, W, b, **options) -> BaselineResult``.
    seeded : bool
        Trained with torch from random draws: takes ``seed`` and ``device``, and
        :func:`~alphanet_fast.compare` runs it once per seed.
    needs_val : bool
        Chooses its ``tunes`` on validation data (``val=``) unless they are given.
    tunes : tuple of str
        The settings it can choose on validation (``("tau",)``), empty if none.
    help : str
        One line for the command line and the docs.
    rescales : bool
        Its classifier is the given one with each row scaled and the biases
        changed (tau-norm, logit adjustment, LWS): :func:`~alphanet_fast.compare`
        derives its scores from the given classifier's instead of a new product.
    compare_options : mapping
        Options :func:`~alphanet_fast.compare` passes unless the user's
        ``options`` say otherwise; ``draws_per_class`` there becomes
        ``samples_per_epoch`` (see :meth:`compare_defaults`).
    """

    name: str
    label: str
    function: Callable[..., BaselineResult]
    seeded: bool
    needs_val: bool
    tunes: tuple[str, ...]
    help: str
    rescales: bool = False
    compare_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def compare_defaults(self, n_rows: int, n_classes: int) -> dict[str, Any]:
        """The keywords :func:`~alphanet_fast.compare` gives this method by default.

        ``draws_per_class`` becomes ``samples_per_epoch = min(n_rows,
        draws_per_class * n_classes)``: short runs on small data stay one pass.

        Parameters
        ----------
        n_rows : int
            Training rows.
        n_classes : int
            Rows of ``W``.

        Returns
        -------
        dict
        """
        kw = dict(self.compare_options)
        if "draws_per_class" in kw:
            kw["samples_per_epoch"] = min(n_rows, kw.pop("draws_per_class") * n_classes)
        return kw


def _lws(*args: Any, **kwargs: Any) -> BaselineResult:
    """:func:`alphanet_fast.baselines.lws`, imported (with torch) on first call."""
    from alphanet_fast.baselines.trained import lws

    return lws(*args, **kwargs)


def _crt(*args: Any, **kwargs: Any) -> BaselineResult:
    """:func:`alphanet_fast.baselines.crt`, imported (with torch) on first call."""
    from alphanet_fast.baselines.trained import crt

    return crt(*args, **kwargs)


# compare() shortens the trained methods' runs (their own defaults: 10 epochs of n
# draws) to keep a whole comparison near a minute on 2 cores: an epoch draws
# min(n, draws_per_class x C) rows, and cRT starts from the given classifier (from a
# random layer, 4 short epochs on the demo's 2,048-d features reached 44 % overall
# against the given 68 %; from the given one, 69 %). options={"crt": {"epochs": 10,
# "samples_per_epoch": None, "init": "random"}} restores the paper's recipe.
_RECORDS = (
    Method(
        name="ncm",
        label="NCM",
        function=ncm,
        seeded=False,
        needs_val=False,
        tunes=(),
        help="nearest class mean (cosine, cl2n), as an exact linear classifier",
    ),
    Method(
        name="tau_norm",
        label="tau-norm",
        function=tau_norm,
        seeded=False,
        needs_val=True,
        tunes=("tau",),
        rescales=True,
        help="tau-normalisation: w_c / ||w_c||^tau, tau given or chosen on validation",
    ),
    Method(
        name="logit_adjust",
        label="logit adjustment",
        function=logit_adjust,
        seeded=False,
        needs_val=True,
        tunes=("tau",),
        rescales=True,
        help="logit adjustment: b_c - tau log(pi_c), tau given or chosen on validation",
    ),
    Method(
        name="lws",
        label="LWS",
        function=_lws,
        seeded=True,
        needs_val=False,
        tunes=(),
        rescales=True,
        help="learnable weight scaling: one scale per class, class-balanced (torch)",
        compare_options=MappingProxyType({"epochs": 2, "draws_per_class": 32}),
    ),
    Method(
        name="crt",
        label="cRT",
        function=_crt,
        seeded=True,
        needs_val=False,
        tunes=(),
        help="classifier re-training: a new linear layer, class-balanced (torch)",
        compare_options=MappingProxyType({"epochs": 4, "draws_per_class": 64, "init": "given"}),
    ),
)

#: Every post-hoc method by name, in table order.
METHODS: dict[str, Method] = {m.name: m for m in _RECORDS}
