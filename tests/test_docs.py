"""The examples in the docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

MODULES = [
    "alphanet_fast._optim",
    "alphanet_fast.cli",
    "alphanet_fast.cli.report",
    "alphanet_fast.files.data_files",
    "alphanet_fast.files._atomic",
    "alphanet_fast.dask",
    "alphanet_fast.datasets",
    "alphanet_fast.evaluation",
    "alphanet_fast.kernels",
    "alphanet_fast.model",
    "alphanet_fast.neighbors",
    "alphanet_fast.result",
    "alphanet_fast.settings",
    "alphanet_fast.splits",
    "alphanet_fast.training",
    "alphanet_fast.training.correct",
    "alphanet_fast.training.sampling",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False, report=True)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0


ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_opens_with_the_two_setup_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first.splitlines()]
    assert commands == [
        "pip install . && alphanet-fast demo",
        'pip install ".[test]" && python -m pytest',
    ]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    installs = [line for line in ci if line.startswith("python3 -m pip install")]
    extras = re.findall(r'"\.\[([a-z,]+)\]"', installs[0]) if installs else []
    assert extras and "test" in extras[0].split(",")
    assert ci.index("python3 -m pytest") > ci.index(installs[0])


def test_the_readme_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250
