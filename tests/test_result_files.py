"""Saved results and classifier files that were tampered with or damaged: named ValueErrors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from alphanet_fast import AlphaNetResult, Splits, load_result
from alphanet_fast.cli.train import explain_text
from alphanet_fast.evaluation import evaluate
from alphanet_fast.files.classifiers import load_classifier
from alphanet_fast.files.formats import InputError


def small_result() -> AlphaNetResult:
    """Five classes: 0 and 1 few, 2-4 base; k=2; two epochs of history."""
    rng = np.random.default_rng(0)
    return AlphaNetResult(
        W=rng.normal(size=(5, 3)),
        b=np.zeros(5),
        alphas=np.array([[1.0, 0.2, -0.1], [1.0, 0.05, 0.3]]),
        few_classes=np.array([0, 1]),
        neighbors=np.array([[2, 3], [4, 2]]),
        neighbor_distances=np.array([[0.5, 0.7], [0.2, 0.9]]),
        splits=Splits(few=[0, 1], medium=[2, 3], many=[4], n_classes=5),
        counts=np.array([3, 4, 50, 60, 200]),
        history=[{"epoch": 1, "loss": 0.9, "lr": 1e-3}, {"epoch": 2, "loss": 0.7, "lr": 1e-3}],
        best_epoch=2,
        config={"metric": "euclidean", "rho": 1.0},
    )


def tampered(tmp_path, change):
    """Save a valid result, apply ``change`` to its entries (a dict), write it back."""
    small_result().save(tmp_path / "r.npz")
    with np.load(tmp_path / "r.npz") as z:
        entries = {k: z[k] for k in z.files}
    meta = json.loads(str(entries["meta"][()]))
    raw = entries["meta"]
    change(entries, meta)
    if entries.get("meta") is raw:  # the change edited the JSON, not the entry
        entries["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "bad.npz", **entries)
    return tmp_path / "bad.npz"


def _set(name, value):
    return lambda e, m: e.__setitem__(name, value)


def _meta(key, value):
    return lambda e, m: m.__setitem__(key, value)


CASES = [
    (_set("W", np.zeros((4, 3))), r"W: expected shape \(5, 3\)"),
    (_set("W", np.full((5, 3), np.inf)), r"W: contains NaN or infinity"),
    (_set("alphas", np.ones((2, 3), dtype=complex)), r"alphas: expected real floats"),
    (_set("alphas", np.array([[1.0, 0.1], [1.0, 0.2]])), r"alphas: expected shape \(2, 3\)"),
    (_set("alphas", np.array([[2.0, 0.2, 0.1], [1.0, 0, 0]])), r"alphas: column 0"),
    (_set("neighbors", np.array([[2, 1], [4, 2]])), r"neighbors: contains a class that is not"),
    (_set("few_classes", np.array([0, 0])), r"few_classes: differs"),
    (_set("b", np.zeros(5, dtype=np.int64)), r"b: expected real floats"),
    (_set("counts", np.array([3, 4, 50, 60])), r"counts: expected shape \(5,\)"),
    (_meta("best_epoch", 999), r"meta.best_epoch: expected 1 to 2"),
    (_meta("history", [{"epoch": 1}]), r"meta.history\[0\]"),
    (
        _meta("splits", {"few": [0, 0], "medium": [2, 3], "many": [4], "n_classes": 5}),
        r"meta.splits",
    ),  # fmt: skip
    (_meta("version", 99), r"meta: expected format"),
    (lambda e, m: e.__setitem__("meta", np.array("{not json")), r"meta: not valid JSON"),
    (lambda e, m: e.pop("meta"), r"not a result saved by"),
    (lambda e, m: e.pop("counts"), r"counts: missing"),
]


@pytest.mark.parametrize(("change", "match"), CASES)
def test_tampered_results_raise_named_value_errors(tmp_path, change, match):
    path = tampered(tmp_path, change)
    with pytest.raises(ValueError, match=match) as info:
        load_result(path)
    assert "\n" not in str(info.value)


def test_damaged_or_foreign_files_are_value_errors(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="junk.npz: not a readable result file"):
        load_result(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="no such file"):
        load_result(tmp_path / "absent.npz")
    small_result().save(tmp_path / "r.npz")
    flip_middle(tmp_path / "r.npz")
    with pytest.raises(ValueError, match="r.npz"):
        load_result(tmp_path / "r.npz")


def test_a_valid_result_loads_and_summarises(tmp_path):
    res = small_result()
    res.save(tmp_path / "r.npz")
    back = load_result(tmp_path / "r.npz")
    np.testing.assert_array_equal(back.alphas, res.alphas)
    assert "kept epoch 2" in back.summary()
    # explain refuses alphas that do not match the neighbours.
    X, y = np.eye(5, 3), np.arange(5)
    before = after = evaluate(X, y, res.W, res.b, splits=res.splits, k=(1,))
    res.alphas = res.alphas[:, :2]
    with pytest.raises(ValueError, match=r"alphas: expected shape \(2, 3\)"):
        explain_text(res, before, after)


def flip_middle(path, n=64):
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + n] = bytes(b ^ 0xFF for b in data[mid : mid + n])
    path.write_bytes(bytes(data))


def test_torch_file_with_flipped_bytes_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    state = {"fc.weight": torch.from_numpy(rng.normal(size=(200, 300)).astype(np.float32))}
    torch.save(state, tmp_path / "m.pt")
    assert load_classifier(tmp_path / "m.pt").W.shape == (200, 300)
    flip_middle(tmp_path / "m.pt")
    with pytest.raises(InputError, match=r"m\.pt: entry .* is damaged \(its CRC does not match\)"):
        load_classifier(tmp_path / "m.pt")
