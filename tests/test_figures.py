"""The accuracy figures the documentation quotes are what the code gives now (docs/figures.py)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_figures():
    spec = importlib.util.spec_from_file_location("docs_figures", ROOT / "docs" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


figures = load_figures()
LIGHT = [n for n, b in figures.BLOCKS.items() if not b.heavy]
HEAVY = [n for n, b in figures.BLOCKS.items() if b.heavy]


@pytest.mark.parametrize("name", LIGHT)
def test_light_figures_are_current(name):
    assert figures.stale([name]) == []


@pytest.mark.figures
@pytest.mark.parametrize("name", HEAVY)
def test_heavy_figures_are_current(name):
    assert figures.stale([name]) == []


def test_every_block_is_quoted_once_and_every_marker_has_a_block():
    where = figures.occurrences()
    assert sorted(where) == sorted(figures.BLOCKS)
    assert {name: len(paths) for name, paths in where.items() if len(paths) != 1} == {}


def test_no_percentage_in_the_readme_outside_a_figure_block():
    text = figures.MARKER.sub("", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert re.findall(r"\d+(?:\.\d+)? ?%", text) == []


def test_a_changed_figure_is_found_and_write_restores_it(tmp_path, monkeypatch):
    page = tmp_path / "page.md"
    page.write_text(
        "Before.\n<!-- figures:fake -->\nfew 12.3 %\n<!-- /figures:fake -->\nAfter.\n", "utf-8"
    )
    monkeypatch.setattr(figures, "markdown_files", lambda: [page])
    monkeypatch.setattr(figures, "ROOT", tmp_path)
    computed = {"text": "few 12.3 %"}
    fake = figures.Block("fake", lambda: computed["text"], heavy=False, what="a test block")
    monkeypatch.setitem(figures.BLOCKS, "fake", fake)
    assert figures.stale(["fake"]) == []
    computed["text"] = "few 12.4 %"
    diffs = figures.stale(["fake"])
    assert len(diffs) == 1 and "-few 12.3 %" in diffs[0] and "+few 12.4 %" in diffs[0]
    assert "12.3" in page.read_text()  # a check never writes
    assert figures.stale(["fake"], write=True) == diffs
    assert page.read_text() == (
        "Before.\n<!-- figures:fake -->\nfew 12.4 %\n<!-- /figures:fake -->\nAfter.\n"
    )
    assert figures.stale(["fake"]) == []
