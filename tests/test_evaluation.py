"""evaluate() and its report against a plain numpy computation on the full score matrix."""

from __future__ import annotations

import json
import math

import alphanet_fast as af
import numpy as np
import pytest
from alphanet_fast.evaluation import EvaluationReport, format_table
from alphanet_fast.result import AlphaNetResult
from alphanet_fast.splits import Splits, splits_from_counts
from hypothesis import given, settings
from hypothesis import strategies as st

SPLITS = ("few", "medium", "many", "overall")


def reference(X, y, W, b, split_of, ks, neighbors=None, groups=None):
    """Everything evaluate() reports, from a full argsort of X @ W.T + b."""
    S = X.astype(np.float64) @ W.astype(np.float64).T + (0.0 if b is None else b)
    # Stable sort of -S: equal scores keep the lower class index first, as the kernel does.
    order = np.argsort(-S, axis=1, kind="stable")
    sample_split = split_of[y]
    masks = {s: sample_split == s for s in SPLITS[:3]}
    masks["overall"] = np.ones_like(y, dtype=bool)
    out = {"accuracy": {}, "per_class": {}, "group": {}}
    for k in ks:
        hit = np.array([y[i] in order[i, :k] for i in range(len(y))])
        out["accuracy"][k] = {s: hit[m].mean() if m.any() else math.nan for s, m in masks.items()}
        per = np.full(W.shape[0], math.nan)
        for c in range(W.shape[0]):
            if (y == c).any():
                per[c] = hit[y == c].mean()
        out["per_class"][k] = per
        if groups is not None:
            ghit = np.array([groups[y[i]] in groups[order[i, :k]] for i in range(len(y))])
            out["group"][k] = {s: ghit[m].mean() if m.any() else math.nan for s, m in masks.items()}
    if neighbors is not None:
        few, nb = neighbors
        counts = {"correct": 0, "neighbor": 0, "other": 0}
        for i in np.flatnonzero(masks["few"]):
            p = order[i, 0]
            if p == y[i]:
                counts["correct"] += 1
            elif p in nb[list(few).index(y[i])]:
                counts["neighbor"] += 1
            else:
                counts["other"] += 1
        out["few_errors"] = counts
    return out


def random_problem(seed, n=400, C=30, d=16, dtype=np.float64):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 200, size=C)
    splits = splits_from_counts(counts)
    X = rng.normal(size=(n, d)).astype(dtype)
    W = rng.normal(size=(C, d)).astype(dtype)
    b = rng.normal(size=C).astype(dtype)
    y = rng.integers(0, C, size=n)
    base = splits.base
    nb = np.stack([rng.choice(base, size=3, replace=False) for _ in splits.few])
    groups = rng.integers(0, 6, size=C)
    return X, y, W, b, splits, (splits.few, nb), groups


def assert_matches(rep, ref, ks):
    for k in ks:
        for s in SPLITS:
            np.testing.assert_allclose(rep.accuracy[k][s], ref["accuracy"][k][s], equal_nan=True)
        np.testing.assert_allclose(rep.per_class[k], ref["per_class"][k], equal_nan=True)
        if ref["group"]:
            for s in SPLITS:
                np.testing.assert_allclose(
                    rep.group_accuracy[k][s], ref["group"][k][s], equal_nan=True
                )
    if "few_errors" in ref:
        assert rep.few_errors == ref["few_errors"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_numpy_on_random_data(dtype, seed):
    X, y, W, b, splits, nb, groups = random_problem(seed, dtype=dtype)
    ks = (1, 3, 5)
    rep = af.evaluate(X, y, W, b, splits=splits, k=ks, neighbors=nb, groups=groups)
    ref = reference(X, y, W, b, splits.split_of(), ks, neighbors=nb, groups=groups)
    assert rep.ks == ks
    assert_matches(rep, ref, ks)
    assert rep.n_samples == {s: int((splits.split_of()[y] == s).sum()) for s in SPLITS[:3]} | {
        "overall": len(y)
    }
    np.testing.assert_array_equal(rep.class_counts, np.bincount(y, minlength=W.shape[0]))


def test_ties_go_to_the_lower_class_index():
    # Small integer scores: many exact ties, all computed exactly in float32.
    rng = np.random.default_rng(3)
    C, d, n = 20, 4, 300
    X = rng.integers(0, 2, size=(n, d)).astype(np.float32)
    W = rng.integers(0, 2, size=(C, d)).astype(np.float32)
    y = rng.integers(0, C, size=n)
    splits = splits_from_counts(rng.integers(1, 200, size=C))
    S = X @ W.T
    assert (np.sort(S, axis=1)[:, -1] == np.sort(S, axis=1)[:, -2]).mean() > 0.5  # really tied
    rep = af.evaluate(X, y, W, splits=splits, k=(1, 5))
    assert_matches(rep, reference(X, y, W, None, splits.split_of(), (1, 5)), (1, 5))


def test_bias_changes_the_ranking():
    X, y, W, b, splits, _, _ = random_problem(4)
    with_b = af.evaluate(X, y, W, b * 10, splits=splits, k=1)
    without = af.evaluate(X, y, W, splits=splits, k=1)
    ref = reference(X, y, W, b * 10, splits.split_of(), (1,))
    assert_matches(with_b, ref, (1,))
    assert with_b.accuracy[1] != without.accuracy[1]


def test_memory_mapped_features_give_the_same_report(tmp_path):
    X, y, W, b, splits, nb, _ = random_problem(5, dtype=np.float32)
    np.save(tmp_path / "x.npy", np.asfortranarray(X))
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    a = af.evaluate(mm, y, W, b, splits=splits, neighbors=nb)
    c = af.evaluate(X, y, W, b, splits=splits, neighbors=nb)
    assert a.to_dict() == c.to_dict()


def fake_result(splits, nb, W, b):
    few, neighbors = nb
    return AlphaNetResult(
        W=W,
        b=b,
        alphas=np.ones((few.size, neighbors.shape[1] + 1)),
        few_classes=few,
        neighbors=neighbors,
        neighbor_distances=np.ones(neighbors.shape),
        splits=splits,
        counts=np.zeros(splits.n_classes, dtype=np.int64),
    )


def test_a_result_supplies_splits_and_neighbours():
    X, y, W, b, splits, nb, _ = random_problem(6)
    res = fake_result(splits, nb, W, b)
    from_result = af.evaluate(X, y, res.W, res.b, splits=res)
    explicit = af.evaluate(X, y, W, b, splits=splits, neighbors=nb)
    assert from_result.few_errors is not None
    assert from_result.to_dict() == explicit.to_dict()
    # A result also works as the neighbours argument alone.
    assert af.evaluate(X, y, W, b, splits=splits, neighbors=res).few_errors == explicit.few_errors


def test_few_error_shares_sum_to_one_and_match_top1():
    X, y, W, b, splits, nb, _ = random_problem(7)
    rep = af.evaluate(X, y, W, b, splits=splits, neighbors=nb)
    shares = rep.few_error_shares()
    assert math.isclose(sum(shares.values()), 1.0)
    assert math.isclose(shares["correct"], rep.accuracy[1]["few"])
    assert sum(rep.few_errors.values()) == rep.n_samples["few"]


def test_split_without_samples_is_nan_and_json_has_null():
    X, y, W, b, splits, _, _ = random_problem(8)
    keep = splits.split_of()[y] != "many"
    rep = af.evaluate(X[keep], y[keep], W, b, splits=splits)
    assert math.isnan(rep.accuracy[1]["many"]) and rep.n_samples["many"] == 0
    assert np.isnan(rep.per_class[1][splits.many]).all()
    data = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    assert data["accuracy"]["top1"]["many"] is None
    back = EvaluationReport.from_dict(data)
    assert back.to_dict() == rep.to_dict()
    np.testing.assert_array_equal(back.per_class[5], rep.per_class[5])
    assert "-" in rep.table().splitlines()[-1]


def test_group_accuracy_is_at_least_plain_accuracy():
    X, y, W, b, splits, _, groups = random_problem(9)
    rep = af.evaluate(X, y, W, b, splits=splits, groups=groups)
    singletons = af.evaluate(X, y, W, b, splits=splits, groups=np.arange(W.shape[0]))
    for k in rep.ks:
        for s in SPLITS:
            assert rep.group_accuracy[k][s] >= rep.accuracy[k][s]
            assert singletons.group_accuracy[k][s] == singletons.accuracy[k][s]
    # String group labels work as well as ints.
    named = af.evaluate(X, y, W, b, splits=splits, groups=[f"g{g}" for g in groups])
    assert named.group_accuracy == rep.group_accuracy


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 60), C=st.integers(5, 12))
def test_split_accuracies_weight_up_to_overall(seed, n, C):
    rng = np.random.default_rng(seed)
    X, W = rng.normal(size=(n, 3)), rng.normal(size=(C, 3))
    y = rng.integers(0, C, size=n)
    splits = splits_from_counts(rng.integers(0, 150, size=C))
    rep = af.evaluate(X, y, W, splits=splits)
    for k in rep.ks:
        total = sum(rep.accuracy[k][s] * rep.n_samples[s] for s in SPLITS[:3] if rep.n_samples[s])
        assert math.isclose(total / n, rep.accuracy[k]["overall"], abs_tol=1e-12)
        # Per-class accuracies, weighted by class counts, give the overall accuracy too.
        per = np.nan_to_num(rep.per_class[k]) * rep.class_counts
        assert math.isclose(per.sum() / n, rep.accuracy[k]["overall"], abs_tol=1e-12)
    assert rep.accuracy[1]["overall"] <= rep.accuracy[5]["overall"]


def row_cells(table, name):
    line = next(ln for ln in table.splitlines() if ln.startswith(name + " "))
    return [c.split() for c in line.split("|")[1:]]


def test_table_shows_each_report_rounded():
    X, y, W, b, splits, nb, _ = random_problem(10)
    before = af.evaluate(X, y, W, b, splits=splits, neighbors=nb)
    after = af.evaluate(X, y, W * 1.5, b, splits=splits, neighbors=nb)
    text = before.table(after, names=["baseline", "corrected"])
    for name, rep in (("baseline", before), ("corrected", after)):
        top1, top5 = row_cells(text, name)[:2]
        assert top1 == [f"{100 * rep.accuracy[1][s]:.1f}" for s in SPLITS]
        assert top5 == [f"{100 * rep.accuracy[5][s]:.1f}" for s in SPLITS]
    assert "Few" in text and "Med." in text and "Overall" in text
    # The second block: the few-split breakdown, in percent.
    shares = after.few_error_shares()
    last = text.splitlines()[-1].split("|")[1].split()
    assert last == [f"{100 * shares[o]:.1f}" for o in ("correct", "neighbor", "other")]


def test_format_table_gives_mean_and_std_over_runs():
    X, y, W, b, splits, _, _ = random_problem(11)
    runs = [af.evaluate(X, y, W + 0.3 * i, b, splits=splits) for i in range(3)]
    text = format_table({"rho=1": runs}, digits=2)
    few = np.array([r.accuracy[1]["few"] for r in runs]) * 100
    cells = " ".join(row_cells(text, "rho=1")[0])
    assert cells.startswith(f"{few.mean():.2f} ± {few.std(ddof=1):.2f}")


def test_format_table_groups_and_errors():
    X, y, W, b, splits, _, groups = random_problem(12)
    plain = af.evaluate(X, y, W, b, splits=splits)
    grouped = af.evaluate(X, y, W, b, splits=splits, groups=groups)
    text = format_table({"m": grouped}, groups=True)
    assert row_cells(text, "m")[0] == [f"{100 * grouped.group_accuracy[1][s]:.1f}" for s in SPLITS]
    with pytest.raises(ValueError, match="groups"):
        format_table({"m": plain}, groups=True)
    with pytest.raises(ValueError, match="names"):
        plain.table(grouped, names=["only one"])


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"labels": "out_of_range"}, ValueError, r"labels: entry 0 is 30"),
        ({"k": 31}, ValueError, r"k: expected values in \[1, 30\]"),
        ({"k": 1.5}, TypeError, r"k: expected integers"),
        ({"groups": "short"}, ValueError, r"groups: expected one group per class"),
        ({"splits": "other_C"}, ValueError, r"splits: made for 31 classes"),
        ({"splits": "not_splits"}, TypeError, r"splits: expected a Splits"),
        ({"neighbors": "missing_class"}, ValueError, r"neighbors: few class \d+ occurs"),
        ({"neighbors": "bad_shape"}, ValueError, r"neighbors: \d+ few classes but"),
        ({"W": "wrong_cols"}, ValueError, r"W: expected 16 columns"),
    ],
)
def test_bad_arguments_are_named(change, error, match):
    X, y, W, b, splits, nb, groups = random_problem(13)
    kwargs = {"splits": splits, "k": (1, 5), "neighbors": nb, "groups": None}
    labels = y.copy()
    for key, what in change.items():
        if what == "out_of_range":
            labels[0] = W.shape[0]
        elif key == "k":
            kwargs["k"] = what
        elif what == "short":
            kwargs["groups"] = groups[:-1]
        elif what == "other_C":
            kwargs["splits"] = splits_from_counts(np.ones(W.shape[0] + 1, dtype=int))
        elif what == "not_splits":
            kwargs["splits"] = {"few": splits.few}
        elif what == "missing_class":
            few, neighbors = nb
            labels[0] = few[0]
            kwargs["neighbors"] = (few[1:], neighbors[1:])
        elif what == "bad_shape":
            kwargs["neighbors"] = (nb[0], nb[1][:-1])
        elif what == "wrong_cols":
            W = W[:, :-1]
    with pytest.raises(error, match=match):
        af.evaluate(X, labels, W, b, **kwargs)


def test_inputs_are_not_modified():
    X, y, W, b, splits, nb, _ = random_problem(14)
    copies = [a.copy() for a in (X, y, W, b)]
    af.evaluate(X, y, W, b, splits=splits, neighbors=nb)
    for a, c in zip((X, y, W, b), copies):
        np.testing.assert_array_equal(a, c)


def test_classes_of_and_split_of():
    splits = Splits(few=[0, 3], medium=[1], many=[2], n_classes=4)
    rep = af.evaluate(np.eye(4), [0, 1, 2, 3], np.eye(4), splits=splits, k=1)
    np.testing.assert_array_equal(rep.classes_of("few"), [0, 3])
    assert rep.accuracy[1] == {"few": 1.0, "medium": 1.0, "many": 1.0, "overall": 1.0}
    with pytest.raises(ValueError, match="split"):
        rep.classes_of("rare")
