"""The examples in the docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib

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
