"""Post-hoc baselines for a long-tailed classifier's last layer.

Every method takes what :func:`alphanet_fast.correct` takes (training features
as arrays, memory maps or ``.npy`` paths; labels; ``W``; ``b``; optional
``val=(features, labels)``) and returns a :class:`BaselineResult` whose ``W``
and ``b`` have the input ``W``'s shape and dtype, so :func:`alphanet_fast.evaluate`
and :func:`alphanet_fast.correct` apply to it unchanged:

* :func:`ncm`: nearest class mean (Euclidean or cosine, optionally "cl2n").
* :func:`tau_norm`: ``w_c / ||w_c||^tau``, tau given or chosen on ``val``.
* :func:`logit_adjust`: ``b_c - tau log(pi_c)``, tau given or chosen on ``val``.
* :func:`lws`: one learned scale per class, class-balanced (needs torch).
* :func:`crt`: a new linear layer, class-balanced (needs torch).

:data:`METHODS` holds one :class:`Method` record per method (its label,
function, whether it is seeded or chooses settings on validation, its help
line and the options :func:`alphanet_fast.compare` gives it).

Nothing here reads a test set: every choice is made on ``val``.
"""

from typing import TYPE_CHECKING, Any

from alphanet_fast.baselines._common import BaselineResult, FeatureTransform
from alphanet_fast.baselines.closed_form import DEFAULT_TAUS, logit_adjust, ncm, tau_norm
from alphanet_fast.baselines.methods import METHODS, Method

if TYPE_CHECKING:
    from alphanet_fast.baselines.trained import crt, lws

__all__ = [
    "DEFAULT_TAUS",
    "BaselineResult",
    "FeatureTransform",
    "METHODS",
    "Method",
    "crt",
    "logit_adjust",
    "lws",
    "ncm",
    "tau_norm",
]


def __getattr__(name: str) -> Any:
    # torch is imported only when a trained baseline is first used.
    if name in ("crt", "lws"):
        from alphanet_fast.baselines import trained

        return getattr(trained, name)
    raise AttributeError(f"module 'alphanet_fast.baselines' has no attribute {name!r}")
