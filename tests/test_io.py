"""Reading users' files and writing classifiers back in their own format."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from alphanet_fast import io
from alphanet_fast.io import InputError


@pytest.fixture
def clf_arrays():
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=6).astype(np.float32)


def no_temp_files(folder):
    return not [p for p in os.listdir(folder) if p.endswith(".tmp")]


# ---------------------------------------------------------------- classifiers


@pytest.mark.parametrize(
    ("weight", "bias"), [("weight", "bias"), ("W", "b"), ("coef_", "intercept_")]
)
def test_npz_classifier_round_trip_keeps_other_entries(tmp_path, clf_arrays, weight, bias):
    W, b = clf_arrays
    src = tmp_path / "clf.npz"
    np.savez_compressed(src, **{weight: W, bias: b, "notes": np.arange(3)})
    clf = io.load_classifier(src, dim=4)
    assert (clf.format, clf.weight_key, clf.bias_key) == ("npz", weight, bias)
    np.testing.assert_array_equal(clf.W, W)
    np.testing.assert_array_equal(clf.b, b)
    out = io.save_classifier(clf, W * 2, tmp_path / "out.npz")
    with np.load(out) as z:
        np.testing.assert_array_equal(z[weight], W * 2)
        np.testing.assert_array_equal(z[bias], b)
        np.testing.assert_array_equal(z["notes"], np.arange(3))
        assert z[weight].dtype == np.float32
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
@pytest.mark.parametrize("prefix", ["", "fc.", "head.", "module.classifier."])
def test_torch_state_dict_round_trip(tmp_path, clf_arrays, suffix, prefix):
    W, b = clf_arrays
    state = {
        "backbone.conv.weight": torch.randn(3, 2, 3, 3),  # 4-d: never a candidate
        f"{prefix}weight": torch.from_numpy(W),
        f"{prefix}bias": torch.from_numpy(b),
    }
    src = tmp_path / f"model{suffix}"
    torch.save(state, src)
    clf = io.load_classifier(src)
    assert clf.format == "torch" and clf.weight_key == f"{prefix}weight"
    np.testing.assert_array_equal(clf.b, b)
    out = io.save_classifier(clf, W + 1, tmp_path / f"out{suffix}")
    back = torch.load(out, weights_only=True)
    assert list(back) == list(state)
    torch.testing.assert_close(back[f"{prefix}weight"], torch.from_numpy(W + 1))
    torch.testing.assert_close(back["backbone.conv.weight"], state["backbone.conv.weight"])
    np.testing.assert_array_equal(io.load_classifier(out).W, W + 1)


def test_nested_checkpoint_keeps_its_nesting_and_dtype(tmp_path, clf_arrays):
    W, b = clf_arrays
    ckpt = {
        "epoch": 7,
        "state_dict": {
            "proj.weight": torch.zeros(9, 4),
            "fc.weight": torch.from_numpy(W).to(torch.bfloat16),
            "fc.bias": torch.from_numpy(b).to(torch.bfloat16),
        },
    }
    torch.save(ckpt, tmp_path / "ckpt.pt")
    # proj.weight and fc.weight both have 4 columns; "fc" is a known head name.
    clf = io.load_classifier(tmp_path / "ckpt.pt", dim=4)
    assert clf.weight_key == "state_dict.fc.weight" and clf.W.dtype == np.float32
    assert io.load_classifier(tmp_path / "ckpt.pt", weight_key="proj").W.shape == (9, 4)
    io.save_classifier(clf, clf.W * 0.5, tmp_path / "new.pt")
    back = torch.load(tmp_path / "new.pt", weights_only=True)
    assert back["epoch"] == 7
    assert back["state_dict"]["fc.weight"].dtype == torch.bfloat16
    torch.testing.assert_close(
        back["state_dict"]["fc.weight"].float(), torch.from_numpy(clf.W * 0.5)
    )


def test_safetensors_round_trip_keeps_metadata(tmp_path, clf_arrays):
    from safetensors import safe_open
    from safetensors.torch import save_file

    W, b = clf_arrays
    src = tmp_path / "head.safetensors"
    save_file(
        {"head.weight": torch.from_numpy(W).half(), "head.bias": torch.from_numpy(b).half()},
        str(src),
        metadata={"origin": "test"},
    )
    clf = io.load_classifier(src)
    assert clf.format == "safetensors" and clf.W.dtype == np.float32
    out = io.save_classifier(clf, clf.W - 1, tmp_path / "out.safetensors")
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata() == {"origin": "test"}
        assert f.get_tensor("head.weight").dtype == torch.float16
        torch.testing.assert_close(f.get_tensor("head.bias"), torch.from_numpy(b).half())
    np.testing.assert_allclose(io.load_classifier(out).W, clf.W - 1, atol=1e-2)


def test_npy_classifier_has_no_bias(tmp_path, clf_arrays):
    np.save(tmp_path / "w.npy", clf_arrays[0])
    clf = io.load_classifier(tmp_path / "w.npy")
    assert clf.b is None and clf.format == "npy"
    io.save_classifier(clf, clf.W * 3, tmp_path / "w2.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "w2.npy"), clf_arrays[0] * 3)


def test_several_candidates_need_a_weight_key(tmp_path):
    torch.save({"a.weight": torch.zeros(5, 4), "b.weight": torch.ones(5, 4)}, tmp_path / "m.pt")
    with pytest.raises(InputError, match=r"several candidate.*a\.weight.*b\.weight.*--weight-key"):
        io.load_classifier(tmp_path / "m.pt")
    assert io.load_classifier(tmp_path / "m.pt", weight_key="b.").W.sum() == 20
    assert io.load_classifier(tmp_path / "m.pt", weight_key="a.weight").W.sum() == 0
    # The features' dimension alone can settle it.
    torch.save({"a.weight": torch.zeros(5, 3), "b.weight": torch.ones(5, 4)}, tmp_path / "n.pt")
    assert io.load_classifier(tmp_path / "n.pt", dim=4).weight_key == "b.weight"


@pytest.mark.parametrize(
    ("make", "kwargs", "match"),
    [
        (None, {}, r"missing\.npz: no such file"),
        (lambda p: np.savez(p, other=np.zeros((2, 2))), {}, r"no classifier weight entry"),
        (lambda p: np.savez(p, W=np.zeros((2, 2))), {"weight_key": "fc"}, r"no weight entry 'fc'"),
        (lambda p: np.savez(p, W=np.zeros((3, 2)), b=np.zeros(4)), {}, r"\[b\]: expected 3 biases"),
        (lambda p: np.savez(p, W=np.zeros((3, 2))), {"dim": 5}, r"no weight matrix has 5 columns"),
        (lambda p: np.savez(p, W=np.array([[1.0, np.nan]])), {}, r"\[W\]: row 0 contains NaN"),
        (lambda p: p.write_bytes(b"not a zip"), {}, r"not a readable \.npz"),
    ],
)
def test_bad_classifier_files(tmp_path, make, kwargs, match):
    path = tmp_path / "missing.npz"
    if make is not None:
        path = tmp_path / "clf.npz"
        make(path)
    with pytest.raises(InputError, match=match) as info:
        io.load_classifier(path, **kwargs)
    assert "\n" not in str(info.value)


def test_torch_files_are_read_without_arbitrary_pickles(tmp_path):
    torch.save({"weight": torch.zeros(2, 2), "obj": _Custom()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match=r"weights_only=True\) refused it \(Unsupported global"):
        io.load_classifier(tmp_path / "evil.pt")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(InputError, match="junk.pth"):
        io.load_classifier(tmp_path / "junk.pth")


class _Custom:
    pass


def test_save_refuses_other_format_and_overwriting_input(tmp_path, clf_arrays):
    np.savez(tmp_path / "c.npz", W=clf_arrays[0])
    clf = io.load_classifier(tmp_path / "c.npz")
    with pytest.raises(InputError, match=r"use a \.npz name"):
        io.save_classifier(clf, clf.W, tmp_path / "c.pt")
    with pytest.raises(InputError, match="overwrite the input"):
        io.save_classifier(clf, clf.W, tmp_path / "c.npz")
    with pytest.raises(InputError, match=r"expected shape \(6, 4\)"):
        io.save_classifier(clf, clf.W[:3], tmp_path / "d.npz")


# ---------------------------------------------------------------- features and labels


@pytest.mark.parametrize(
    ("fkey", "lkey"), [("features", "labels"), ("X", "y"), ("feats", "targets")]
)
def test_npz_data_with_usual_keys(tmp_path, fkey, lkey):
    X = np.random.default_rng(1).normal(size=(10, 3))
    y = np.arange(10) % 4
    np.savez(tmp_path / "d.npz", **{fkey: X, lkey: y})
    Xl, yl = io.load_data(tmp_path / "d.npz")
    np.testing.assert_array_equal(Xl, X)
    assert yl.dtype == np.int64 and (yl == y).all()


def test_npy_features_are_memory_mapped_with_separate_labels(tmp_path):
    X = np.random.default_rng(2).normal(size=(12, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    y = np.arange(12) % 3
    np.save(tmp_path / "y.npy", y)
    np.savetxt(tmp_path / "y.txt", y, fmt="%d")
    for labels in ("y.npy", "y.txt"):
        Xl, yl = io.load_data(tmp_path / "x.npy", tmp_path / labels)
        assert isinstance(Xl, np.memmap)
        np.testing.assert_array_equal(Xl, X)
        np.testing.assert_array_equal(yl, y)


def test_torch_and_safetensors_data(tmp_path):
    from safetensors.torch import save_file

    X, y = torch.randn(8, 3), torch.arange(8) % 2
    torch.save({"features": X, "labels": y}, tmp_path / "d.pt")
    save_file({"features": X, "labels": y}, str(tmp_path / "d.safetensors"))
    for name in ("d.pt", "d.safetensors"):
        Xl, yl = io.load_data(tmp_path / name)
        np.testing.assert_array_equal(Xl, X.numpy())
        np.testing.assert_array_equal(yl, y.numpy())


@pytest.mark.parametrize(
    ("arrays", "labels_file", "match"),
    [
        (
            {"feats_x": np.zeros((3, 2)), "labels": np.zeros(3)},
            None,
            r"no features entry.*feats_x 3x2",
        ),
        ({"features": np.zeros((3, 2))}, None, r"no labels entry"),
        (
            {"features": np.zeros((3, 2)), "labels": np.zeros(4)},
            None,
            r"4 labels for 3 feature rows",
        ),
        ({"features": np.zeros(3), "labels": np.zeros(3)}, None, r"expected a 2-d array"),
        ({"features": np.zeros((3, 2)), "labels": np.array([0, -1, 0])}, None, r"label 1 is -1"),
        ({"features": np.zeros((3, 2)), "labels": np.array([0, 0.5, 1])}, None, r"entry 1 is 0.5"),
        ({"features": np.full((3, 2), np.inf), "labels": np.zeros(3)}, None, r"row 0 contains NaN"),
        ({"features": np.zeros((3, 2))}, "nope.npy", r"nope\.npy: no such file"),
    ],
)
def test_bad_data_files(tmp_path, arrays, labels_file, match):
    np.savez(tmp_path / "d.npz", **arrays)
    labels = None if labels_file is None else tmp_path / labels_file
    with pytest.raises(InputError, match=match) as info:
        io.load_data(tmp_path / "d.npz", labels)
    assert "\n" not in str(info.value)


def test_npy_without_labels_and_unknown_suffix(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 2)))
    with pytest.raises(InputError, match="give --x-labels too"):
        io.load_data(tmp_path / "x.npy", labels_hint="--x-labels")
    (tmp_path / "x.csvx").write_text("1")
    with pytest.raises(InputError, match="unknown file type '.csvx'"):
        io.load_data(tmp_path / "x.csvx")


def test_class_names(tmp_path):
    (tmp_path / "names.txt").write_text("cat\n  dog \nEskimo dog\n\n")
    assert io.load_class_names(tmp_path / "names.txt", 3) == ["cat", "dog", "Eskimo dog"]
    with pytest.raises(InputError, match="3 class names for 4 classes"):
        io.load_class_names(tmp_path / "names.txt", 4)
    (tmp_path / "gap.txt").write_text("a\n\nb\n")
    with pytest.raises(InputError, match="line 2 is blank"):
        io.load_class_names(tmp_path / "gap.txt")


# ---------------------------------------------------------------- writing


def test_atomic_write_leaves_target_untouched_on_error(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), io.atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert no_temp_files(tmp_path)


def test_write_json_is_strict_and_creates_folders(tmp_path):
    out = io.write_json(tmp_path / "a" / "b.json", {"x": np.float32(0.5), "y": np.arange(2)})
    assert out.read_text().startswith("{") and '"y": [' in out.read_text()
    with pytest.raises(ValueError):
        io.write_json(tmp_path / "c.json", {"x": float("nan")})
    assert not (tmp_path / "c.json").exists() and no_temp_files(tmp_path)
    # The usual mode for a new file (umask applied), not mkstemp's private 0600.
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask
