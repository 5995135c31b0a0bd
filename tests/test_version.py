"""The version is written once, in Cargo.toml, and every other place reads it."""

from __future__ import annotations

import re
from pathlib import Path

import alphanet_fast as af
from alphanet_fast import _core

ROOT = Path(__file__).resolve().parents[1]


def _cargo_version() -> str:
    """``version`` of Cargo.toml's ``[package]`` table (read as text: tomllib is 3.11+)."""
    text = (ROOT / "Cargo.toml").read_text()
    package = re.search(r"^\[package\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert package is not None, "Cargo.toml has no [package] table"
    version = re.search(r'^version\s*=\s*"([^"]+)"', package.group(1), re.M)
    assert version is not None, "Cargo.toml's [package] has no version"
    return version.group(1)


def test_the_package_the_extension_and_cargo_agree():
    cargo = _cargo_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", cargo), cargo
    assert _core.__version__ == cargo
    assert af.__version__ == cargo


def test_pyproject_takes_the_version_from_cargo():
    text = (ROOT / "pyproject.toml").read_text()
    project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert project is not None
    assert re.search(r'^dynamic\s*=\s*\[[^\]]*"version"', project.group(1), re.M)
    assert not re.search(r"^version\s*=", project.group(1), re.M), "a second version"
