"""benches/device_check.py at its quick shape on the CPU, so that the GPU script cannot rot."""

import importlib.util
import json
import math
import pathlib
import sys

import pytest
import torch

BENCHES = pathlib.Path(__file__).resolve().parent.parent / "benches"


@pytest.fixture(scope="module")
def device_check():
    spec = importlib.util.spec_from_file_location("device_check", BENCHES / "device_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["device_check"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["device_check"]


def test_cpu_against_cpu_agrees_bitwise(device_check, tmp_path):
    out = tmp_path / "result.json"
    result = device_check.main(["--quick", "--device", "cpu", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    entry = result["shapes"]["small"]
    assert set(entry["runs"]) == {"cpu", "cpu_seed1", "cpu_highest", "cpu_high"}
    for run in entry["runs"].values():
        assert run["epochs"] == 3 and run["timings_s"]["total"] > 0
        assert {"means", "neighbors", "epochs", "validation"} <= set(run["timings_s"])
    highest = entry["agreement"]["cpu_highest"]
    assert highest["ok"] and highest["alphas_max_abs_diff"] == 0.0
    assert highest["alphas_seed_spread"] > 0  # a different seed trains different alphas
    kernels = entry["kernels"]
    assert kernels["class_means"]["max_abs_diff"] < 1e-4
    assert kernels["nearest_neighbors"]["rows_with_same_neighbours"] == 1.0
    assert kernels["topk_scores"]["rows_with_same_top1"] == 1.0
    cpu = result["environment"]["cpu"]
    assert cpu["simd_path"] in {"avx512", "avx2", "scalar"} and cpu["model"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA fallback")
def test_without_cuda_the_device_sections_say_skipped(device_check, tmp_path):
    result = device_check.main(["--quick", "--out", str(tmp_path / "r.json")])
    entry = result["shapes"]["small"]
    assert entry["agreement"].startswith("skipped")
    assert set(entry["runs"]) == {"cpu", "cpu_seed1", "device"}
    assert entry["kernels"]["peer_device"] == "cpu"
    assert not math.isnan(entry["runs"]["cpu"]["accuracy_points"]["overall"])


def test_unknown_shape_is_refused(device_check, capsys):
    with pytest.raises(SystemExit):
        device_check.main(["--shapes", "small,cifar"])
    assert "cifar" in capsys.readouterr().err


def test_nothing_starts_after_the_time_budget(device_check, tmp_path):
    result = device_check.main(["--quick", "--budget-s", "0", "--out", str(tmp_path / "r.json")])
    assert result["shapes"] == {"small": "skipped: over --budget-s"}
