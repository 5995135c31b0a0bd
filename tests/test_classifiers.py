"""Reading classifiers from users' files and writing them back in their own format."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from alphanet_fast.files import classifiers
from alphanet_fast.files.formats import InputError


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
    clf = classifiers.load_classifier(src, dim=4)
    assert (clf.format, clf.weight_key, clf.bias_key) == ("npz", weight, bias)
    np.testing.assert_array_equal(clf.W, W)
    np.testing.assert_array_equal(clf.b, b)
    out = classifiers.save_classifier(clf, W * 2, tmp_path / "out.npz")
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
    clf = classifiers.load_classifier(src)
    assert clf.format == "torch" and clf.weight_key == f"{prefix}weight"
    np.testing.assert_array_equal(clf.b, b)
    out = classifiers.save_classifier(clf, W + 1, tmp_path / f"out{suffix}")
    back = torch.load(out, weights_only=True)
    assert list(back) == list(state)
    torch.testing.assert_close(back[f"{prefix}weight"], torch.from_numpy(W + 1))
    torch.testing.assert_close(back["backbone.conv.weight"], state["backbone.conv.weight"])
    np.testing.assert_array_equal(classifiers.load_classifier(out).W, W + 1)


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
    clf = classifiers.load_classifier(tmp_path / "ckpt.pt", dim=4)
    assert clf.weight_key == "state_dict.fc.weight" and clf.W.dtype == np.float32
    assert classifiers.load_classifier(tmp_path / "ckpt.pt", weight_key="proj").W.shape == (9, 4)
    classifiers.save_classifier(clf, clf.W * 0.5, tmp_path / "new.pt")
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
    clf = classifiers.load_classifier(src)
    assert clf.format == "safetensors" and clf.W.dtype == np.float32
    out = classifiers.save_classifier(clf, clf.W - 1, tmp_path / "out.safetensors")
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata() == {"origin": "test"}
        assert f.get_tensor("head.weight").dtype == torch.float16
        torch.testing.assert_close(f.get_tensor("head.bias"), torch.from_numpy(b).half())
    np.testing.assert_allclose(classifiers.load_classifier(out).W, clf.W - 1, atol=1e-2)


def test_npy_classifier_has_no_bias(tmp_path, clf_arrays):
    np.save(tmp_path / "w.npy", clf_arrays[0])
    clf = classifiers.load_classifier(tmp_path / "w.npy")
    assert clf.b is None and clf.format == "npy"
    classifiers.save_classifier(clf, clf.W * 3, tmp_path / "w2.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "w2.npy"), clf_arrays[0] * 3)


def test_several_candidates_need_a_weight_key(tmp_path):
    torch.save({"a.weight": torch.zeros(5, 4), "b.weight": torch.ones(5, 4)}, tmp_path / "m.pt")
    with pytest.raises(InputError, match=r"several candidate.*a\.weight.*b\.weight.*--weight-key"):
        classifiers.load_classifier(tmp_path / "m.pt")
    assert classifiers.load_classifier(tmp_path / "m.pt", weight_key="b.").W.sum() == 20
    assert classifiers.load_classifier(tmp_path / "m.pt", weight_key="a.weight").W.sum() == 0
    # The features' dimension alone can settle it.
    torch.save({"a.weight": torch.zeros(5, 3), "b.weight": torch.ones(5, 4)}, tmp_path / "n.pt")
    assert classifiers.load_classifier(tmp_path / "n.pt", dim=4).weight_key == "b.weight"


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
        (lambda p: np.savez(p, weight=np.ones((3, 2), np.int64)), {}, r"dtype int64\) is not"),
    ],
)
def test_bad_classifier_files(tmp_path, make, kwargs, match):
    path = tmp_path / "missing.npz"
    if make is not None:
        path = tmp_path / "clf.npz"
        make(path)
    with pytest.raises(InputError, match=match) as info:
        classifiers.load_classifier(path, **kwargs)
    assert "\n" not in str(info.value)


def test_torch_files_are_read_without_arbitrary_pickles(tmp_path):
    torch.save({"weight": torch.zeros(2, 2), "obj": _Custom()}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match=r"weights_only=True\) refused it \(Unsupported global"):
        classifiers.load_classifier(tmp_path / "evil.pt")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(InputError, match="junk.pth"):
        classifiers.load_classifier(tmp_path / "junk.pth")


class _Custom:
    pass


def test_save_refuses_other_format_and_overwriting_input(tmp_path, clf_arrays):
    np.savez(tmp_path / "c.npz", W=clf_arrays[0])
    clf = classifiers.load_classifier(tmp_path / "c.npz")
    with pytest.raises(InputError, match=r"use a \.npz name"):
        classifiers.save_classifier(clf, clf.W, tmp_path / "c.pt")
    with pytest.raises(InputError, match="overwrite the input"):
        classifiers.save_classifier(clf, clf.W, tmp_path / "c.npz")
    with pytest.raises(InputError, match=r"expected shape \(6, 4\)"):
        classifiers.save_classifier(clf, clf.W[:3], tmp_path / "d.npz")
