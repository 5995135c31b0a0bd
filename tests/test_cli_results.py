"""The numbers the CLI writes are those of the Python API with the same settings.

``alphanet-fast correct`` writes the corrected classifier (in the input's format)
and, with ``--result``, the whole result; ``evaluate`` writes a JSON report. Each
is compared bitwise with :func:`alphanet_fast.correct` and
:func:`alphanet_fast.evaluate` called directly.
"""

from __future__ import annotations

import json

import alphanet_fast as af
import numpy as np
import pytest
import torch
from alphanet_fast import cli
from alphanet_fast.datasets import make_long_tail
from alphanet_fast.result import load_result

N_CLASSES = 30
SETTINGS = dict(k=3, rho=0.5, hidden=(8, 8), lr=0.01, epochs=3, seed=4)
FLAGS = [
    "-k", "3", "--rho", "0.5", "--hidden", "8", "8", "--lr", "0.01", "--epochs", "3",
    "--seed", "4", "--device", "cpu", "-q",
]  # fmt: skip


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    """Small long-tailed data as .npz files, and correct() run on it from Python."""
    d = make_long_tail(
        "small", n_classes=N_CLASSES, dim=16, seed=1, n_val_per_class=5, n_test_per_class=8
    )
    root = tmp_path_factory.mktemp("data")
    for split in ("train", "val", "test"):
        np.savez(
            root / f"{split}.npz",
            features=getattr(d, f"{split}_features"),
            labels=getattr(d, f"{split}_labels"),
        )
    (root / "groups.txt").write_text("\n".join(str(g) for g in d.groups) + "\n")
    expected = af.correct(
        d.train_features, d.train_labels, d.W, d.b, val=(d.val_features, d.val_labels),
        device="cpu", progress=False, **SETTINGS,
    )  # fmt: skip
    assert expected.few_classes.size > 0 and expected.best_epoch > 0
    return root, d, expected


def write_classifier(path, W, b):
    """The classifier in the format ``path``'s suffix names, as ``fc.weight``/``fc.bias``."""
    if path.suffix == ".npz":
        np.savez(path, weight=W, bias=b)
    elif path.suffix == ".pt":
        torch.save({"fc.weight": torch.from_numpy(W), "fc.bias": torch.from_numpy(b)}, path)
    else:
        from safetensors.torch import save_file

        save_file({"fc.weight": torch.from_numpy(W), "fc.bias": torch.from_numpy(b)}, str(path))


def read_classifier(path):
    if path.suffix == ".npz":
        with np.load(path) as z:
            return z["weight"], z["bias"]
    if path.suffix == ".pt":
        state = torch.load(path, weights_only=True)
    else:
        from safetensors.torch import load_file

        state = load_file(str(path))
    return state["fc.weight"].numpy(), state["fc.bias"].numpy()


def run_correct(root, clf, out, result, *extra):
    argv = [
        "correct", root / "train.npz", clf, "--val", root / "val.npz", "-o", out,
        "--result", result, *FLAGS, *extra,
    ]  # fmt: skip
    assert cli.main([str(a) for a in argv]) == 0


def assert_same_bits(got, want, name):
    assert got.dtype == want.dtype, name
    np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("suffix", [".npz", ".pt", ".safetensors"])
def test_correct_writes_the_weights_and_result_of_the_python_api(problem, tmp_path, capsys, suffix):
    root, d, expected = problem
    clf = tmp_path / f"head{suffix}"
    write_classifier(clf, d.W, d.b)
    out, result = tmp_path / f"fixed{suffix}", tmp_path / "result.npz"
    run_correct(root, clf, out, result)
    capsys.readouterr()
    W, b = read_classifier(out)
    assert_same_bits(W, expected.W, "written weights")
    assert_same_bits(b, expected.b, "written biases")
    saved = load_result(result)
    for name in ("W", "b", "alphas", "few_classes", "neighbors", "counts"):
        assert_same_bits(getattr(saved, name), getattr(expected, name), name)
    # NaN where neighbours have no distance: compare the bits, NaN included.
    assert_same_bits(
        saved.neighbor_distances.view(np.uint64),
        expected.neighbor_distances.view(np.uint64),
        "neighbor_distances",
    )
    assert saved.splits.to_dict() == expected.splits.to_dict()
    assert saved.best_epoch == expected.best_epoch
    assert saved.history == json.loads(json.dumps(expected.history))
    assert saved.config == json.loads(json.dumps(expected.config))


def test_evaluate_report_holds_the_figures_of_evaluate(problem, tmp_path, capsys):
    root, d, expected = problem
    clf, out, result = tmp_path / "head.npz", tmp_path / "fixed.npz", tmp_path / "result.npz"
    write_classifier(clf, d.W, d.b)
    run_correct(root, clf, out, result)
    report = tmp_path / "ev.json"
    argv = [
        "evaluate", root / "test.npz", clf, out, "--result", result, "--groups",
        root / "groups.txt", "--report", report,
    ]  # fmt: skip
    assert cli.main([str(a) for a in argv]) == 0
    capsys.readouterr()
    reports = json.loads(report.read_text())["reports"]
    assert set(reports) == {str(clf), str(out)}
    for path, W in ((clf, d.W), (out, expected.W)):
        direct = af.evaluate(
            d.test_features, d.test_labels, W, d.b, splits=expected, k=(1, 5),
            neighbors=expected, groups=d.groups,
        )  # fmt: skip
        assert reports[str(path)] == json.loads(json.dumps(direct.to_dict())), path
    # Not the same figures twice: the correction changed the few-split accuracy.
    assert reports[str(clf)]["accuracy"] != reports[str(out)]["accuracy"]


def test_correct_names_a_cheap_baseline_that_beats_it_on_validation(
    problem, tmp_path, capsys, monkeypatch
):
    root, d, expected = problem
    clf, out, result = tmp_path / "head.npz", tmp_path / "fixed.npz", tmp_path / "result.npz"
    write_classifier(clf, d.W, d.b)
    run_correct(root, clf, out, result)
    stdout = capsys.readouterr().out
    saved = load_result(result)
    assert saved.val_baselines == expected.val_baselines
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["val_baselines"] == json.loads(json.dumps(expected.val_baselines))
    beaten = expected.beaten_by()
    notes = [line for line in stdout.splitlines() if "beats AlphaNet" in line]
    assert len(notes) == (beaten is not None)
    # Whichever way this data falls, the line reads as follows when a baseline wins.
    figures = {**expected.val_baselines["tau_norm"], "overall": 1.0}
    monkeypatch.setattr(af.AlphaNetResult, "beaten_by", lambda self: ("tau_norm", figures))
    run_correct(root, clf, tmp_path / "again.npz", tmp_path / "again_result.npz")
    (note,) = [ln for ln in capsys.readouterr().out.splitlines() if "beats AlphaNet" in ln]
    own = 100 * expected.val_top1()["overall"]
    assert f"tau_norm (tau={figures['tau']:g}) beats AlphaNet" in note
    assert f"100.0% against {own:.1f}%" in note
    assert "alphanet-fast compare" in note and "alphanet-fast baseline tau_norm" in note
