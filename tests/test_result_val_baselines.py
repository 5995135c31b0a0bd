"""correct() scores tau-norm and logit adjustment on its validation set: figures, bits, files."""

from __future__ import annotations

import importlib
import json
import math

import alphanet_fast as af
import numpy as np
import pytest
from alphanet_fast import baselines

# The module (the package's attribute of that name is the function).
correct_module = importlib.import_module("alphanet_fast.training.correct")


def test_counts_on_the_shared_scores_equal_a_pass_of_their_own(data, result, monkeypatch):
    """On the CPU with a float32 W the check counts on the validation scores AlphaNet
    computes anyway; without that (a float64 W, or CUDA) it scores the rows itself."""
    assert data.W.dtype == np.float32 and result.timings["frozen_val"] > 0
    monkeypatch.setattr(correct_module, "shared_check", lambda *args: None)
    val = (data.val_features, data.val_labels)
    own_pass = af.correct(data.train_features, data.train_labels, data.W, data.b, val=val, **KW)
    assert own_pass.val_baselines == result.val_baselines
    assert own_pass.W.tobytes() == result.W.tobytes()
    monkeypatch.undo()
    wide = af.correct(
        data.train_features, data.train_labels, data.W.astype(np.float64), data.b, val=val, **KW
    )
    assert set(wide.val_baselines) == set(result.val_baselines)


KW = {"epochs": 6, "device": "cpu", "progress": False, "seed": 1}


@pytest.fixture(scope="module")
def data():
    return af.datasets.make_long_tail("small", seed=3)


@pytest.fixture(scope="module")
def result(data):
    val = (data.val_features, data.val_labels)
    return af.correct(data.train_features, data.train_labels, data.W, data.b, val=val, **KW)


def test_figures_are_those_of_the_baselines_chosen_on_validation(data, result):
    val = (data.val_features, data.val_labels)
    assert list(result.val_baselines) == ["tau_norm", "logit_adjust"]
    for name in result.val_baselines:
        fit = getattr(baselines, name)(data.train_features, data.train_labels, data.W, data.b,
                                       val=val)  # fmt: skip
        figures = result.val_baselines[name]
        assert figures["tau"] == fit.settings["tau"]
        report = af.evaluate(*val, fit.W, fit.b, splits=result, k=1)
        for split, value in report.accuracy[1].items():
            assert figures[split] == pytest.approx(value, abs=0.5 / len(data.val_labels))
    assert result.timings["val_baselines"] >= 0


def test_alphanet_weights_are_bitwise_the_same_without_the_check(data, result):
    from alphanet_fast.baselines.self_check import skipping

    val = (data.val_features, data.val_labels)
    with skipping():  # neither the counts on the shared scores nor a pass of their own
        plain = af.correct(data.train_features, data.train_labels, data.W, data.b, val=val, **KW)
    assert plain.val_baselines is None
    assert plain.W.tobytes() == result.W.tobytes()
    assert plain.alphas.tobytes() == result.alphas.tobytes()
    assert plain.best_epoch == result.best_epoch


def test_no_validation_data_no_figures(data):
    res = af.correct(data.train_features, data.train_labels, data.W, data.b, **KW)
    assert res.val_baselines is None and res.beaten_by() is None


def test_beaten_by_compares_overall_validation_top1(result):
    own = result.val_top1()["overall"]
    best = max(result.val_baselines, key=lambda n: result.val_baselines[n]["overall"])
    expected = best if result.val_baselines[best]["overall"] > own else None
    found = result.beaten_by()
    assert (found and found[0]) == expected
    lower = {n: {**f, "overall": own - 0.01} for n, f in result.val_baselines.items()}
    higher = {**lower, "logit_adjust": {**lower["logit_adjust"], "overall": own + 0.01}}
    result_copy = af.AlphaNetResult(**{**vars(result), "val_baselines": lower})
    assert result_copy.beaten_by() is None
    result_copy.val_baselines = higher
    assert result_copy.beaten_by()[0] == "logit_adjust"


def test_saved_and_loaded_with_the_result(tmp_path, result):
    result.save(tmp_path / "r.npz")
    back = af.load_result(tmp_path / "r.npz")
    assert back.val_baselines == result.val_baselines
    # NaN for a split without validation rows survives the file.
    result_nan = af.AlphaNetResult(**vars(result))
    result_nan.val_baselines = {"tau_norm": {**result.val_baselines["tau_norm"], "many": math.nan}}
    result_nan.save(tmp_path / "nan.npz")
    assert math.isnan(af.load_result(tmp_path / "nan.npz").val_baselines["tau_norm"]["many"])


def _rewrite(path, change):
    with np.load(path) as z:
        entries = {k: z[k] for k in z.files}
    meta = json.loads(str(entries["meta"][()]))
    change(meta)
    entries["meta"] = np.array(json.dumps(meta))
    np.savez(path, **entries)


def test_older_files_load_without_figures_and_bad_ones_are_named(tmp_path, result):
    path = tmp_path / "old.npz"
    result.save(path)
    _rewrite(path, lambda meta: meta.pop("val_baselines"))
    assert af.load_result(path).val_baselines is None
    result.save(path)
    _rewrite(path, lambda meta: meta["val_baselines"]["tau_norm"].pop("few"))
    with pytest.raises(ValueError, match="meta.val_baselines.tau_norm"):
        af.load_result(path)
    result.save(path)
    _rewrite(path, lambda meta: meta.update(val_baselines=[1]))
    with pytest.raises(ValueError, match="meta.val_baselines: expected a JSON object"):
        af.load_result(path)


def test_skipping_leaves_the_figures_out(data):
    from alphanet_fast.baselines.self_check import skipping

    val = (data.val_features, data.val_labels)
    with skipping():
        res = af.correct(data.train_features, data.train_labels, data.W, data.b, val=val, **KW)
    assert res.val_baselines is None and "val_baselines" in res.timings
