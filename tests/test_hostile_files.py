"""Hostile files and odd devices: temporary files no one can hijack, inputs never
cleaned up, strict result files, FIFOs and devices refused without blocking."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import torch
from alphanet_fast import AlphaNetResult, ArgumentError, Splits, load_result
from alphanet_fast import torch as aft
from alphanet_fast.cli import main
from alphanet_fast.files import _npy_stream
from alphanet_fast.files._atomic import (
    atomic_write,
    create_exclusive,
    open_temp,
    remove_stale_temps,
    temp_name,
)
from alphanet_fast.files._npy_stream import NpyWriter
from alphanet_fast.files.classifiers import load_classifier
from alphanet_fast.files.data_files import (
    load_class_names,
    load_data,
    load_labels,
    load_lines,
    load_neighbors,
)
from alphanet_fast.files.formats import InputError
from torch.utils.data import DataLoader, TensorDataset


def dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(done.stdout)


# ---------------------------------------------------------------- temporary files


def test_cleanup_never_removes_a_file_read_as_an_input(tmp_path):
    # A leftover of a dead run, named exactly as this package names them, then used as input.
    names = temp_name(tmp_path / "out.npz", pid=dead_pid())
    names.write_text("a\nb\n")
    assert load_class_names(names) == ["a", "b"]
    with atomic_write(tmp_path / "out.npz") as tmp:
        tmp.write_bytes(b"whole")
    assert names.read_text() == "a\nb\n"


def test_cleanup_ignores_names_this_package_did_not_make(tmp_path):
    pid = dead_pid()
    lookalike = tmp_path / f".out.npz.{pid}.0123abcd.tmp"  # the pattern, without the tag
    forged = tmp_path / f".out.npz.{pid}.0123abcd89abcdef.tmp"  # a wrong tag
    real = temp_name(tmp_path / "out.npz", pid=pid)
    for p in (lookalike, forged, real):
        p.write_bytes(b"x")
    assert remove_stale_temps(tmp_path / "out.npz") == [real]
    assert lookalike.exists() and forged.exists() and not real.exists()


def test_cleanup_never_follows_or_removes_a_link(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep")
    link = temp_name(tmp_path / "out.npz", pid=dead_pid())
    link.symlink_to(victim)
    assert remove_stale_temps(tmp_path / "out.npz") == []
    assert link.is_symlink() and victim.read_text() == "keep"


def test_cli_input_named_like_a_leftover_survives_the_output_write(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), [40, 40, 40, 3])
    np.savez(tmp_path / "t.npz", features=rng.normal(size=(123, 3)), labels=labels)
    names = temp_name(tmp_path / "n.json", pid=dead_pid())
    names.write_text("a\nb\nc\nd\n")
    argv = ["neighbors", tmp_path / "t.npz", "-k", "1", "--class-names", names]
    assert main([*map(str, argv), "--report", str(tmp_path / "n.json")]) == 0
    capsys.readouterr()
    assert names.read_text() == "a\nb\nc\nd\n" and (tmp_path / "n.json").exists()


def test_temporary_files_are_created_exclusively_and_never_through_a_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    planted = tmp_path / ".x.tmp"
    planted.symlink_to(victim)
    with pytest.raises(FileExistsError):
        create_exclusive(planted)
    with pytest.raises(OSError):
        open_temp(planted)  # O_NOFOLLOW
    assert victim.read_text() == "keep"


def test_npy_writer_never_writes_through_a_planted_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    writer = NpyWriter(tmp_path / "feats.npy", np.dtype(np.float32))
    writer.tmp.symlink_to(victim)  # an attacker who guessed the name
    with pytest.raises(FileExistsError):
        writer.write(np.zeros((2, 3)))
    assert victim.read_text() == "keep" and not (tmp_path / "feats.npy").exists()
    assert writer.tmp.is_symlink()  # not ours: left alone by discard
    writer.discard()
    assert writer.tmp.is_symlink()


def two_class_model_and_loader():
    model = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(3, 2))
    data = TensorDataset(torch.randn(10, 3), torch.tensor([0, 1] * 5))
    return model, DataLoader(data, batch_size=4)


def test_failed_extract_leaves_nothing_behind(tmp_path):
    model, loader = two_class_model_and_loader()
    (tmp_path / "feats.npy").mkdir()  # the features cannot be written there
    with pytest.raises((ValueError, OSError)):
        aft.extract(model, loader, out=tmp_path / "feats.npy", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.npy"]


def test_a_rename_failing_halfway_removes_the_file_already_renamed(tmp_path, monkeypatch):
    model, loader = two_class_model_and_loader()
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(".labels.npy"):
            raise OSError(28, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(_npy_stream.os, "replace", replace)
    with pytest.raises(OSError, match="No space"):
        aft.extract(model, loader, out=tmp_path / "feats.npy", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_extract_output_is_a_regular_file_not_a_link(tmp_path):
    model, loader = two_class_model_and_loader()
    got = aft.extract(model, loader, out=tmp_path / "feats.npy", progress=False)
    assert got.features.shape == (10, 3)
    for name in ("feats.npy", "feats.labels.npy"):
        assert (tmp_path / name).is_file() and not (tmp_path / name).is_symlink()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


# ---------------------------------------------------------------- devices and FIFOs


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.npz"
    os.mkfifo(path)
    return path


READERS = [
    ("data", lambda p: load_data(p)),
    ("classifier", lambda p: load_classifier(p)),
    ("class names", lambda p: load_class_names(p)),
    ("lines", lambda p: load_lines(p)),
    ("labels", lambda p: load_labels(p)),
    ("neighbors", lambda p: load_neighbors(p)),
]


@pytest.mark.parametrize(("what", "read"), READERS)
def test_a_fifo_without_writer_is_refused_without_blocking(fifo, what, read):
    for name in ("pipe.npz", "pipe.txt", "pipe.npy"):
        path = fifo.with_name(name)
        if not path.exists():
            os.mkfifo(path)
        with pytest.raises(InputError, match="FIFO"):
            read(path)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize(("what", "read"), READERS)
def test_dev_zero_is_refused_before_it_is_read(what, read):
    with pytest.raises(InputError, match="character device"):
        read("/dev/zero")


def test_a_result_that_is_a_fifo_says_so(fifo, tmp_path, capsys):
    with pytest.raises(ArgumentError, match="FIFO") as info:
        load_result(fifo)
    assert info.value.argument == "path" and "no such file" not in str(info.value)
    np.savez(tmp_path / "t.npz", features=np.zeros((4, 2)), labels=[0, 1, 0, 1])
    np.savez(tmp_path / "m.npz", weight=np.ones((2, 2)))
    code = main(
        ["evaluate", str(tmp_path / "t.npz"), str(tmp_path / "m.npz"), "--result", str(fifo)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "FIFO" in err[0], err


def test_a_path_to_a_device_given_to_a_kernel_is_named():
    import alphanet_fast as af

    with pytest.raises(ValueError, match="character device") as info:
        af.class_means("/dev/zero", np.zeros(3, dtype=np.int64))
    assert info.value.argument == "features"


# ---------------------------------------------------------------- strict result files


def small_result() -> AlphaNetResult:
    return AlphaNetResult(
        W=np.random.default_rng(0).normal(size=(5, 3)),
        b=np.zeros(5),
        alphas=np.array([[1.0, 0.2, -0.1], [1.0, 0.05, 0.3]]),
        few_classes=np.array([0, 1]),
        neighbors=np.array([[2, 3], [4, 2]]),
        neighbor_distances=np.array([[0.5, 0.7], [0.2, 0.9]]),
        splits=Splits(few=[0, 1], medium=[2, 3], many=[4], n_classes=5),
        counts=np.array([3, 4, 50, 60, 200]),
        history=[{"epoch": 1, "loss": 0.9, "lr": 1e-3}],
        best_epoch=1,
        config={"metric": "euclidean"},
    )


def rewrite(tmp_path, change_meta=None, **arrays):
    small_result().save(tmp_path / "r.npz")
    with np.load(tmp_path / "r.npz") as z:
        entries = {k: z[k] for k in z.files}
    if change_meta is not None:
        meta = json.loads(str(entries["meta"][()]))
        text = change_meta(meta)
        entries["meta"] = np.array(text if isinstance(text, str) else json.dumps(meta))
    entries.update(arrays)
    np.savez(tmp_path / "bad.npz", **entries)
    return tmp_path / "bad.npz"


def refused(path, *needles):
    with pytest.raises(ArgumentError) as info:
        load_result(path)
    message = str(info.value)
    assert info.value.argument == "path" and "\n" not in message
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize("n_classes", [2**31, 10**12])
def test_huge_class_counts_in_metadata_are_refused_before_allocating(tmp_path, n_classes):
    path = rewrite(tmp_path, lambda m: m["splits"].__setitem__("n_classes", n_classes))
    # In a process that cannot allocate even 2 GiB more, the refusal still comes first.
    code = textwrap.dedent(
        """
        import resource, sys
        import alphanet_fast as af
        from alphanet_fast._memory import _status_bytes
        limit = _status_bytes("VmSize") + (2 << 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
        try:
            af.load_result(sys.argv[1])
        except af.ArgumentError as exc:
            print(exc.argument, exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("path ") and "n_classes" in done.stdout, done.stdout


def test_an_entry_whose_header_claims_more_than_it_holds_is_refused(tmp_path):
    path = rewrite(tmp_path)
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    header = np.lib.format.header_data_from_array_1_0(np.zeros(3))
    header["shape"] = (10**12,)
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    members["counts.npy"] = buf.getvalue() + b"\0" * 24
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    refused(path, "counts", "claims shape (1000000000000,)")


def test_metadata_nested_200000_deep_is_one_clean_error(tmp_path, capsys):
    deep = "[" * 200_000 + "]" * 200_000
    path = rewrite(tmp_path, lambda m: json.dumps(m)[:-1] + ', "x": ' + deep + "}")
    refused(path, "meta", "nested more than")
    shallow_but_deep = rewrite(
        tmp_path, lambda m: m["config"].__setitem__("x", json.loads("[" * 500 + "]" * 500))
    )
    refused(shallow_but_deep, "meta", "nested more than")
    np.savez(tmp_path / "t.npz", features=np.zeros((5, 3)), labels=np.arange(5))
    np.savez(tmp_path / "m.npz", weight=np.ones((5, 3)))
    code = main(
        ["evaluate", str(tmp_path / "t.npz"), str(tmp_path / "m.npz"), "--result", str(path)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "nested more than" in err[0], err


def test_class_ids_written_as_floats_are_refused(tmp_path):
    path = rewrite(tmp_path, lambda m: m["splits"].__setitem__("medium", [2, 3.4]))
    refused(path, "meta.splits.medium[1]", "3.4")
    path = rewrite(tmp_path, lambda m: m["splits"].__setitem__("few", [0, True]))
    refused(path, "meta.splits.few[1]")


def test_an_empty_weight_matrix_is_refused(tmp_path):
    refused(rewrite(tmp_path, W=np.zeros((5, 0))), "W", "non-empty")


def test_a_neighbour_repeated_within_a_row_is_refused(tmp_path):
    refused(rewrite(tmp_path, neighbors=np.array([[2, 2], [4, 2]])), "neighbors", "row 0")


def test_a_valid_result_still_loads_and_a_non_path_is_a_type_error(tmp_path):
    small_result().save(tmp_path / "r.npz")
    back = load_result(tmp_path / "r.npz")
    np.testing.assert_array_equal(back.neighbors, small_result().neighbors)
    with pytest.raises(TypeError, match="path"):
        load_result(3.5)


def forged_npy(shape, dtype=np.float64) -> bytes:
    """A ``.npy`` whose header claims ``shape`` but which holds three values."""
    import io

    header = np.lib.format.header_data_from_array_1_0(np.zeros(3, dtype=dtype))
    header["shape"] = shape
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + np.zeros(3, dtype=dtype).tobytes()


def test_data_files_whose_headers_lie_are_refused_before_allocating(tmp_path):
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as zf:
        zf.writestr("features.npy", forged_npy((10**6, 10**6)))
        zf.writestr("labels.npy", forged_npy((3,), np.int64))
    with pytest.raises(InputError, match="entry 'features': its header claims shape"):
        load_data(tmp_path / "d.npz")
    (tmp_path / "y.npy").write_bytes(forged_npy((10**12,), np.int64))
    with pytest.raises(InputError, match="y.npy"):
        load_labels(tmp_path / "y.npy")
    (tmp_path / "nb.npy").write_bytes(forged_npy((10**6, 10**6), np.int64))
    with pytest.raises(InputError, match="nb.npy"):
        load_neighbors(tmp_path / "nb.npy")
