"""The comparison's shared scoring: runs derived from one product per family give the
top-k kernel's own hits on each run's W and b, ties and near-ties included."""

from __future__ import annotations

import numpy as np
import pytest
from alphanet_fast import evaluate, splits_from_counts, topk_scores
from alphanet_fast.comparison._scoring import BLOCK_ROWS, Family, derive, hits_report, score_split

KS = (1, 5)


def _kernel_hits(x, y, W, b, ks=KS):
    top, _ = topk_scores(x, W, b, k=max(ks))
    return {k: (top[:, :k] == y[:, None]).any(axis=1) for k in ks}


def _problem(seed, dtype, integer):
    """Rows, labels and a family classifier; with ``integer``, small integers: many exact ties."""
    rng = np.random.default_rng(seed)
    n, d, C = BLOCK_ROWS + 555, 24, 40  # two blocks, a partial kernel block at the end
    if integer:
        x = rng.integers(-2, 3, size=(n, d)).astype(dtype)
        W = rng.integers(-2, 3, size=(C, d)).astype(dtype)
        W[7] = W[3]  # identical classes: tied in every row
        b = rng.integers(-2, 3, size=C).astype(dtype)
    else:
        x = rng.standard_normal((n, d)).astype(dtype)
        W = rng.standard_normal((C, d)).astype(dtype)
        W[7] = W[3]
        b = rng.standard_normal(C).astype(dtype)
    y = rng.integers(0, C, size=n)
    return x, y, W, b, rng


def _runs(W, b, rng):
    """(W, b, scale, combos) of runs as compare() builds them, and some it never would."""
    C = W.shape[0]
    few = np.array([1, 5, 9, 30])
    idx = np.column_stack([few, rng.choice(np.setdiff1d(np.arange(C), few), (4, 3))])
    coef = np.column_stack([np.ones(4), rng.choice([0.5, 0.25, -0.75], (4, 3))])
    f = rng.uniform(0.5, 2.0, C)
    pow2 = 2.0 ** rng.integers(-2, 3, C)
    shifted = b - rng.integers(-1, 2, C)
    mapped = W.astype(np.float64).copy()
    mapped[few] = np.einsum("fm,fmd->fd", coef, W.astype(np.float64)[idx])
    rnd_coef = coef * rng.uniform(0.9, 1.1, coef.shape)
    mapped_rnd = W.astype(np.float64).copy()
    mapped_rnd[few] = np.einsum("fm,fmd->fd", rnd_coef, W.astype(np.float64)[idx])
    scaled = W.astype(np.float64) * f[:, None]  # AlphaNet on a rescaled base
    scaled[few] = np.einsum("fm,fmd->fd", coef * f[idx], W.astype(np.float64)[idx])
    dt = W.dtype
    return [
        ("plain", W, b, None, None),
        ("shift (logit adjustment)", W, shifted.astype(dt), None, None),
        ("powers of two", (W * pow2[:, None]).astype(dt), (b * pow2).astype(dt), pow2, None),
        ("scale (tau-norm)", (W * f[:, None]).astype(dt), (b * f).astype(dt), f, None),
        ("few rows combined (AlphaNet)", mapped.astype(dt), b, None, (few, idx, coef)),
        ("random combination", mapped_rnd.astype(dt), b, None, (few, idx, rnd_coef)),
        ("scaled base, combined", scaled.astype(dt), b, f, (few, idx, coef * f[idx])),
        ("wrongly described", (W * f[:, None]).astype(dt), b, None, None),
        ("unrelated", rng.standard_normal(W.shape).astype(dt), b, None, None),
    ]


@pytest.mark.parametrize("integer", [True, False], ids=["ties", "random"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", [0, 1])
def test_derived_hits_are_the_kernels(seed, dtype, integer):
    x, y, W, b, rng = _problem(seed, dtype, integer)
    runs = _runs(W, b, rng)
    fam = Family(np.ascontiguousarray(W))
    derived = [derive(0, fam, Wr, br, s, c) for _, Wr, br, s, c in runs]
    stats = {}
    hits = score_split([x], y, [fam], derived, KS, stats)
    for (name, Wr, br, _, _), got in zip(runs, hits):
        want = _kernel_hits(x, y, Wr, br)
        for k in KS:
            np.testing.assert_array_equal(got[k], want[k], err_msg=f"{name}, top-{k}")
    assert stats["rows"] == x.shape[0] * len(runs)
    # Not vacuous: rows were decided from the shared product, and some scored again.
    assert 0 < stats["rescored"] < stats["rows"]


def test_only_rows_in_doubt_are_scored_again():
    x, y, W, b, rng = _problem(3, np.float32, integer=False)
    fam = Family(np.ascontiguousarray(W))
    f = rng.uniform(0.5, 2.0, W.shape[0])
    runs = [derive(0, fam, W, b), derive(0, fam, (W * f[:, None]).astype(np.float32), b * f, f)]
    stats = {}
    score_split([x], y, [fam], runs, KS, stats)
    assert stats["rescored"] < 0.05 * stats["rows"]
    # A run wrongly described has a bound as large as its scores: all in doubt, still exact.
    wrong = derive(0, fam, W[::-1].copy(), b)
    assert wrong.alpha > 10 * runs[0].alpha


def test_a_transformed_family_reads_its_own_features():
    x, y, W, b, rng = _problem(4, np.float32, integer=False)
    z = (x - x.mean(0)).astype(np.float32)
    fams = [Family(np.ascontiguousarray(W)), Family(np.ascontiguousarray(W[::-1]))]
    runs = [derive(0, fams[0], W, b), derive(1, fams[1], W[::-1].copy(), b)]
    hits = score_split([x, z], y, fams, runs, KS)
    for k in KS:
        np.testing.assert_array_equal(hits[0][k], _kernel_hits(x, y, W, b)[k])
        np.testing.assert_array_equal(hits[1][k], _kernel_hits(z, y, W[::-1], b)[k])


def test_the_report_of_hits_is_evaluates():
    x, y, W, b, _ = _problem(5, np.float32, integer=True)
    splits = splits_from_counts(np.bincount(y, minlength=W.shape[0]), few_below=60, many_above=70)
    direct = evaluate(x, y, W, b, splits=splits, k=KS)
    rebuilt = hits_report(_kernel_hits(x, y, W, b), y, direct.split_of, KS)
    assert rebuilt.to_dict() == direct.to_dict()
    assert rebuilt.hit_counts["accuracy"] == direct.hit_counts["accuracy"]
    for k in KS:
        np.testing.assert_array_equal(
            rebuilt.hit_counts["per_class"][k], direct.hit_counts["per_class"][k]
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_scored_again_get_the_bits_of_one_call(dtype):
    """Each row goes back to its place in a kernel block: its scores are the full call's
    bits (a row scored on its own, or at another place, may round otherwise)."""
    from alphanet_fast.comparison._scoring import kernel_rows

    rng = np.random.default_rng(6)
    n, d, C = 1000, 300, 50
    x = rng.standard_normal((n, d)).astype(dtype)
    W = rng.standard_normal((C, d)).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    top, scores = topk_scores(x, W, b, k=5)
    # Rows 0 and 256 share place 0 of their blocks; 900 and 999 are in the last,
    # short block (768..999): two blocks of 256 and one of 232 are scored.
    rows = np.array([0, 5, 256, 300, 700, 900, 999])
    counts = {"kernel_rows": 0}
    run = derive(0, Family(W), W, b)
    got_top, got_scores = kernel_rows(x, rows, run, 5, counts)
    np.testing.assert_array_equal(got_top, top[rows])
    np.testing.assert_array_equal(got_scores.view(np.uint8), scores[rows].view(np.uint8))
    assert counts["kernel_rows"] == 2 * 256 + 232
