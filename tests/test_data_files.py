"""Features, labels and text files from users' files; atomic writes."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from alphanet_fast.files import _atomic, data_files
from alphanet_fast.files.formats import InputError


def no_temp_files(folder):
    return not [p for p in os.listdir(folder) if p.endswith(".tmp")]


# ---------------------------------------------------------------- features and labels


@pytest.mark.parametrize(
    ("fkey", "lkey"), [("features", "labels"), ("X", "y"), ("feats", "targets")]
)
def test_npz_data_with_usual_keys(tmp_path, fkey, lkey):
    X = np.random.default_rng(1).normal(size=(10, 3))
    y = np.arange(10) % 4
    np.savez(tmp_path / "d.npz", **{fkey: X, lkey: y})
    Xl, yl = data_files.load_data(tmp_path / "d.npz")
    np.testing.assert_array_equal(Xl, X)
    assert yl.dtype == np.int64 and (yl == y).all()


def test_npy_features_are_memory_mapped_with_separate_labels(tmp_path):
    X = np.random.default_rng(2).normal(size=(12, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    y = np.arange(12) % 3
    np.save(tmp_path / "y.npy", y)
    np.savetxt(tmp_path / "y.txt", y, fmt="%d")
    for labels in ("y.npy", "y.txt"):
        Xl, yl = data_files.load_data(tmp_path / "x.npy", tmp_path / labels)
        assert isinstance(Xl, np.memmap)
        np.testing.assert_array_equal(Xl, X)
        np.testing.assert_array_equal(yl, y)


def test_torch_and_safetensors_data(tmp_path):
    from safetensors.torch import save_file

    X, y = torch.randn(8, 3), torch.arange(8) % 2
    torch.save({"features": X, "labels": y}, tmp_path / "d.pt")
    save_file({"features": X, "labels": y}, str(tmp_path / "d.safetensors"))
    for name in ("d.pt", "d.safetensors"):
        Xl, yl = data_files.load_data(tmp_path / name)
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
        data_files.load_data(tmp_path / "d.npz", labels)
    assert "\n" not in str(info.value)


def test_npy_without_labels_and_unknown_suffix(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 2)))
    with pytest.raises(InputError, match="give --x-labels too"):
        data_files.load_data(tmp_path / "x.npy", labels_hint="--x-labels")
    (tmp_path / "x.csvx").write_text("1")
    with pytest.raises(InputError, match="unknown file type '.csvx'"):
        data_files.load_data(tmp_path / "x.csvx")


def test_class_names(tmp_path):
    (tmp_path / "names.txt").write_text("cat\n  dog \nEskimo dog\n\n")
    assert data_files.load_class_names(tmp_path / "names.txt", 3) == ["cat", "dog", "Eskimo dog"]
    with pytest.raises(InputError, match="3 class names for 4 classes"):
        data_files.load_class_names(tmp_path / "names.txt", 4)
    (tmp_path / "gap.txt").write_text("a\n\nb\n")
    with pytest.raises(InputError, match="line 2 is blank"):
        data_files.load_class_names(tmp_path / "gap.txt")


# ---------------------------------------------------------------- writing


def test_atomic_write_leaves_target_untouched_on_error(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), _atomic.atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert no_temp_files(tmp_path)


def test_write_json_is_strict_and_creates_folders(tmp_path):
    out = _atomic.write_json(tmp_path / "a" / "b.json", {"x": np.float32(0.5), "y": np.arange(2)})
    assert out.read_text().startswith("{") and '"y": [' in out.read_text()
    with pytest.raises(ValueError):
        _atomic.write_json(tmp_path / "c.json", {"x": float("nan")})
    assert not (tmp_path / "c.json").exists() and no_temp_files(tmp_path)
    # The usual mode for a new file (umask applied), not mkstemp's private 0600.
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask
