"""The alphanet-fast command line: every subcommand on small files, and bad input."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import alphanet_fast as af
import numpy as np
import pytest
import torch
from alphanet_fast import cli
from alphanet_fast.datasets import make_long_tail
from alphanet_fast.files.classifiers import load_classifier
from alphanet_fast.files.data_files import InputError, load_data
from alphanet_fast.result import load_result
from alphanet_fast.settings import Settings
from alphanet_fast.training import correct

EPOCHS = "3"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small long-tailed problem as .npz files, plus class names and groups."""
    d = make_long_tail(
        "small", n_classes=40, dim=16, seed=0, n_val_per_class=5, n_test_per_class=10
    )
    root = tmp_path_factory.mktemp("data")
    for split in ("train", "val", "test"):
        np.savez(
            root / f"{split}.npz",
            features=getattr(d, f"{split}_features"),
            labels=getattr(d, f"{split}_labels"),
        )
    np.savez(root / "clf.npz", weight=d.W, bias=d.b)
    (root / "names.txt").write_text("\n".join(f"animal {c}" for c in range(40)) + "\n")
    (root / "groups.txt").write_text("\n".join(str(g) for g in d.groups) + "\n")
    return root, d


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def table_row(text, name):
    line = next(ln for ln in text.splitlines() if ln.startswith(name + " "))
    return [cell.split() for cell in line.split("|")[1:]]


def test_knobs_match_correct_signature():
    params = inspect.signature(correct).parameters
    parsed = vars(cli.build_parser().parse_args(["correct", "t.npz", "c.npz"]))
    knobs = {f.name: parsed[f.name] for f in dataclasses.fields(Settings)}
    knobs["hidden"] = tuple(knobs["hidden"])
    keyword = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    # Every knob of correct() except the data-carrying ones has an option.
    assert keyword - set(knobs) == {"val", "progress", "neighbors"}
    for name, default in knobs.items():
        assert params[name].default == default, name


def test_correct_npz_writes_classifier_report_result_and_plots(files, tmp_path, capsys):
    root, d = files
    out, report, result, plots = (tmp_path / n for n in ("out.npz", "r.json", "res.npz", "plots"))
    code, stdout, err = run(
        capsys, "correct", root / "train.npz", root / "clf.npz", "--val", root / "val.npz",
        "--test", root / "test.npz", "--class-names", root / "names.txt",
        "--groups", root / "groups.txt", "--epochs", EPOCHS, "-o", out, "--report", report,
        "--result", result, "--plots", plots, "-q",
    )  # fmt: skip
    assert code == 0, err
    res = load_result(result)
    with np.load(out) as z:
        assert sorted(z.files) == ["bias", "weight"]
        np.testing.assert_array_equal(z["weight"], res.W)
        np.testing.assert_array_equal(z["bias"], d.b)
        base = res.splits.base
        np.testing.assert_array_equal(z["weight"][base], d.W[base])
        assert not np.allclose(z["weight"][res.few_classes], d.W[res.few_classes])
    # The report's numbers are those of evaluate() on the written classifier.
    rep = json.loads(report.read_text())
    after = af.evaluate(d.test_features, d.test_labels, res.W, res.b, splits=res, groups=d.groups)
    assert rep["evaluation"]["test"]["alphanet"] == json.loads(json.dumps(after.to_dict()))
    assert set(rep["evaluation"]) == {"test", "val"}
    few_row = rep["few_classes"][0]
    assert few_row["name"] == f"animal {few_row['class']}"
    assert few_row["alphas"][0] == 1.0
    # The printed table shows the same accuracies.
    top1 = table_row(stdout, "AlphaNet (rho=1)")[0]
    assert top1 == [
        f"{100 * after.accuracy[1][s]:.1f}" for s in ("few", "medium", "many", "overall")
    ]
    assert "group accuracy" in stdout
    for name in ("split_accuracy.png", "few_errors.png", "gain_vs_distance.png"):
        assert (plots / name).stat().st_size > 1000
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_correct_torch_matches_the_python_api(files, tmp_path, capsys):
    root, d = files
    state = {
        "backbone.conv.weight": torch.randn(4, 3, 3, 3),
        "backbone.proj.weight": torch.randn(7, 16),
        "fc.weight": torch.from_numpy(d.W),
        "fc.bias": torch.from_numpy(d.b),
    }
    torch.save(state, tmp_path / "model.pt")
    knobs = ["-k", "3", "--rho", "0.5", "--hidden", "8", "8", "--lr", "0.01", "--seed", "2"]
    code, _, err = run(
        capsys, "correct", root / "train.npz", tmp_path / "model.pt", "--epochs", EPOCHS,
        "--val", root / "val.npz", "-o", tmp_path / "fixed.pt", *knobs, "--device", "cpu", "-q",
    )  # fmt: skip
    assert code == 0, err
    expected = correct(
        d.train_features, d.train_labels, d.W, d.b, k=3, rho=0.5, hidden=(8, 8), lr=0.01,
        seed=2, epochs=int(EPOCHS), val=(d.val_features, d.val_labels), device="cpu",
        progress=False,
    )  # fmt: skip
    back = torch.load(tmp_path / "fixed.pt", weights_only=True)
    assert list(back) == list(state)
    np.testing.assert_array_equal(back["fc.weight"].numpy(), expected.W)
    torch.testing.assert_close(back["backbone.proj.weight"], state["backbone.proj.weight"])
    # Default report name: the output's, with .json.
    assert json.loads((tmp_path / "fixed.json").read_text())["config"]["k"] == 3


def test_correct_safetensors_and_npy_inputs(files, tmp_path, capsys, monkeypatch):
    from safetensors.torch import load_file, save_file

    root, d = files
    save_file(
        {"head.weight": torch.from_numpy(d.W), "head.bias": torch.from_numpy(d.b)},
        str(tmp_path / "head.safetensors"),
    )
    np.save(tmp_path / "x.npy", d.train_features)
    np.save(tmp_path / "y.npy", d.train_labels)
    monkeypatch.chdir(tmp_path)  # default output goes to the working directory
    code, _, err = run(
        capsys, "correct", "x.npy", "head.safetensors", "--train-labels", "y.npy",
        "--epochs", EPOCHS, "-q",
    )  # fmt: skip
    assert code == 0, err
    assert "training set" in err  # no --val/--test: says what it evaluated on
    fixed = load_file(str(tmp_path / "head.alphanet.safetensors"))
    assert set(fixed) == {"head.weight", "head.bias"}
    torch.testing.assert_close(fixed["head.bias"], torch.from_numpy(d.b))
    assert (tmp_path / "head.alphanet.json").exists()


def test_correct_with_given_neighbors(files, tmp_path, capsys):
    root, d = files
    splits = af.splits_from_counts(np.bincount(d.train_labels, minlength=40))
    rng = np.random.default_rng(5)
    nb = np.stack([rng.choice(splits.base, size=2, replace=False) for _ in splits.few])
    np.savetxt(tmp_path / "nb.txt", nb, fmt="%d")
    code, _, err = run(
        capsys, "correct", root / "train.npz", root / "clf.npz", "--neighbors", tmp_path / "nb.txt",
        "--epochs", "1", "-o", tmp_path / "c.npz", "--result", tmp_path / "r.npz", "-q",
    )  # fmt: skip
    assert code == 0, err
    res = load_result(tmp_path / "r.npz")
    np.testing.assert_array_equal(res.neighbors, nb)
    assert res.alphas.shape == (splits.few.size, 3)
    # A matrix of the wrong shape is named by its option.
    np.savetxt(tmp_path / "bad.txt", nb[:-1], fmt="%d")
    code, _, err = run(
        capsys, "correct", root / "train.npz", root / "clf.npz", "--neighbors",
        tmp_path / "bad.txt", "-o", tmp_path / "c.npz", "-q",
    )  # fmt: skip
    assert code == 1 and err.startswith("alphanet-fast: error: --neighbors: expected shape")


def test_evaluate_compares_classifiers(files, tmp_path, capsys):
    root, d = files
    W2 = d.W.copy()
    W2[:5] *= 2
    np.savez(tmp_path / "other.npz", weight=W2, bias=d.b)
    code, stdout, err = run(
        capsys, "evaluate", root / "test.npz", root / "clf.npz", tmp_path / "other.npz",
        "--train", root / "train.npz", "--report", tmp_path / "ev.json", "--groups",
        root / "groups.txt",
    )  # fmt: skip
    assert code == 0, err
    splits = af.splits_from_counts(np.bincount(d.train_labels, minlength=40))
    rep = json.loads((tmp_path / "ev.json").read_text())
    for path, W in ((root / "clf.npz", d.W), (tmp_path / "other.npz", W2)):
        direct = af.evaluate(d.test_features, d.test_labels, W, d.b, splits=splits)
        got = rep["reports"][str(path)]
        assert got["accuracy"] == json.loads(json.dumps(direct.to_dict()))["accuracy"]
        assert got["few_errors"] is not None and got["group_accuracy"] is not None
        top1 = table_row(stdout, str(path))[0]
        assert top1 == [
            f"{100 * direct.accuracy[1][s]:.1f}" for s in ("few", "medium", "many", "overall")
        ]


def test_neighbors_lists_nearest_base_classes(files, tmp_path, capsys):
    root, d = files
    code, stdout, err = run(
        capsys, "neighbors", root / "train.npz", "--class-names", root / "names.txt", "-k", "2",
        "--report", tmp_path / "nb.json",
    )  # fmt: skip
    assert code == 0, err
    counts = np.bincount(d.train_labels, minlength=40)
    splits = af.splits_from_counts(counts)
    means = np.stack([d.train_features[d.train_labels == c].mean(0) for c in range(40)])
    f = int(splits.few[0])
    dist = np.linalg.norm(means[splits.base] - means[f], axis=1)
    near = splits.base[np.argsort(dist, kind="stable")[:2]]
    line = next(ln for ln in stdout.splitlines() if ln.startswith(f"[animal {f}] "))
    assert f"({counts[f]} training samples)" in line or f"{counts[f]} training samples" in line
    assert re.findall(r"\[animal (\d+)\] [\d.]+", line.split(":", 1)[1]) == [str(c) for c in near]
    rows = json.loads((tmp_path / "nb.json").read_text())["few_classes"]
    assert [r["class"] for r in rows] == splits.few.tolist()
    np.testing.assert_allclose(rows[0]["distances"], np.sort(dist)[:2], rtol=1e-4)


def test_explain_shows_the_learned_combinations(files, tmp_path, capsys):
    root, d = files
    result = tmp_path / "res.npz"
    code, _, err = run(
        capsys, "correct", root / "train.npz", root / "clf.npz", "--epochs", EPOCHS,
        "-o", tmp_path / "c.npz", "--result", result, "-q",
    )  # fmt: skip
    assert code == 0, err
    code, stdout, err = run(
        capsys, "explain", root / "train.npz", root / "clf.npz", "--test", root / "test.npz",
        "--result", result, "--class-names", root / "names.txt", "--top", "2",
    )  # fmt: skip
    assert code == 0, err
    res = load_result(result)
    combos = [ln.strip() for ln in stdout.splitlines() if " = " in ln]
    assert 1 <= len(combos) <= 4
    for combo in combos:
        f = int(re.match(r"\[animal (\d+)\]", combo).group(1))
        i = int(np.flatnonzero(res.few_classes == f)[0])
        terms = " ".join(
            f"{'-' if a < 0 else '+'} {abs(a):.2f} [animal {c}]"
            for c, a in zip(res.neighbors[i], res.alphas[i, 1:])
        )
        assert combo == f"[animal {f}] = [animal {f}] {terms}"
    assert f"{len(res.few_classes)} few classes in the test set" in stdout


def test_sweep_reports_mean_and_std(files, tmp_path, capsys):
    root, _ = files
    code, stdout, err = run(
        capsys, "sweep", root / "train.npz", root / "clf.npz", "--test", root / "test.npz",
        "--rhos", "0.5", "1", "--seeds", "2", "--epochs", "2", "--report", tmp_path / "s.json",
        "--plots", tmp_path, "-q",
    )  # fmt: skip
    assert code == 0, err
    rep = json.loads((tmp_path / "s.json").read_text())
    assert rep["seeds"] == [0, 1] and set(rep["runs"]) == {"0.5", "1"}
    few = [r["accuracy"]["top1"]["few"] for r in rep["runs"]["0.5"]]
    assert rep["summary"]["0.5"]["top1"]["few"]["mean"] == pytest.approx(np.mean(few))
    assert rep["summary"]["0.5"]["top1"]["few"]["std"] == pytest.approx(np.std(few, ddof=1))
    cell = " ".join(table_row(stdout, "rho=0.5")[0])
    assert cell.startswith(f"{100 * np.mean(few):.1f} ± {100 * np.std(few, ddof=1):.1f}")
    assert (tmp_path / "rho_sweep.png").stat().st_size > 1000


def test_demo_small_profile(tmp_path, capsys):
    code, stdout, err = run(
        capsys, "demo", "--profile", "small", "--epochs", "2", "-o", tmp_path, "--save-data", "-q"
    )
    assert code == 0, err
    assert "baseline" in stdout and "AlphaNet (rho=1)" in stdout
    for name in ("report.json", "result.npz", "classifier.alphanet.npz", "train.npz",
                 "class_names.txt", "plots/split_accuracy.png"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0, name
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["config"]["epochs"] == 2
    # The saved files are what 'correct' takes next.
    clf = load_classifier(tmp_path / "classifier.npz")
    X, y = load_data(tmp_path / "test.npz")
    assert X.shape[1] == clf.W.shape[1] and y.max() < clf.n_classes


def write_bad(root, tmp_path, kind):
    """Argument lists that must fail with one clear line."""
    train, clf = root / "train.npz", root / "clf.npz"
    if kind == "missing file":
        return ["correct", tmp_path / "nope.npz", clf], "nope.npz: no such file"
    if kind == "wrong key":
        np.savez(tmp_path / "t.npz", feats_x=np.zeros((3, 16)), labels=np.zeros(3))
        return ["correct", tmp_path / "t.npz", clf], "no features entry"
    if kind == "shape mismatch":
        np.savez(tmp_path / "t.npz", features=np.zeros((3, 8)), labels=np.zeros(3))
        return ["evaluate", tmp_path / "t.npz", clf, "--train", train], "has 8 columns"
    if kind == "labels out of range":
        np.savez(tmp_path / "t.npz", features=np.zeros((3, 16)), labels=np.array([0, 99, 1]))
        return ["correct", train, clf, "--test", tmp_path / "t.npz"], "label 1 is 99"
    if kind == "NaN":
        x = np.zeros((3, 16))
        x[2, 5] = np.nan
        np.savez(tmp_path / "t.npz", features=x, labels=np.zeros(3))
        return ["correct", tmp_path / "t.npz", clf], "row 2 contains NaN"
    if kind == "bad value":
        return ["correct", train, clf, "--epochs", "0"], "--epochs: expected"
    if kind == "weights_only":
        torch.save({"weight": torch.zeros(40, 16), "x": Path(".")}, tmp_path / "m.pt")
        return ["correct", train, tmp_path / "m.pt"], "weights_only=True) refused"
    if kind == "wrong output format":
        return ["correct", train, clf, "-o", tmp_path / "x.pt"], "use a .npz name"
    if kind == "not a result":
        return ["explain", train, clf, "--test", train, "--result", train], "not a result"
    if kind == "usage":
        return ["correct", train], "the following arguments are required"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "missing file", "wrong key", "shape mismatch", "labels out of range", "NaN", "bad value",
        "weights_only", "wrong output format", "not a result", "usage",
    ],
)  # fmt: skip
def test_bad_input_is_one_line_without_traceback(files, tmp_path, capsys, kind):
    root, _ = files
    argv, message = write_bad(root, tmp_path, kind)
    code, stdout, err = run(capsys, *argv, "-q")
    assert code == (2 if kind == "usage" else 1)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("alphanet-fast") and "error: " in lines[0]
    assert message in lines[0]
    assert "Traceback" not in err + stdout
    assert not list(tmp_path.glob("*.alphanet.*"))


def test_debug_shows_the_exception(files, tmp_path):
    root, _ = files
    with pytest.raises(InputError, match="no such file"):
        cli.main(["correct", str(tmp_path / "nope.npz"), str(root / "clf.npz"), "--debug"])


def test_help_and_no_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "correct", "evaluate", "neighbors", "sweep", "explain"):
        assert command in out
    assert cli.main([]) == 2
    assert "usage" in capsys.readouterr().err
    assert cli.main(["correct", "--help"]) == 0
    assert "--weight-key" in capsys.readouterr().out


def test_installed_console_script(files, tmp_path):
    """The real `alphanet-fast` executable: success, and a user error as one line."""
    root, _ = files
    script = shutil.which("alphanet-fast", path=os.path.dirname(sys.executable)) or shutil.which(
        "alphanet-fast"
    )
    assert script, "the alphanet-fast console script is not installed (pip install -e .)"
    ok = subprocess.run(
        [script, "neighbors", str(root / "train.npz"), "-k", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "few classes, 2 nearest base classes each" in ok.stdout
    bad = subprocess.run(
        [script, "evaluate", str(tmp_path / "none.npz"), str(root / "clf.npz"), "--train",
         str(root / "train.npz")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        f"alphanet-fast: error: {tmp_path / 'none.npz'}: no such file"
    ]
