"""Format, lint, stub and Rust unit-test checks.

Not part of the package's tests (they need cargo with rustfmt and clippy, and
linters whose verdicts change between versions): ``python -m pytest -m tooling``
runs them, and CI (``.ci/run``) runs them after the package's tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PY_PATHS = ["python", "tests", "benches", "examples", "docs/figures.py"]

pytestmark = pytest.mark.tooling


def run(*cmd: str) -> None:
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, (
        f"{' '.join(cmd)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    )


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed; install the lint extra and a Rust toolchain")


def test_ruff_lint():
    need("ruff")
    run("ruff", "check", *PY_PATHS)


def test_ruff_format():
    need("ruff")
    run("ruff", "format", "--check", *PY_PATHS)


def test_rustfmt():
    need("cargo")
    run("cargo", "fmt", "--check")


def test_clippy():
    need("cargo")
    run(
        "cargo",
        "clippy",
        "--release",
        "--all-targets",
        "--features",
        "python",
        "--",
        "-D",
        "warnings",
    )


def test_cargo_unit_tests():
    need("cargo")
    run("cargo", "test", "--release", "--quiet")


def test_stub_matches_extension():
    run(sys.executable, "-m", "mypy.stubtest", "alphanet_fast._core")
