"""Scoring a comparison's runs with each product computed once per split.

Tau-norm, logit adjustment and LWS rescale or shift the given classifier's
scores per class, and an AlphaNet run changes only its base's few-class
columns, each a combination of base columns. So the rows fall into a few
*families*, one per classifier whose raw scores ``x @ W.T`` are computed (the
given one, NCM, cRT per seed); every run of a family is a cheap map of those
scores: ``A[:, c] = scale_c P[:, c] + b_c``, and for the few classes
``A[:, f] = sum_j coef_fj P[:, idx_fj] + b_f``.

The figures must be exactly those of scoring each run alone
(:func:`alphanet_fast.evaluate`, i.e. the top-k kernel on the run's own ``W``
and ``b``), whose float rounding differs from the map's. So every derived
score carries a rigorous bound on its distance to the kernel's score
(``E = alpha ||x|| + beta``, from the worst-case error of a float dot product
of length ``d`` in any summation order, and the exact remainder
``W_run - map(W_family)``). A row whose top-k decision for its label could
change within the bounds is scored again by the kernel itself, placed at its
own position in a block of the kernel's block size (a row's scores depend only
on that position, which is what lets the kernel stream in blocks), so its
figures are the kernel's bits. At the ImageNet-LT shape (``compare(seeds=1)``,
15 runs on 20,000 validation and 50,000 test rows) 1.4 % of the rows of the
runs are scored again (``benches/compare_table.py``), and the whole scoring
takes about 2/5 of scoring every run on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from alphanet_fast import _core
from alphanet_fast._memory import release_rows
from alphanet_fast.evaluation import EvaluationReport, _report

__all__ = ["Derived", "Family", "derive", "hits_report", "score_split"]

#: Rows scored together: a block's raw scores for every family are held at once.
BLOCK_ROWS = 2048
_BLOCK = _core.TOPK_ROW_BLOCK


def _gamma(n: int, dtype: np.dtype) -> float:
    """The worst-case relative error factor of ``n`` roundings, ``n u / (1 - n u)``."""
    u = float(np.finfo(dtype).eps) / 2
    return n * u / (1 - n * u)


@dataclass(frozen=True, eq=False)
class Family:
    """A classifier whose raw scores ``features @ W.T`` are computed for every row.

    ``W`` is in the features' dtype and C order; ``features`` are the split's
    rows as this classifier reads them (``transform(x)`` for Euclidean cl2n NCM).
    """

    W: np.ndarray
    W64: np.ndarray = field(init=False, repr=False)
    norms: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "W64", self.W.astype(np.float64))
        object.__setattr__(self, "norms", np.linalg.norm(self.W64, axis=1))


@dataclass(frozen=True, eq=False)
class Derived:
    """A run's scores as a map of one family's raw scores, with their error bound.

    Build with :func:`derive`. ``W``, ``b`` are the run's classifier in the
    features' dtype (what the kernel scores); ``alpha``, ``beta`` bound
    ``|map score - kernel score| <= alpha ||x|| + beta`` for every class.
    """

    family: int
    W: np.ndarray
    b: np.ndarray
    scale: np.ndarray | None
    few: np.ndarray
    idx: np.ndarray
    coef: np.ndarray
    alphas: np.ndarray
    betas: np.ndarray
    alpha: float
    beta: float


def derive(
    family_index: int,
    family: Family,
    W: np.ndarray,
    b: np.ndarray,
    scale: np.ndarray | None = None,
    combos: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Derived:
    """The run ``(W, b)`` as ``scale`` times ``family``'s columns, few rows as combinations.

    Parameters
    ----------
    family_index : int
    family : Family
    W, b : ndarray
        The run's classifier (any float dtype; scored in the family's dtype).
    scale : ndarray of shape (C,), optional
        Per-class factors (default ones).
    combos : (few (F,), idx (F, m), coef (F, m)), optional
        Rows ``few`` are ``sum_j coef[:, j] * family.W[idx[:, j]]`` instead.

    Returns
    -------
    Derived
        Its bound comes from the actual remainder ``W - map(family.W)``, so a
        wrong ``scale`` or ``combos`` costs speed (rows scored again), never
        exactness.
    """
    dt = family.W.dtype
    Wr = np.ascontiguousarray(W, dtype=dt)
    br = np.asarray(b, dtype=dt)
    n_classes, d = Wr.shape
    s = np.ones(n_classes) if scale is None else np.asarray(scale, dtype=np.float64)
    s = s.astype(dt).astype(np.float64)  # the factors as they are applied
    F64 = family.W64
    mapped = F64 * s[:, None]
    G = np.abs(s) * family.norms
    terms = np.ones(n_classes, dtype=np.int64)
    few = np.zeros(0, dtype=np.int64)
    idx = np.zeros((0, 1), dtype=np.int64)
    coef = np.zeros((0, 1), dtype=dt)
    if combos is not None and len(combos[0]):
        few = np.asarray(combos[0], dtype=np.int64)
        idx = np.asarray(combos[1], dtype=np.int64)
        coef = np.asarray(combos[2], dtype=np.float64).astype(dt)
        c64 = coef.astype(np.float64)
        mapped[few] = np.einsum("fm,fmd->fd", c64, F64[idx])
        G[few] = (np.abs(c64) * family.norms[idx]).sum(axis=1)
        terms[few] = idx.shape[1]
    remainder = np.linalg.norm(Wr.astype(np.float64) - mapped, axis=1)
    g_dot, g_kernel = _gamma(d, dt), _gamma(d + 1, dt)
    g_map = np.array([_gamma(int(m) + 1, dt) for m in terms]) * (1 + g_dot)
    # float64 slack of computing the remainder itself.
    w_norms = np.linalg.norm(Wr.astype(np.float64), axis=1)
    slack = 8 * (terms + 2) * np.finfo(np.float64).eps * (G + w_norms)
    alpha = remainder + g_dot * G + g_map * G + g_kernel * w_norms + slack
    beta = g_map * np.abs(br) + g_kernel * np.abs(br)
    return Derived(
        family=family_index, W=Wr, b=br,
        scale=None if scale is None else s.astype(dt),
        few=few, idx=idx, coef=coef,
        alphas=1.01 * alpha, betas=1.01 * beta + 1e-30,
        alpha=1.01 * float(alpha.max()), beta=1.01 * float(beta.max()) + 1e-30,
    )  # fmt: skip


def _norms(xb: np.ndarray) -> np.ndarray:
    """Upper bounds of the rows' L2 norms (float64), from one pass in their own dtype.

    A sum of ``d`` squares in any order is within ``gamma_d`` of its value, so
    ``sqrt(s / (1 - gamma_d))`` bounds the norm from above.
    """
    sq = np.einsum("ij,ij->i", xb, xb).astype(np.float64)
    return np.sqrt(sq / (1 - _gamma(xb.shape[1] + 1, xb.dtype))) * (1 + 1e-12)


def _mapped(P: np.ndarray, run: Derived, out: np.ndarray) -> np.ndarray:
    """The run's scores of a block from its family's raw scores ``P``."""
    if run.scale is None:
        np.add(P, run.b, out=out)
    else:
        np.multiply(P, run.scale, out=out)
        out += run.b
    if run.few.size:
        out[:, run.few] = (P[:, run.idx] * run.coef).sum(axis=2) + run.b[run.few]
    return out


def _decide(
    A: np.ndarray, y: np.ndarray, norms: np.ndarray, run: Derived, ks: Sequence[int]
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Per k, whether the label is in the kernel's top k, and the rows where that is unsure.

    ``A`` (overwritten) holds the run's scores of a block; the kernel's are within
    ``E_c = alphas_c ||x|| + betas_c`` of them, and ties in the kernel go to the
    lower class, so a class ``c`` ranks surely above the label ``y`` only when
    ``A_c - E_c > A_y + E_y``, surely below when ``A_c + E_c < A_y - E_y``.
    A first pass takes twice the largest ``E`` of the row for ``E_c + E_y``; the
    rows it leaves unsure are decided again with each class's own bound.
    """
    rows = np.arange(A.shape[0])
    ay = A[rows, y].astype(np.float64)
    bound = run.alpha * norms + run.beta
    dt = A.dtype
    hi = np.nextafter((ay + 2 * bound).astype(dt), np.inf)  # above it: surely above y
    lo = np.nextafter((ay - 2 * bound).astype(dt), -np.inf)  # below it: surely below y
    A[rows, y] = -np.inf
    top = A.max(axis=1)
    first = top < lo  # y surely the top class
    hits = {k: first.copy() for k in ks}
    unsure = ~first & (top <= hi)
    rest = np.flatnonzero(~first)
    if rest.size and max(ks) > 1:
        sub = A[rest]
        above = np.count_nonzero(sub > hi[rest, None], axis=1)
        maybe = np.count_nonzero(sub >= lo[rest, None], axis=1)
        for k in ks:
            if k > 1:
                hits[k][rest] = maybe < k
                unsure[rest] |= (maybe >= k) & (above < k)
    doubt = np.flatnonzero(unsure)
    if doubt.size:
        unsure[doubt] = _refine(A[doubt], ay[doubt], y[doubt], norms[doubt], run, ks, hits, doubt)
    return hits, unsure


def _refine(
    sub: np.ndarray,
    ay: np.ndarray,
    y: np.ndarray,
    norms: np.ndarray,
    run: Derived,
    ks: Sequence[int],
    hits: dict[int, np.ndarray],
    at: np.ndarray,
) -> np.ndarray:
    """:func:`_decide` for a few rows with each class's own bound; fills ``hits[k][at]``
    and returns which of the rows are still unsure (the label's column is -inf)."""
    E = norms[:, None] * run.alphas + run.betas
    ey = E[np.arange(y.shape[0]), y]
    sub = sub.astype(np.float64)
    above = np.count_nonzero(sub - E > (ay + ey)[:, None], axis=1)
    maybe = np.count_nonzero(sub + E >= (ay - ey)[:, None], axis=1)
    still = np.zeros(y.shape[0], dtype=bool)
    for k in ks:
        hits[k][at] = maybe < k
        still |= (maybe >= k) & (above < k)
    return still


def kernel_rows(
    x: np.ndarray, rows: np.ndarray, run: Derived, k: int, counts: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's top-k (classes, scores) of ``rows`` of ``x`` under ``run``, bitwise
    as one call on all of ``x``.

    Each row is placed at its own position in a block as long as the kernel's
    block that holds it (zeros elsewhere); rows at different positions share a
    block, so the kernel scores about ``max rows per position`` blocks. Full
    blocks are stacked into one call (each starts at a multiple of the block
    size, so it is scored as on its own); a short last block is its call's end.
    """
    n = x.shape[0]
    out = np.empty((rows.size, k), dtype=np.int64)
    scores = np.empty((rows.size, k), dtype=x.dtype)
    starts = rows // _BLOCK * _BLOCK
    lengths = np.minimum(_BLOCK, n - starts)
    pos = rows - starts
    for length in np.unique(lengths):
        sel = np.flatnonzero(lengths == length)
        # Rows sharing a position go to successive blocks.
        order = sel[np.argsort(pos[sel], kind="stable")]
        p = pos[order]
        slot = np.arange(order.size) - np.searchsorted(p, p, side="left")
        n_blocks = int(slot.max()) + 1
        # Consecutive blocks per call: all in one when full, one per call when short.
        calls = [(0, n_blocks)] if length == _BLOCK else [(j, j + 1) for j in range(n_blocks)]
        for first, last in calls:
            keep = (slot >= first) & (slot < last)
            mine = order[keep]
            place = (slot[keep] - first) * int(length) + pos[mine]
            stack = np.zeros(((last - first) * int(length), x.shape[1]), dtype=x.dtype)
            stack[place] = x[rows[mine]]
            top, val = _core.topk_scores(stack, run.W, run.b, k)
            counts["kernel_rows"] += stack.shape[0]
            out[mine] = top[place]
            scores[mine] = val[place]
    return out, scores


def score_split(
    features: Sequence[np.ndarray],
    y: np.ndarray,
    families: Sequence[Family],
    runs: Sequence[Derived],
    ks: Sequence[int],
    stats: dict[str, int] | None = None,
) -> list[dict[int, np.ndarray]]:
    """Per run, per k: whether each row's label is in the run's top k (as the kernel says).

    Parameters
    ----------
    features : sequence of ndarray
        Per family, the split's rows as it reads them (checked, finite).
    y : ndarray of int64
        Labels (checked).
    families, runs : the products and their maps
    ks : the top-k values
    stats : dict, optional
        Filled with ``rows`` (rows x runs decided), ``rescored`` (of them, those
        the kernel scored again) and ``kernel_rows`` (rows it scored for that).

    Returns
    -------
    list of dict of int to bool ndarray
    """
    n = y.shape[0]
    hits = [{k: np.zeros(n, dtype=bool) for k in ks} for _ in runs]
    unsure = [np.zeros(n, dtype=bool) for _ in runs]
    by_family = [[i for i, r in enumerate(runs) if r.family == f] for f in range(len(families))]
    for start in range(0, n, BLOCK_ROWS):
        end = min(start + BLOCK_ROWS, n)
        yb = y[start:end]
        norms: dict[int, np.ndarray] = {}  # by features object: most families share x
        for f, fam in enumerate(families):
            if not by_family[f]:
                continue
            xb = np.asarray(features[f][start:end])
            # The Rust product on the kernels' pool, 1.4-1.5x numpy's at these shapes
            # (benches/product_shapes.py); the bounds hold for any summation order.
            P = np.empty((xb.shape[0], fam.W.shape[0]), dtype=fam.W.dtype)
            _core.thin_dot(xb, fam.W.T, P, True)
            if id(features[f]) not in norms:
                norms[id(features[f])] = _norms(xb)
            A = np.empty_like(P)
            for i in by_family[f]:
                run = runs[i]
                got, doubt = _decide(_mapped(P, run, A), yb, norms[id(features[f])], run, ks)
                for k in ks:
                    hits[i][k][start:end] = got[k]
                unsure[i][start:end] = doubt
        for feats in {id(f): f for f in features}.values():
            release_rows(feats, start, end)
    counts = {"rows": n * len(runs), "rescored": 0, "kernel_rows": 0}
    for i, run in enumerate(runs):
        again = np.flatnonzero(unsure[i])
        if again.size:
            top, _ = kernel_rows(features[run.family], again, run, max(ks), counts)
            counts["rescored"] += again.size
            for k in ks:
                hits[i][k][again] = (top[:, :k] == y[again, None]).any(axis=1)
    if stats is not None:
        stats.update(counts)
    return hits


def hits_report(
    hits: dict[int, np.ndarray], y: np.ndarray, split_of: np.ndarray, ks: tuple[int, ...]
) -> EvaluationReport:
    """The :class:`EvaluationReport` of checked labels whose top-k hits are known.

    Built by the evaluation's own report of top classes: each row's label is put
    at the first place that makes every hit what it is (``hits`` grow with k),
    the other places hold no class.
    """
    top = np.full((y.shape[0], max(ks)), -1, dtype=np.int64)
    placed = np.zeros(y.shape[0], dtype=bool)
    before = 0
    for k in ks:
        new = hits[k] & ~placed
        top[new, before] = y[new]
        placed |= new
        before = k
    return _report(top, y, ks, split_of, None, None)
