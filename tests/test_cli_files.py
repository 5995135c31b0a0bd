"""The command line never destroys a user's files: outputs against inputs, temp files, pipes."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from alphanet_fast import cli
from alphanet_fast.datasets import make_long_tail
from alphanet_fast.files._atomic import atomic_write, remove_stale_temps, temp_name
from alphanet_fast.files._paths import resolved, same_file

EPOCHS = "1"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small long-tailed problem as .npz files, a torch copy of the classifier, names."""
    d = make_long_tail("small", n_classes=30, dim=8, seed=1, n_val_per_class=3, n_test_per_class=4)
    root = tmp_path_factory.mktemp("inputs")
    for split in ("train", "val", "test"):
        np.savez(
            root / f"{split}.npz",
            features=getattr(d, f"{split}_features"),
            labels=getattr(d, f"{split}_labels"),
        )
    np.savez(root / "model.npz", weight=d.W, bias=d.b)
    torch.save({"fc.weight": torch.from_numpy(d.W)}, root / "model.pt")
    (root / "names.txt").write_text("\n".join(f"c{c}" for c in range(30)) + "\n")
    return root, d


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def assert_one_line_error(code, err, *needles):
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alphanet-fast: error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert ".tmp" not in lines[0]


# ---------------------------------------------------------------- outputs against inputs


def reproductions(root: Path, tmp: Path) -> list[tuple[list, tuple[str, ...]]]:
    """The issue's cases: each must fail before any work, naming both options."""
    train, model = root / "train.npz", root / "model.npz"
    common = ["correct", train, model, "--epochs", EPOCHS, "-q"]
    return [
        ([*common, "-o", train], ("-o/--output", "train")),
        ([*common, "-o", root / "sub" / ".." / "model.npz"], ("-o/--output", "classifier")),
        (
            [
                "correct",
                train,
                root / "model.pt",
                "--report",
                root / "model.pt",
                "-o",
                tmp / "x.pt",
                "-q",
            ],
            ("--report", "classifier"),
        ),  # fmt: skip
        ([*common, "-o", tmp / "o.npz", "--report", train], ("--report", "train")),
        (
            [
                *common,
                "-o",
                tmp / "o.npz",
                "--test",
                root / "test.npz",
                "--result",
                root / "test.npz",
            ],
            ("--result", "--test"),
        ),  # fmt: skip
        ([*common, "-o", tmp / "o.npz", "--result", model], ("--result", "classifier")),
        (
            ["evaluate", root / "test.npz", model, "--train", train, "--report", root / "test.npz"],
            ("--report", "data"),
        ),  # fmt: skip
        (["neighbors", train, "--report", train], ("--report", "train")),
        ([*common, "-o", tmp / "same.npz", "--report", tmp / "same.npz"], ("--report", "-o")),
    ]


def test_outputs_that_are_inputs_are_refused_before_any_work(files, tmp_path, capsys):
    root, _ = files
    before = digests(root)
    for argv, needles in reproductions(root, tmp_path):
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, *needles)
        assert not (root / "sub").exists()  # the check creates nothing
        assert not list(tmp_path.iterdir()), argv  # nothing written, not even a report
    assert digests(root) == before


def test_symlinks_and_hard_links_are_followed(files, tmp_path, capsys):
    root, _ = files
    (tmp_path / "link").symlink_to(root, target_is_directory=True)
    os.link(root / "train.npz", tmp_path / "hard.npz")
    train, model = root / "train.npz", root / "model.npz"
    for out, needle in (
        (tmp_path / "link" / "model.npz", "classifier"),
        (tmp_path / "link" / "absent" / ".." / "train.npz", "train"),
        (tmp_path / "hard.npz", "train"),
    ):
        code, _, err = run(capsys, "correct", train, model, "-o", out, "-q")
        assert_one_line_error(code, err, "-o/--output", needle)
    assert same_file(tmp_path / "hard.npz", train)
    assert resolved(tmp_path / "no" / "such" / ".." / "x") == resolved(tmp_path) / "no" / "x"


def test_unwritable_output_folder_is_found_before_training(files, tmp_path, capsys):
    root, _ = files
    (tmp_path / "plain").write_text("a file, not a folder")
    code, _, err = run(
        capsys, "correct", root / "train.npz", root / "model.npz", "-o", tmp_path / "o.npz",
        "--result", tmp_path / "plain" / "r.npz", "--epochs", EPOCHS, "-q",
    )  # fmt: skip
    assert_one_line_error(code, err, "--result", "not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]


def test_no_command_changes_an_input(files, tmp_path, capsys):
    """Successful and failing runs alike: every input's bytes stay as they were."""
    root, _ = files
    before = digests(root)
    train, model, val, test = (root / n for n in ("train.npz", "model.npz", "val.npz", "test.npz"))
    out = tmp_path / "out"
    runs = [
        ["correct", train, model, "--val", val, "--test", test, "-o", out / "m.npz",
         "--result", out / "r.npz", "--epochs", EPOCHS],
        ["correct", train, root / "model.pt", "-o", out / "m.pt", "--epochs", EPOCHS],
        ["evaluate", test, model, out / "m.npz", "--train", train, "--report", out / "e.json"],
        ["neighbors", train, "--class-names", root / "names.txt", "--report", out / "n.json"],
        ["explain", train, model, "--test", test, "--result", out / "r.npz"],
        ["correct", train, model, "-o", model],
        ["correct", train, model, "--epochs", "0", "-o", out / "z.npz"],
        ["evaluate", test, model, "--train", train, "--report", test],
        ["neighbors", train, "--class-names", root / "names.txt", "--report", root / "names.txt"],
    ]  # fmt: skip
    codes = [run(capsys, *argv, "-q")[0] for argv in runs]
    assert codes == [0] * 5 + [1] * 4
    assert digests(root) == before


# ---------------------------------------------------------------- temporary files


WRITER = textwrap.dedent(
    """
    import sys, time
    from alphanet_fast.files._atomic import atomic_write
    with atomic_write(sys.argv[1]) as tmp:
        tmp.write_bytes(b"x" * (1 << 20))
        print("writing", flush=True)
        sys.stdin.read()  # until the test closes it, or a signal arrives
    """
)


def test_sigterm_mid_write_removes_the_temp_file(tmp_path):
    target = tmp_path / "out.npz"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "writing"
        assert len(list(tmp_path.glob(".out.npz.*.tmp"))) == 1  # the write is under way
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "Terminated" in err
    assert list(tmp_path.iterdir()) == []


CLI_WRITER = textwrap.dedent(
    """
    import os, sys
    from alphanet_fast.cli import main

    def replace_after_stdin(src, dst):  # the hook: block just before the rename
        print("writing", flush=True)
        sys.stdin.read()

    os.replace = replace_after_stdin
    sys.exit(main(sys.argv[1:]))
    """
)


def test_sigterm_during_a_command_exits_143_without_temp_files(files, tmp_path):
    root, _ = files
    argv = ["neighbors", str(root / "train.npz"), "--report", str(tmp_path / "n.json")]
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI_WRITER, *argv],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # The neighbours' lines come first; stop at the hook's line (or at the end of output).
        assert "writing" in (line.strip() for line in iter(proc.stdout.readline, ""))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == ["alphanet-fast: terminated"]
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_killed_runs_are_removed_by_the_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = temp_name(tmp_path / "out.npz", pid=int(dead.stdout))
    live = temp_name(tmp_path / "out.npz")  # a run writing now
    stale.write_bytes(b"half")
    live.write_bytes(b"half")
    with atomic_write(tmp_path / "out.npz") as tmp:
        tmp.write_bytes(b"whole")
    assert (tmp_path / "out.npz").read_bytes() == b"whole"
    assert not stale.exists() and live.exists()
    live.unlink()
    assert remove_stale_temps(tmp_path / "out.npz") == []


# ---------------------------------------------------------------- user errors in one line


def test_huge_network_is_one_line_not_a_traceback(files, tmp_path):
    root, _ = files
    code = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
        from alphanet_fast.cli import main
        sys.exit(main(["correct", {str(root / "train.npz")!r}, {str(root / "model.npz")!r},
                       "-o", {str(tmp_path / "o.npz")!r}, "--hidden", "100000", "100000",
                       "--epochs", "1", "--device", "cpu", "-q"]))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alphanet-fast: error: "), proc.stderr
    # Refused up front, naming the flag, or (past that check) torch's allocation failure.
    assert "--hidden" in lines[0] or "memory" in lines[0], lines[0]


def test_neighbors_with_a_stray_huge_label_does_not_allocate(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), 30)
    y[7] = 10**15
    np.savez(tmp_path / "t.npz", features=rng.normal(size=(y.size, 4)), labels=y)
    code, _, err = run(capsys, "neighbors", tmp_path / "t.npz")
    assert_one_line_error(code, err, "label 7 is 1000000000000000", "--n-classes")
    code, _, err = run(capsys, "neighbors", tmp_path / "t.npz", "--n-classes", "6")
    assert_one_line_error(code, err, "label 7 is 1000000000000000, but there are 6 classes")


def test_neighbors_into_a_closed_pipe_stops_quietly(files):
    root, _ = files
    script = shutil.which("alphanet-fast", path=os.path.dirname(sys.executable))
    assert script, "the alphanet-fast console script is not installed (pip install -e .)"
    proc = subprocess.Popen(
        [script, "neighbors", str(root / "train.npz"), "-k", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    proc.stdout.close()  # as `| head` does once it has what it wants
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert err == b""


def test_transposed_classifier_is_named_with_a_hint(files, tmp_path, capsys):
    root, d = files
    np.savez(tmp_path / "t.npz", weight=d.W.T.copy())
    code, _, err = run(capsys, "correct", root / "train.npz", tmp_path / "t.npz", "-q")
    assert_one_line_error(code, err, "t.npz", "W has shape (8, 30): did you pass its transpose?")


def test_bundled_npz_with_split_keys(files, tmp_path, capsys):
    root, d = files
    bundle = {}
    for split in ("train", "val", "test"):
        bundle[f"{split}_x"] = getattr(d, f"{split}_features")
        bundle[f"y_{split}"] = getattr(d, f"{split}_labels")
    np.savez(tmp_path / "all.npz", **bundle)
    code, _, err = run(
        capsys, "correct", tmp_path / "all.npz", root / "model.npz", "--val", tmp_path / "all.npz",
        "--test", tmp_path / "all.npz", "-o", tmp_path / "c.npz", "--epochs", EPOCHS,
        "--report", tmp_path / "r.json", "-q",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = run(
        capsys, "evaluate", tmp_path / "all.npz", root / "model.npz", tmp_path / "c.npz",
        "--train", tmp_path / "all.npz", "--split", "val",
    )  # fmt: skip
    assert code == 0, err
    assert f"({d.val_labels.size} samples)" in out
    np.savez(tmp_path / "odd.npz", emb=d.train_features, cls=d.train_labels)
    code, _, err = run(capsys, "neighbors", tmp_path / "odd.npz")
    assert_one_line_error(code, err, "features, feats, feature, X, x, embeddings, data, inputs")
    assert "x_train" in err and "train_embeddings" in err
    code, out, err = run(
        capsys, "neighbors", tmp_path / "odd.npz", "--features-key", "emb", "--labels-key", "cls"
    )
    assert code == 0, err


def test_every_option_is_described_and_epochs_zero_is_named(files, capsys):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            assert action.help, (name, action.option_strings or action.dest)
    assert cli.main(["demo", "--help"]) == 0
    assert "--rho X" in capsys.readouterr().out
    root, _ = files
    code, _, err = run(capsys, "correct", root / "train.npz", root / "model.npz", "--epochs", "0")
    assert_one_line_error(code, err, "--epochs: expected an integer")


def test_neighbors_prints_one_precision(files, capsys):
    root, _ = files
    code, out, err = run(capsys, "neighbors", root / "train.npz", "-k", "3")
    assert code == 0, err
    tails = [ln.split(": ", 1)[1] for ln in out.splitlines()[1:]]
    numbers = [n for tail in tails for n in re.findall(r"\] ([^,\s]+)", tail)]
    assert numbers and all(re.fullmatch(r"\d+\.\d{4}", n) for n in numbers), numbers
