"""AlphaNetResult: save, load, apply, summary."""

from __future__ import annotations

import json
import os
import zipfile

import alphanet_fast as af
import numpy as np
import pytest
from training_toys import FAST, toy


def test_save_load_round_trip_without_pickle(tmp_path):
    x, y, W, b, vx, vy = toy(20)
    res = af.correct(x, y, W, b, val=(vx, vy), **FAST)
    path = tmp_path / "result.npz"
    res.save(path)
    assert os.listdir(tmp_path) == ["result.npz"]  # no temporary file left behind
    with zipfile.ZipFile(path) as zf:
        assert "meta.npy" in zf.namelist()
    with np.load(path, allow_pickle=False) as data:
        json.loads(str(data["meta"][()]))
    back = af.load_result(path)
    for name in ("W", "b", "alphas", "few_classes", "neighbors", "neighbor_distances", "counts"):
        got, want = getattr(back, name), getattr(res, name)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert back.history == res.history
    assert back.best_epoch == res.best_epoch
    assert back.config == res.config
    assert back.splits.to_dict() == res.splits.to_dict()
    np.testing.assert_array_equal(back.apply(W), res.W)
    assert back.summary() == res.summary()


def test_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    x, y, W, b, _, _ = toy(21)
    res = af.correct(x, y, W, b, **FAST)
    path = tmp_path / "result.npz"
    res.save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        res.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["result.npz"]


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.arange(3))
    with pytest.raises(ValueError, match="not an AlphaNet result"):
        af.load_result(path)
    np.savez(path, meta=np.array(json.dumps({"format": "something", "version": 9})))
    with pytest.raises(ValueError, match="expected format"):
        af.load_result(path)


def test_apply_checks_its_input_and_summary_reads_well():
    x, y, W, b, vx, vy = toy(22)
    res = af.correct(x, y, W, b, val=(vx, vy), **FAST)
    with pytest.raises(ValueError, match=r"W: expected 12 rows"):
        res.apply(W[:5])
    text = res.summary()
    assert "3 few classes corrected" in text and f"kept epoch {res.best_epoch}" in text
    assert "val top-1" in text
    assert "AlphaNetResult(" in repr(res)
    assert set(res.timings) >= {
        "checks",
        "means",
        "neighbors",
        "frozen_train",
        "frozen_val",
        "epochs",
        "validation",
        "final_update",
        "total",
    }
