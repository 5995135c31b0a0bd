"""Shipping a classifier from the command line: ``baseline``, ``compare -o``, bundled files.

Every written classifier is compared bitwise with the Python API's result on
the same data; the JSON beside it names the method and its settings.
"""

from __future__ import annotations

import json

import alphanet_fast as af
import numpy as np
import pytest
import torch
from alphanet_fast import baselines, cli
from alphanet_fast.baselines.methods import METHODS
from alphanet_fast.datasets import make_long_tail
from alphanet_fast.files.classifiers import load_classifier, save_classifier
from alphanet_fast.files.data_files import InputError, load_class_names

NAMES = [f"animal {c}" for c in range(30)]


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    """One bundled .npz (every split, W, b, class names), as users hand them over."""
    d = make_long_tail("small", n_classes=30, dim=16, seed=2, n_val_per_class=6, n_test_per_class=8)
    root = tmp_path_factory.mktemp("data")
    np.savez(
        root / "bundle.npz", train_x=d.train_features, train_y=d.train_labels,
        val_x=d.val_features, val_y=d.val_labels, test_x=d.test_features,
        test_y=d.test_labels, W=d.W, b=d.b, class_names=np.array(NAMES),
    )  # fmt: skip
    return root, d


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_head(path, W, b):
    if path.suffix == ".npz":
        np.savez(path, weight=W, bias=b)
    elif path.suffix == ".pt":
        torch.save({"fc.weight": torch.from_numpy(W), "fc.bias": torch.from_numpy(b)}, path)
    else:
        from safetensors.torch import save_file

        save_file({"fc.weight": torch.from_numpy(W), "fc.bias": torch.from_numpy(b)}, str(path))


@pytest.mark.parametrize("suffix", [".npz", ".pt", ".safetensors"])
@pytest.mark.parametrize("method", ["tau_norm", "logit_adjust", "ncm"])
def test_baseline_writes_the_python_result(problem, tmp_path, capsys, method, suffix):
    root, d = problem
    bundle = root / "bundle.npz"
    head = tmp_path / f"head{suffix}"
    write_head(head, d.W, d.b)
    out = tmp_path / f"fixed{suffix}"
    extra = [] if method == "ncm" else ["--val", bundle]
    code, stdout, err = run(capsys, "baseline", method, bundle, head, *extra, "-o", out, "-q")
    assert code == 0, err
    kw = {} if method == "ncm" else {"val": (d.val_features, d.val_labels)}
    fit = getattr(baselines, method)(d.train_features, d.train_labels, d.W, d.b, **kw)
    clf = load_classifier(out)
    assert clf.W.dtype == fit.W.dtype and clf.W.tobytes() == fit.W.tobytes()
    assert clf.b.tobytes() == fit.b.tobytes()
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["command"] == "baseline" and report["method"] == method
    assert report["name"] == METHODS[method].label and report["feature_transform"] is None
    assert report["settings"] == json.loads(json.dumps(fit.to_dict()["settings"]))
    assert report["output"] == str(out) and report["left_out"] == []
    assert report["test"] is None and (report["val"] is None) == (method == "ncm")
    assert f"wrote {out}" in stdout


def test_baseline_tau_given_or_chosen_and_trained_methods(problem, tmp_path, capsys):
    root, d = problem
    bundle = root / "bundle.npz"
    out = tmp_path / "ta.npz"
    code, stdout, _ = run(capsys, "baseline", "tau_norm", bundle, bundle, "--tau", "0.5",
                          "-o", out, "--test", bundle, "-q")  # fmt: skip
    assert code == 0 and "given: tau=0.5" in stdout
    fit = baselines.tau_norm(d.train_features, d.train_labels, d.W, d.b, tau=0.5)
    clf = load_classifier(out)
    assert clf.W.tobytes() == fit.W.tobytes() and clf.b.tobytes() == fit.b.tobytes()
    report = json.loads(out.with_suffix(".json").read_text())
    expected = af.evaluate(d.test_features, d.test_labels, fit.W, fit.b, k=(1, 5),
                           splits=af.splits_from_counts(np.bincount(d.train_labels)))  # fmt: skip
    assert report["test"] == json.loads(json.dumps(expected.to_dict()))
    # A trained method, with its seed.
    out = tmp_path / "lws.npz"
    code, _, err = run(capsys, "baseline", "lws", bundle, bundle, "--seed", "3", "--device",
                       "cpu", "-o", out, "-q")  # fmt: skip
    assert code == 0, err
    fit = baselines.lws(d.train_features, d.train_labels, d.W, d.b, seed=3, device="cpu")
    clf = load_classifier(out)
    assert clf.W.tobytes() == fit.W.tobytes() and clf.b.tobytes() == fit.b.tobytes()
    assert json.loads(out.with_suffix(".json").read_text())["settings"]["seed"] == 3


def test_baseline_refusals_name_the_option(problem, tmp_path, capsys):
    root, _ = problem
    bundle = root / "bundle.npz"
    for argv, needle in [
        (["tau_norm", bundle, bundle], "--val: tau_norm chooses tau on validation data"),
        (["ncm", bundle, bundle, "--tau", "1"], "--tau: ncm has no tau"),
        (["ncm", bundle, bundle, "-o", bundle], "-o/--output"),
        (["ncm", bundle, bundle, "-o", tmp_path / "x.npz", "--report", bundle], "--report"),
        (["ncm", bundle, bundle, "-o", tmp_path / "x.pt"], "use a .npz name"),
    ]:
        code, _, err = run(capsys, "baseline", *argv, "-q")
        assert code == 1 and needle in err, err
        assert len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
    code, _, err = run(capsys, "baseline", "svm", bundle, bundle)
    assert code == 2 and "invalid choice" in err


def test_correct_from_a_bundle_leaves_the_data_out(problem, tmp_path, capsys):
    root, d = problem
    bundle = root / "bundle.npz"
    out = tmp_path / "fixed.npz"
    code, stdout, err = run(capsys, "correct", bundle, bundle, "--val", bundle, "-o", out,
                            "--epochs", "2", "--device", "cpu", "-q")  # fmt: skip
    assert code == 0, err
    (note,) = [line for line in stdout.splitlines() if line.startswith("left out of")]
    assert "train_x, train_y, val_x, val_y, test_x, test_y" in note
    with np.load(out) as z:
        assert sorted(z.files) == ["W", "b", "class_names"]
        assert z["class_names"].tolist() == NAMES
    assert out.stat().st_size < 0.2 * bundle.stat().st_size


def test_class_names_from_a_data_file(problem, tmp_path, capsys):
    root, _ = problem
    bundle = root / "bundle.npz"
    assert load_class_names(f"{bundle}:class_names", 30) == NAMES
    assert load_class_names(bundle, 30) == NAMES  # a data file given as it is
    # neighbors reads the training file's entry without --class-names.
    code, stdout, _ = run(capsys, "neighbors", bundle, "-k", "2")
    assert code == 0 and "[animal " in stdout
    torch.save({"names": NAMES}, tmp_path / "names.pt")
    assert load_class_names(f"{tmp_path / 'names.pt'}:names", 30) == NAMES
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="expected a UTF-8 text file with one class name per"):
        load_class_names(tmp_path / "latin1.txt")
    with pytest.raises(InputError, match="no entry 'labels'"):
        load_class_names(f"{bundle}:labels")
    with pytest.raises(InputError, match="expected a 1-d array of strings"):
        load_class_names(f"{bundle}:train_y")
    with pytest.raises(InputError, match="3 class names for 30 classes"):
        np.savez(tmp_path / "three.npz", class_names=np.array(["a", "b", "c"]))
        load_class_names(f"{tmp_path / 'three.npz'}:class_names", 30)


def test_save_classifier_writes_new_biases_beside_the_weights(tmp_path):
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    np.savez(tmp_path / "w.npz", W=W)
    clf = load_classifier(tmp_path / "w.npz")
    save_classifier(clf, W * 2, tmp_path / "out.npz", b=b)
    back = load_classifier(tmp_path / "out.npz")
    assert back.bias_key == "b" and back.b.tobytes() == b.tobytes()
    torch.save({"state_dict": {"fc.weight": torch.from_numpy(W)}}, tmp_path / "m.pt")
    clf = load_classifier(tmp_path / "m.pt")
    save_classifier(clf, W, tmp_path / "out.pt", b=b)
    state = torch.load(tmp_path / "out.pt", weights_only=True)
    assert list(state["state_dict"]) == ["fc.weight", "fc.bias"]
    assert state["state_dict"]["fc.bias"].numpy().tobytes() == b.tobytes()
    np.save(tmp_path / "w.npy", W)
    clf = load_classifier(tmp_path / "w.npy")
    save_classifier(clf, W, tmp_path / "zero.npy", b=np.zeros(4))  # zeros: nothing to store
    with pytest.raises(InputError, match="holds the weights only"):
        save_classifier(clf, W, tmp_path / "out.npy", b=b)


COMPARE_FLAGS = [
    "--methods", "tau_norm", "logit_adjust", "--alphanet-on", "plain", "--rhos", "1",
    "--seeds", "1", "--epochs", "3", "--device", "cpu", "-q",
]  # fmt: skip


@pytest.fixture(scope="module")
def compared(problem):
    _, d = problem
    return af.compare(
        (d.train_features, d.train_labels), d.W, d.b, val=(d.val_features, d.val_labels),
        test=(d.test_features, d.test_labels), methods=("tau_norm", "logit_adjust"),
        alphanet_on=("plain",), rhos=(1.0,), seeds=1, alphanet_options={"epochs": 3},
        device="cpu",
    )  # fmt: skip


def test_compare_writes_the_recommended_row(problem, compared, tmp_path, capsys):
    root, d = problem
    bundle = root / "bundle.npz"
    out = tmp_path / "best.npz"
    code, stdout, err = run(capsys, "compare", bundle, bundle, "--val", bundle, "--test", bundle,
                            *COMPARE_FLAGS, "-o", out)  # fmt: skip
    assert code == 0, err
    best = compared.best
    clf = load_classifier(out)
    assert clf.W.tobytes() == best.W.tobytes() and clf.b.tobytes() == best.b.tobytes()
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["command"] == "compare" and report["name"] == best.name == compared.recommended
    assert {k: v for k, v in report.items() if k in best.to_dict()} == json.loads(
        json.dumps(best.to_dict())
    )
    assert report["method"] == best.method and report["shipped_recommended"] is True
    assert report["settings"] == json.loads(json.dumps(best.settings))
    assert report["test"] == json.loads(json.dumps(best.test.to_dict()))
    assert "left out of" in stdout and f"wrote {out}" in stdout


def test_compare_ships_a_named_row(problem, compared, tmp_path, capsys):
    root, _ = problem
    bundle = root / "bundle.npz"
    for name in ("tau-norm", "plain + AlphaNet (rho=1)"):
        out = tmp_path / "named.npz"
        code, _, err = run(capsys, "compare", bundle, bundle, "--val", bundle, *COMPARE_FLAGS,
                           "-o", out, "--ship", name)  # fmt: skip
        assert code == 0, err
        run_ = compared.run(name)
        clf = load_classifier(out)
        assert clf.W.tobytes() == run_.W.tobytes() and clf.b.tobytes() == run_.b.tobytes()
        report = json.loads(out.with_suffix(".json").read_text())
        assert report["name"] == name and report["method"] == run_.method


def test_compare_output_refusals_come_before_the_run(problem, tmp_path, capsys):
    root, _ = problem
    bundle = root / "bundle.npz"
    base = ["compare", bundle, bundle, "--val", bundle, *COMPARE_FLAGS]
    for extra, needle in [
        (["-o", bundle], "-o/--output"),
        (["--ship", "tau-norm"], "--ship: give -o PATH"),
        (["-o", tmp_path / "x.npz", "--ship", "SVM"], "--ship: no row 'SVM'"),
        (["-o", tmp_path / "x.npz", "--report", tmp_path / "x.json"], "are both"),
    ]:
        code, stdout, err = run(capsys, *base, *extra)
        assert code == 1 and needle in err, err
        assert "accuracy per split" not in stdout  # nothing ran
    assert not list(tmp_path.iterdir())


def test_compare_flag_defaults_are_compare_defaults():
    import inspect

    parsed = cli.build_parser().parse_args(["compare", "t.npz", "c.npz"])
    params = inspect.signature(af.compare).parameters
    assert tuple(parsed.methods) == tuple(params["methods"].default)
    assert tuple(parsed.alphanet_on) == tuple(params["alphanet_on"].default)
    assert tuple(parsed.rhos) == tuple(params["rhos"].default)
    assert parsed.seeds == params["seeds"].default
    assert parsed.criterion == params["criterion"].default
