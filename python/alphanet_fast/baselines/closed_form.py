"""The closed-form baselines: nearest class mean, tau-normalisation, logit adjustment."""

from __future__ import annotations

from typing import Any

import numpy as np

from alphanet_fast._errors import fail
from alphanet_fast._memory import release_rows, row_chunks
from alphanet_fast.baselines._common import (
    BaselineResult,
    FeatureTransform,
    Inputs,
    candidate_accuracies,
    check_inputs,
    check_val,
    cl2n_rows,
    grid,
    real_number,
)
from alphanet_fast.kernels import class_means, class_sums
from alphanet_fast.settings import DISTANCES

__all__ = [
    "DEFAULT_TAUS",
    "logit_adjust",
    "logit_adjust_candidates",
    "ncm",
    "tau_norm",
    "tau_norm_candidates",
]

#: The candidate taus searched on validation by default: 0, 0.1, ..., 2.0 (21 values).
DEFAULT_TAUS = tuple(round(0.1 * i, 1) for i in range(21))


def _require_every_class(inp: Inputs, method: str) -> None:
    empty = np.flatnonzero(inp.counts == 0)
    if empty.size:
        raise fail(
            "labels",
            f"class {int(empty[0])} has no training samples ({empty.size} classes "
            f"have none); {method} needs every class's training rows",
        )


def _cl2n_means(inp: Inputs, center: np.ndarray) -> np.ndarray:
    """Class means of the cl2n-transformed training rows, streamed in chunks."""
    n_classes = inp.W.shape[0]
    sums = np.zeros((n_classes, inp.x.shape[1]))
    for start, end in row_chunks(inp.x, 8 << 20):
        z = cl2n_rows(inp.x[start:end], center)
        sums += class_sums(z, inp.y[start:end], n_classes)[0]
        release_rows(inp.x, start, end)
    return sums / inp.counts[:, None]


def _unit_rows(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1)
    return m / np.where(norms > 0, norms, 1.0)[:, None]


def ncm(
    features: Any,
    labels: Any,
    W: Any,
    b: Any = None,
    *,
    metric: str = "cosine",
    cl2n: bool = True,
) -> BaselineResult:
    """Nearest class mean, written as an exact linear classifier.

    The class means come from the class-means kernel (one streaming pass;
    with ``cl2n`` a second pass over the transformed rows). Distances are
    turned into linear scores whose order per row is the order of the
    distances, so top-k of ``x @ W.T + b`` is top-k nearest mean:

    * Euclidean: ``argmin ||x - m_c||^2 = argmax x . m_c - ||m_c||^2 / 2``,
      so ``W_c = m_c``, ``b_c = -||m_c||^2 / 2``.
    * cosine: ``x . m_c / (||x|| ||m_c||)`` ranks as ``x . m_c / ||m_c||``
      (``||x||`` is the same for every class), so ``W_c = m_c / ||m_c||``, ``b = 0``.
    * cosine with cl2n (``x' = (x - mu) / ||x - mu||``, ``mu`` the mean training
      row, ``m'_c`` the class means of the ``x'``): ``x' . m'_c / ||m'_c||``
      ranks as ``(x - mu) . u_c`` with ``u_c = m'_c / ||m'_c||``, so
      ``W_c = u_c``, ``b_c = -mu . u_c``, applied to the raw features.
    * Euclidean with cl2n: ``||x' - m'_c||^2 = 1 + ||m'_c||^2 - 2 x' . m'_c`` is
      linear in ``x'`` but not in ``x``; ``W_c = m'_c``, ``b_c = -||m'_c||^2 / 2``
      apply to ``result.transform(x)``, which the result carries.

    Parameters
    ----------
    features : array_like or path, shape (n, d)
        Training features (memory maps are streamed).
    labels : array_like of int, shape (n,)
    W : array_like, shape (C, d)
        The given classifier: only its shape and dtype are used.
    b : array_like, shape (C,), optional
        Ignored apart from its checks (the means define the classifier).
    metric : {"cosine", "euclidean"}, default "cosine"
    cl2n : bool, default True
        Centre on the mean training row and L2-normalise first (Kang et al. 2020).

    Returns
    -------
    BaselineResult
        ``settings``: ``metric``, ``cl2n``. ``transform`` is set only for
        Euclidean cl2n. A class whose (transformed) mean is zero gets a zero row.

    Raises
    ------
    ValueError
        A class without training samples, bad shapes or values, an unknown metric.
    TypeError
        ``cl2n`` not a bool, arrays of the wrong dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from alphanet_fast.baselines import ncm
    >>> x = np.array([[0.0, 1.0], [0.0, 3.0], [2.0, 0.0]]); y = np.array([0, 0, 1])
    >>> res = ncm(x, y, np.zeros((2, 2)), metric="euclidean", cl2n=False)
    >>> res.W.tolist(), res.b.tolist()
    ([[0.0, 2.0], [2.0, 0.0]], [-2.0, -2.0])
    """
    if metric not in DISTANCES:
        raise fail("metric", f"expected one of {DISTANCES}, found {metric!r}", value=metric)
    if not isinstance(cl2n, (bool, np.bool_)):
        raise fail("cl2n", f"expected True or False, found {cl2n!r}", value=cl2n, type_error=True)
    inp = check_inputs(features, labels, W, b)
    _require_every_class(inp, "ncm")
    n_classes = inp.W.shape[0]
    means, _ = class_means(inp.x, inp.y, n_classes)
    transform = None
    if not cl2n:
        if metric == "euclidean":
            Wn, bn = means, -0.5 * np.einsum("ij,ij->i", means, means)
        else:
            Wn, bn = _unit_rows(means), np.zeros(n_classes)
    else:
        center = inp.counts @ means / inp.counts.sum()
        cmeans = _cl2n_means(inp, center)
        if metric == "cosine":
            Wn = _unit_rows(cmeans)
            bn = -(Wn @ center)
        else:
            Wn, bn = cmeans, -0.5 * np.einsum("ij,ij->i", cmeans, cmeans)
            transform = FeatureTransform(center=center)
    dtype = inp.W.dtype
    return BaselineResult(
        method="ncm",
        W=np.ascontiguousarray(Wn, dtype=dtype),
        b=bn.astype(dtype),
        settings={"metric": metric, "cl2n": bool(cl2n)},
        transform=transform,
    )


def _choose(
    inp: Inputs,
    tau: Any,
    taus: Any,
    val: Any,
    candidates: Any,
) -> tuple[float, dict[str, Any]]:
    """The given tau, or the grid value with the best validation top-1 (first on ties)."""
    if tau is not None:
        return real_number(tau, "tau"), {"tau_source": "given"}
    if val is None:
        raise fail("tau", "give tau, or val=(features, labels) to choose it on")
    values = grid(taus, "taus")
    vx, vy = check_val(val, inp.W.shape[1], inp.W.shape[0])
    scales, shifts = candidates(values)
    with np.errstate(over="ignore", invalid="ignore"):
        acc = candidate_accuracies(vx, vy, inp.W, scales, shifts)
    # A candidate whose scales or shifts overflow (or scales underflow to zero) is
    # never chosen over one that does not; a chosen one is refused by _in_range.
    overflow = np.zeros(values.size, dtype=bool)
    for part in (scales, shifts):
        if part is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                overflow |= ~np.isfinite(part.astype(inp.W.dtype)).all(axis=1)
    if scales is not None:
        overflow |= (scales == 0).any(axis=1)
    acc = np.where(overflow, -1.0, acc)
    best = int(np.argmax(acc))
    chosen = {
        "tau_source": "validation",
        "taus": values.tolist(),
        "val_accuracy": acc.tolist(),
    }
    return float(values[best]), chosen


def tau_norm_candidates(
    W: np.ndarray, b: np.ndarray, values: np.ndarray, bias: str = "scale"
) -> tuple[np.ndarray, np.ndarray]:
    """Tau-normalisation's column factors and biases for every tau of ``values``.

    Row ``j`` of the factors is ``1 / ||w_c||^values[j]`` per class (1 for a
    zero row); the biases are ``b`` times the factors (``bias="scale"``) or
    ``b`` itself (``"keep"``). Scores ``x @ W.T`` times a row of factors plus
    the biases are the scores of the tau-normalised classifier.
    """
    norms = np.linalg.norm(W.astype(np.float64), axis=1)
    b64 = b.astype(np.float64)
    # Overflow is allowed here: a chosen tau that leaves the dtype's range is
    # refused by _in_range, and one that overflows is never chosen.
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        f = np.where(norms > 0, norms, 1.0)[None, :] ** -values[:, None]
        return f, (f * b64 if bias == "scale" else np.broadcast_to(b64, f.shape))


def logit_adjust_candidates(
    counts: np.ndarray, b: np.ndarray, values: np.ndarray
) -> tuple[None, np.ndarray]:
    """Logit adjustment's biases ``b_c - tau log(pi_c)`` for every tau of ``values``
    (no column factors: ``W`` is unchanged). Every class needs training samples."""
    log_pi = np.log(counts / counts.sum())
    with np.errstate(over="ignore", invalid="ignore"):  # checked once tau is chosen
        return None, b.astype(np.float64) - np.outer(values, log_pi)


def _in_range(
    arrays: dict[str, np.ndarray], dtype: np.dtype, tau: float, chosen: dict, nonzero: Any = None
) -> None:
    """Refuse a tau whose weights or biases leave ``dtype``'s range (infinity or NaN),
    or that turns a non-zero weight row (``nonzero``) into zeros."""
    argument = "tau" if chosen.get("tau_source") == "given" else "taus"
    for name, arr in arrays.items():
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            narrow = arr.astype(dtype)
        bad = ~np.isfinite(narrow).reshape(narrow.shape[0], -1).all(axis=1)
        if name == "weights" and nonzero is not None:
            bad |= nonzero & ~narrow.any(axis=1)  # underflow: every score would tie
        rows = np.flatnonzero(bad)
        if rows.size:
            c = int(rows[0])
            raise fail(
                argument,
                f"tau={tau:g} takes the {name} of class {c} beyond {np.dtype(dtype)}'s range "
                "(to infinity, NaN or zero); use a tau of smaller magnitude",
                row=c,
                value=tau,
            )


def tau_norm(
    features: Any,
    labels: Any,
    W: Any,
    b: Any = None,
    *,
    tau: float | None = None,
    taus: Any = DEFAULT_TAUS,
    val: tuple[Any, Any] | None = None,
    bias: str = "scale",
) -> BaselineResult:
    """Tau-normalisation (Kang et al. 2020): ``w_c / ||w_c||^tau``.

    ``tau = 0`` is the given classifier, ``tau = 1`` gives every class a unit
    weight vector. The bias: with ``bias="scale"`` (default) ``b_c`` is divided
    by the same ``||w_c||^tau``, so the whole logit of class ``c`` is scaled
    (as LWS scales it); with ``bias="keep"`` it is left as it is. A zero row of
    ``W`` is left as it is.

    Parameters
    ----------
    features, labels : training data
        Checked as for :func:`alphanet_fast.correct`; not read otherwise.
    W, b : the classifier
    tau : float, optional
        Use this tau. Otherwise it is chosen on ``val``.
    taus : sequence of float, default 0, 0.1, ..., 2.0
        Candidates tried on ``val``; the best validation top-1 wins, the
        earliest in the grid on ties. The validation rows are scored against
        ``W`` once; each candidate is a column scaling of those scores.
    val : (features, labels), optional
        Validation data; never the test set.
    bias : {"scale", "keep"}, default "scale"

    Returns
    -------
    BaselineResult
        ``settings``: ``tau``, ``bias``, ``tau_source`` and, when searched,
        ``taus`` and ``val_accuracy``.

    Raises
    ------
    ValueError
        Neither ``tau`` nor ``val``, an empty grid, a non-finite value, bad
        shapes, or a tau that takes a class's weights or bias beyond ``W``'s
        dtype (to infinity, or a non-zero row to zero), named as ``tau`` (or
        ``taus`` when chosen on validation; a grid value that overflows is
        never chosen over one that does not, and its ``val_accuracy`` is -1).
    TypeError
        Non-numeric ``tau``/``taus``, a malformed ``val``.

    Examples
    --------
    >>> import numpy as np
    >>> from alphanet_fast.baselines import tau_norm
    >>> res = tau_norm(np.zeros((2, 2)), [0, 1], np.array([[3.0, 4.0], [0.0, 1.0]]), tau=1.0)
    >>> np.round(res.W, 6).tolist()
    [[0.6, 0.8], [0.0, 1.0]]
    """
    if bias not in ("scale", "keep"):
        raise fail("bias", f"expected 'scale' or 'keep', found {bias!r}", value=bias)
    inp = check_inputs(features, labels, W, b)
    b64 = inp.b.astype(np.float64)

    def candidates(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return tau_norm_candidates(inp.W, inp.b, values, bias)

    chosen_tau, chosen = _choose(inp, tau, taus, val, candidates)
    f = candidates(np.array([chosen_tau]))[0][0]
    dtype = inp.W.dtype
    nonzero = np.linalg.norm(inp.W.astype(np.float64), axis=1) > 0
    with np.errstate(over="ignore", invalid="ignore"):
        W_new = inp.W.astype(np.float64) * f[:, None]
        b_new = b64 * f if bias == "scale" else b64
    _in_range({"weights": W_new, "bias": b_new}, dtype, chosen_tau, chosen, nonzero=nonzero)
    return BaselineResult(
        method="tau_norm",
        W=np.ascontiguousarray(W_new, dtype=dtype),
        b=b_new.astype(dtype),
        settings={"tau": chosen_tau, "bias": bias, **chosen},
    )


def logit_adjust(
    features: Any,
    labels: Any,
    W: Any,
    b: Any = None,
    *,
    tau: float | None = None,
    taus: Any = DEFAULT_TAUS,
    val: tuple[Any, Any] | None = None,
) -> BaselineResult:
    """Post-hoc logit adjustment (Menon et al. 2021): ``b_c - tau * log(pi_c)``.

    ``pi`` are the training class frequencies (from ``labels``); ``W`` is
    unchanged. ``tau = 1`` is the Bayes-optimal correction for a balanced
    test set under the paper's assumptions.

    Parameters
    ----------
    features, labels : training data
        ``labels`` give the class frequencies; ``features`` are only checked.
    W, b : the classifier
    tau : float, optional
        Use this tau. Otherwise it is chosen on ``val``.
    taus : sequence of float, default 0, 0.1, ..., 2.0
        Candidates tried on ``val`` (best validation top-1, earliest on ties);
        the validation rows are scored once, each candidate is a column shift.
    val : (features, labels), optional

    Returns
    -------
    BaselineResult
        ``settings``: ``tau``, ``tau_source`` and, when searched, ``taus`` and
        ``val_accuracy``.

    Raises
    ------
    ValueError
        A class without training samples (its log-frequency is -inf), neither
        ``tau`` nor ``val``, bad shapes or values, or a tau that takes a bias
        beyond ``W``'s dtype (named as ``tau``, or ``taus`` when searched).
    TypeError
        Non-numeric ``tau``/``taus``, a malformed ``val``.

    Examples
    --------
    >>> import numpy as np
    >>> from alphanet_fast.baselines import logit_adjust
    >>> res = logit_adjust(np.zeros((4, 1)), [0, 0, 0, 1], np.ones((2, 1)), tau=1.0)
    >>> np.round(res.b, 3).tolist()
    [0.288, 1.386]
    """
    inp = check_inputs(features, labels, W, b)
    _require_every_class(inp, "logit_adjust")
    log_pi = np.log(inp.counts / inp.counts.sum())
    b64 = inp.b.astype(np.float64)

    def candidates(values: np.ndarray) -> tuple[None, np.ndarray]:
        return logit_adjust_candidates(inp.counts, inp.b, values)

    chosen_tau, chosen = _choose(inp, tau, taus, val, candidates)
    dtype = inp.W.dtype
    with np.errstate(over="ignore", invalid="ignore"):
        b_new = b64 - chosen_tau * log_pi
    _in_range({"bias": b_new}, dtype, chosen_tau, chosen)
    return BaselineResult(
        method="logit_adjust",
        W=np.array(inp.W, dtype=dtype, order="C", copy=True),
        b=b_new.astype(dtype),
        settings={"tau": chosen_tau, **chosen},
    )
