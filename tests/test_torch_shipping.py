"""alphanet_fast.torch: compare_model and evaluate_model, from a model to the fix to ship."""

from __future__ import annotations

import alphanet_fast as af
import alphanet_fast.torch as aft
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch_toys import COUNTS, TinyCNN, long_tail, mlp


def test_evaluate_model_equals_evaluate_on_the_extracted_features():
    torch.manual_seed(7)
    model = TinyCNN()
    x, y = long_tail(image=True)
    test_x, test_y = long_tail(seed=2, image=True)
    loader = DataLoader(TensorDataset(test_x, test_y), batch_size=32)
    splits = af.splits_from_counts(COUNTS)
    report = aft.evaluate_model(model, loader, splits=splits, progress=False)
    feats = aft.extract(model, loader)
    W, b = model.fc.weight.detach().numpy(), model.fc.bias.detach().numpy()
    expected = af.evaluate(feats.features, feats.labels, W, b, splits=splits)
    assert report.to_dict() == expected.to_dict()
    for k in report.ks:
        np.testing.assert_array_equal(report.hit_counts["per_class"][k],
                                      expected.hit_counts["per_class"][k])  # fmt: skip
    # The model's own top-1 predictions give the same accuracy.
    model.eval()
    with torch.no_grad():
        own = int((model(test_x).argmax(1) == test_y).sum())
    assert report.hit_counts["accuracy"][1]["overall"] == own
    # Splits read back from a report.
    again = aft.evaluate_model(model, loader, splits=report, progress=False)
    assert again.to_dict() == report.to_dict()
    with pytest.raises(af.ArgumentError) as info:
        aft.evaluate_model(model, loader, splits=splits, head="nothing")
    assert info.value.argument == "head"


def test_torch_argument_errors_carry_the_argument():
    model = mlp()
    x, y = long_tail()
    batches = [(x, y)]
    cases = [
        (lambda: aft.find_head("not a model"), "model", TypeError),
        (lambda: aft.find_head(model, name=3), "name", TypeError),
        (lambda: aft.extract(model, batches, dtype=np.int32), "dtype", TypeError),
        (lambda: aft.extract(model, [x]), "batch", TypeError),
        (lambda: aft.extract(model, batches, progress="yes"), "progress", TypeError),
        (lambda: aft.extract(model, batches, device="nowhere"), "device", ValueError),
        (lambda: aft.extract(model, []), "loader", ValueError),
        (lambda: aft.correct_model(model, batches, inplace=1), "inplace", TypeError),
        (lambda: aft.apply_to(model, object()), "result", TypeError),
        (lambda: aft.compare_model(model, batches, None), "val_loader", ValueError),
        (lambda: aft.compare_model(model, batches, batches, val=1), "val", TypeError),
    ]
    for call, argument, kind in cases:
        with pytest.raises(af.ArgumentError) as info:
            call()
        assert info.value.argument == argument
        assert isinstance(info.value, kind)


COMPARE_KW = {
    "methods": ("tau_norm", "logit_adjust", "ncm"),
    "alphanet_on": ("plain",),
    "rhos": (1.0,),
    "seeds": 1,
    "alphanet_options": {"epochs": 3},
    "progress": False,
}


def _loaders():
    train = DataLoader(TensorDataset(*long_tail(image=True)), batch_size=64)
    val = DataLoader(TensorDataset(*long_tail(seed=1, image=True)), batch_size=64)
    test = DataLoader(TensorDataset(*long_tail(seed=2, image=True)), batch_size=64)
    return train, val, test


def test_compare_model_ships_the_recommended_row_in_a_copy():
    torch.manual_seed(8)
    model = TinyCNN()
    train, val, test = _loaders()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fixed, report = aft.compare_model(model, train, val, test, **COMPARE_KW)
    assert fixed is not model
    for k, v in model.state_dict().items():  # the original is untouched
        assert torch.equal(v, before[k])
    best = report.best
    assert best.name == report.recommended
    assert fixed.fc.weight.detach().numpy().tobytes() == best.W.tobytes()
    assert fixed.fc.bias.detach().numpy().tobytes() == best.b.tobytes()
    # The shipped model's own test figures are the recommended run's, exactly.
    assert aft.evaluate_model(fixed, test, splits=report).to_dict() == best.test.to_dict()
    # Another row, in place: the same parameter objects.
    weight = model.fc.weight
    same, again = aft.compare_model(model, train, val, inplace=True, ship="tau-norm",
                                    **COMPARE_KW)  # fmt: skip
    assert same is model and model.fc.weight is weight
    assert model.fc.weight.detach().numpy().tobytes() == again.run("tau-norm").W.tobytes()
    with pytest.raises(af.ArgumentError) as info:
        aft.compare_model(model, train, val, ship="SVM", **COMPARE_KW)
    assert info.value.argument == "ship" and "tau-norm" in str(info.value)


def test_compare_model_puts_a_cl2n_transform_before_the_head():
    torch.manual_seed(9)
    model = TinyCNN()
    train, val, test = _loaders()
    kw = {**COMPARE_KW, "options": {"ncm": {"metric": "euclidean", "cl2n": True}}}
    fixed, report = aft.compare_model(model, train, val, test, ship="NCM", **kw)
    ncm = report.run("NCM")
    assert ncm.transform is not None
    assert isinstance(fixed.fc, nn.Sequential) and isinstance(fixed.fc[0], aft.CL2N)
    assert fixed.fc[1].weight.detach().numpy().tobytes() == ncm.W.tobytes()
    feats = aft.extract(model, test)
    fixed.eval()
    with torch.no_grad():
        logits = fixed(torch.cat([x for x, _ in test])).numpy()
    expected = ncm.transform(feats.features) @ ncm.W.T + ncm.b
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    assert aft.find_head(fixed) is fixed.fc[1]
