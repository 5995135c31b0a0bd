"""The examples in the docstrings run and print what they show."""

from __future__ import annotations

import argparse
import doctest
import importlib
import re
import shlex
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


def code_blocks(lang: str) -> list[str]:
    """The ``lang`` code blocks of the README and docs/*.md."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    fence = re.compile(rf"^```{lang}\n(.*?)^```", re.DOTALL | re.MULTILINE)
    return [b for p in pages for b in fence.findall(p.read_text(encoding="utf-8"))]


def documented_commands() -> list[list[str]]:
    """Every ``alphanet-fast ...`` line of the bash blocks, as words, comments dropped."""
    commands = []
    for block in code_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("#")[0].split("&&"):
                words = shlex.split(part)
                if words[:1] == ["alphanet-fast"]:
                    commands.append(words[1:])
    return commands


def test_every_documented_command_and_option_exists():
    from alphanet_fast.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands = documented_commands()
    assert len(commands) >= 10
    unknown = []
    for words in commands:
        parser = sub.choices.get(words[0])
        if parser is None:
            unknown.append(words[0])
            continue
        options = [w.split("=")[0] for w in words[1:] if re.match(r"--?[a-z]", w)]
        unknown += [f"{words[0]} {o}" for o in options if o not in parser._option_string_actions]
    assert unknown == [], unknown


def test_every_documented_python_name_exists():
    import alphanet_fast
    import alphanet_fast.torch

    modules = {"af": alphanet_fast, "aft": alphanet_fast.torch}
    missing = []
    for text in code_blocks("python"):
        for alias, name in set(re.findall(r"\b(aft?)\.([A-Za-z_]\w*)", text)):
            if not hasattr(modules[alias], name):
                missing.append(f"{alias}.{name}")
    assert sorted(missing) == [], missing


def test_the_documented_fields_of_results_exist():
    from alphanet_fast import AlphaNetResult
    from alphanet_fast.comparison import ComparisonReport, ComparisonRun

    report = ("best", "run", "splits", "table", "plot", "recommended")
    run = ("name", "method", "base", "rho", "settings", "W", "b", "transform", "val", "test")
    fields = set(ComparisonRun.__dataclass_fields__)
    has = set(ComparisonReport.__dataclass_fields__) | set(dir(ComparisonReport))
    missing = [f for f in report if f not in has]
    missing += [f for f in run if f not in fields]
    result = set(AlphaNetResult.__dataclass_fields__) | set(dir(AlphaNetResult))
    missing += [f for f in ("val_baselines", "beaten_by", "save", "splits") if f not in result]
    assert missing == [], missing
