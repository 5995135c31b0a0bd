"""ARCHITECTURE.md names every module of the package and every Rust file."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "alphanet_fast"
RUST = ROOT / "rust"


def _named() -> set[str]:
    """Every name written between backticks in ARCHITECTURE.md."""
    parts = (ROOT / "ARCHITECTURE.md").read_text().split("`")
    return set(parts[1::2])


def test_every_python_module_is_on_the_map():
    modules = [
        p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*") if p.suffix in (".py", ".pyi")
    ]
    assert modules, "no modules found"
    missing = sorted(m for m in modules if m not in _named())
    assert missing == [], f"ARCHITECTURE.md does not name {missing}"


def test_every_rust_file_is_on_the_map():
    files = [p.relative_to(RUST).as_posix() for p in RUST.rglob("*.rs")]
    assert files, "no Rust files found"
    missing = sorted(f for f in files if f not in _named())
    assert missing == [], f"ARCHITECTURE.md does not name {missing}"
