"""No silent inf or wrong dtype, one-line errors that name the argument, and memory
checks that count the process's own limits."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import dask.array as da
import numpy as np
import pytest
import torch
from alphanet_fast import ArgumentError, baselines, class_means, correct
from alphanet_fast import dask as afd
from alphanet_fast import torch as aft
from alphanet_fast._memory import _cgroup_limit, _physical
from alphanet_fast._torch_loop import labels_of
from alphanet_fast.cli import main
from alphanet_fast.datasets import make_long_tail
from alphanet_fast.files.classifiers import load_classifier, save_classifier
from torch.utils.data import DataLoader, TensorDataset


@pytest.fixture(scope="module")
def data():
    return make_long_tail("small", n_classes=30, dim=8, seed=0)


# ---------------------------------------------------------------- non-finite results


@pytest.mark.parametrize(
    ("method", "tau"),
    [("tau_norm", 1e308), ("tau_norm", 1e3), ("tau_norm", -1e5), ("logit_adjust", 1e308)],
)
def test_a_tau_that_overflows_is_named_not_returned_as_inf(data, method, tau):
    fit = getattr(baselines, method)
    W = data.W * 10  # norms above 1, so a large positive tau underflows and a negative overflows
    with pytest.raises(ArgumentError) as info:
        fit(data.train_features, data.train_labels, W, data.b, tau=tau)
    assert info.value.argument == "tau" and "range" in str(info.value)


def test_a_searched_tau_that_overflows_is_never_chosen(data):
    val = (data.val_features, data.val_labels)
    res = baselines.logit_adjust(
        data.train_features, data.train_labels, data.W, data.b, taus=[1.0, 1e308], val=val
    )
    assert res.settings["tau"] == 1.0 and np.isfinite(res.b).all()
    with pytest.raises(ArgumentError) as info:
        baselines.tau_norm(data.train_features, data.train_labels, data.W, taus=[1e308], val=val)
    assert info.value.argument == "taus"


def test_correct_returns_W_in_its_own_float16(data):
    W16 = data.W.astype(np.float16)
    res = correct(data.train_features, data.train_labels, W16, data.b, epochs=1, progress=False)
    assert res.W.dtype == np.float16
    base = res.splits.base
    np.testing.assert_array_equal(res.W[base], W16[base])
    assert not np.array_equal(res.W[res.few_classes], W16[res.few_classes])


def test_correct_model_leaves_frequent_rows_of_a_float64_head_bitwise(data):
    head = torch.nn.Linear(8, 30).double()
    with torch.no_grad():  # values with bits below float32's precision
        head.weight.copy_(torch.from_numpy(data.W.astype(np.float64) + 1e-12))
    model = torch.nn.Sequential(torch.nn.Identity(), head)
    before = head.weight.detach().clone()
    x, y = torch.from_numpy(data.train_features).double(), torch.from_numpy(data.train_labels)
    loader = DataLoader(TensorDataset(x, y), batch_size=512)
    out = aft.correct_model(model, loader, epochs=1, progress=False, device="cpu")
    base = torch.from_numpy(out.result.splits.base)
    assert out.result.W.dtype == np.float64
    assert torch.equal(out.model[1].weight[base], before[base])


def test_weights_beyond_the_target_dtype_are_refused(data, tmp_path):
    W = data.W.astype(np.float64)
    W[3] *= 1e300
    head = torch.nn.Linear(8, 30)
    with pytest.raises(ArgumentError) as info:
        aft.apply_to(head, type("R", (), {"W": W, "b": data.b})())
    assert info.value.argument == "result.W" and info.value.row == 3
    np.savez(tmp_path / "m.npz", weight=data.W.astype(np.float32))
    with pytest.raises(ArgumentError) as info:
        save_classifier(load_classifier(tmp_path / "m.npz"), W, tmp_path / "out.npz")
    assert info.value.argument == "W" and not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("bad", [1e30, -1e30, np.inf, 2.0**63])
def test_float_labels_beyond_int64_from_a_loader_are_refused(bad):
    with pytest.raises(ArgumentError) as info:
        labels_of(torch.tensor([0.0, bad], dtype=torch.float64), 0)
    assert info.value.argument == "labels" and info.value.row == 1


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.float16, np.float32, np.float64])
def test_dask_class_means_match_the_kernel_for_every_dtype(dtype):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, size=(37, 3)).astype(dtype)
    y = rng.integers(0, 4, size=37)
    want = class_means(x, y)[0]
    got = afd.class_means(da.from_array(x, chunks=(8, 3)), y)[0]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(want, np.round(want))  # the means are not integers


# ---------------------------------------------------------------- arguments named


def test_a_seed_beyond_torchs_range_is_named(data):
    for fit in (baselines.crt, baselines.lws):
        with pytest.raises(ArgumentError) as info:
            fit(data.train_features, data.train_labels, data.W, data.b, seed=2**64, epochs=1)
        assert info.value.argument == "seed"


def test_dask_nan_labels_are_named():
    x = da.from_array(np.ones((6, 2)), chunks=(3, 2))
    y = np.array([0.0, 1.0, np.nan, 0.0, 1.0, 0.0])
    for labels in (y, da.from_array(y, chunks=3)):
        with pytest.raises(ArgumentError) as info:
            afd.class_means(x, labels)
        assert info.value.argument == "labels" and "NaN" in str(info.value)


# ---------------------------------------------------------------- one line means one line


def one_line(capsys, argv, *needles):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("alphanet-fast: error: "), lines
    for needle in needles:
        assert needle in lines[0]


def test_an_empty_labels_file_is_one_line(tmp_path, capsys):
    np.save(tmp_path / "f.npy", np.ones((4, 2)))
    (tmp_path / "y.txt").write_text("\n \n")
    one_line(
        capsys, ["neighbors", tmp_path / "f.npy", "--train-labels", tmp_path / "y.txt"], "empty"
    )


def test_a_torch_file_of_another_pickle_protocol_is_one_line(tmp_path, capsys, data):
    np.savez(tmp_path / "t.npz", features=data.train_features, labels=data.train_labels)
    torch.save({"fc.weight": torch.zeros(30, 8)}, tmp_path / "m.pt", pickle_protocol=5)
    one_line(
        capsys, ["evaluate", tmp_path / "t.npz", tmp_path / "m.pt", "--train", tmp_path / "t.npz"]
    )


def test_a_closed_stdout_gives_no_traceback(tmp_path, data):
    np.savez(tmp_path / "t.npz", features=data.train_features, labels=data.train_labels)
    report = tmp_path / "n.json"
    argv = [sys.executable, "-m", "alphanet_fast", "neighbors", str(tmp_path / "t.npz")]
    done = subprocess.run(
        ["bash", "-c", '"$@" >&-', "_", *argv, "--report", str(report)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert report.read_text().startswith("{")


# ---------------------------------------------------------------- memory limits


LIMITED = textwrap.dedent(
    """
    import resource, sys
    import alphanet_fast as af
    from alphanet_fast._memory import _status_bytes, memory_limit
    d = af.datasets.make_long_tail("small", n_classes=30, dim=8, seed=0)
    limit = _status_bytes("VmSize") + (1 << 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    print(memory_limit()[0] <= 1 << 30)
    try:
        af.correct(d.train_features, d.train_labels, d.W, d.b, rho=float(sys.argv[1]),
                   progress=False, device="cpu")
    except ValueError as exc:
        print(getattr(exc, "argument", None), exc)
    """
)


def test_the_memory_check_counts_the_address_space_limit(data):
    few_rows = int(
        np.isin(data.train_labels, np.flatnonzero(np.bincount(data.train_labels) < 20)).sum()
    )
    # Draws of about 4 GiB: within this machine's memory, beyond a 1 GiB address-space margin.
    rho = (4 << 30) / (8 * few_rows * 31)
    if 4 << 30 > _physical():
        pytest.skip("the draws must fit this machine's memory for the test to mean anything")
    done = subprocess.run(
        [sys.executable, "-c", LIMITED, repr(rho)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()[:2]
    assert first == "True"
    assert second.startswith("rho ") and "RLIMIT_AS" in second, second


def test_the_cgroup_limit_is_read_from_v2_and_v1_files(tmp_path):
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory.max").write_text("123456\n")
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("654321\n")
    with open("/proc/self/cgroup") as f:
        lines = f.read().splitlines()
    v2 = any(line.startswith("0::") for line in lines)
    v1 = any("memory" in line.split(":")[1].split(",") for line in lines if line.count(":") >= 2)
    if not (v1 or v2):
        pytest.skip("this process is in no memory cgroup")
    assert _cgroup_limit(str(tmp_path)) == (123456 if v2 else 654321)
    (tmp_path / "memory.max").write_text("max\n")
    assert _cgroup_limit(str(tmp_path)) == (654321 if v1 else None)


@pytest.mark.parametrize("method", ["lws", "crt"])
def test_trained_baselines_refuse_float64_weights_beyond_float32(method):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = np.repeat(np.arange(3), 20)
    W = rng.normal(size=(3, 4))
    W[1, 2] = 1e300
    with pytest.raises(ArgumentError) as info:
        getattr(baselines, method)(x, y, W, np.zeros(3), epochs=1)
    assert info.value.argument == "W" and info.value.row == 1
