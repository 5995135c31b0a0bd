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


# Sizes a reader can hold: no Python module or Rust file over MAX_MODULE_LINES lines
# (tests and benchmarks included), and no function of the package, the benchmarks or
# the examples over MAX_FUNCTION_CODE_LINES lines of code: the lines of its
# definition (signature and nested functions included) that hold code; docstrings,
# comments and blank lines do not count. The tests' reference implementations
# (tests/training_toys.py, tests/test_reference_alphanet.py) follow the method's
# steps one by one, so they are held to the module limit only.
MAX_MODULE_LINES = 500
MAX_FUNCTION_CODE_LINES = 60
PY_ROOTS = ["python", "tests", "benches", "examples"]
FUNCTION_ROOTS = ["python", "benches", "examples"]


def code_lines_per_function(source: str) -> dict[str, int]:
    """Lines of code of every function and method of ``source``, by qualified name."""
    import ast
    import io
    import tokenize

    tree = ast.parse(source)
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstrings.update(range(first.lineno, first.end_lineno + 1))
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    code: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip and tok.type != tokenize.ENDMARKER:
            code.update(range(tok.start[0], tok.end[0] + 1))
    code -= docstrings
    sizes: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                    last = child.end_lineno or child.lineno
                    sizes[name] = sum(1 for line in code if first <= line <= last)
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return sizes


def test_the_line_counter_counts_code_only():
    source = (
        "def f(a,\n"
        "      b):\n"
        '    """Doc\n'
        '    string."""\n'
        "    # a comment\n"
        "\n"
        "    x = (a +\n"
        "         b)\n"
        "    def g():\n"
        "        return x\n"
        "    return g\n"
    )
    assert code_lines_per_function(source) == {"f": 7, "f.g": 2}


def _python_files(roots: list[str] = PY_ROOTS) -> list[Path]:
    return sorted(p for root in roots for p in (ROOT / root).rglob("*.py"))


def _rust_files() -> list[Path]:
    return sorted((ROOT / "rust").rglob("*.rs"))


def test_no_module_over_500_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in _python_files() + _rust_files()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_over_60_lines_of_code():
    long = {}
    for path in _python_files(FUNCTION_ROOTS):
        for name, n in code_lines_per_function(path.read_text()).items():
            if n > MAX_FUNCTION_CODE_LINES:
                long[f"{path.relative_to(ROOT)}::{name}"] = n
    assert long == {}, f"over {MAX_FUNCTION_CODE_LINES} lines of code: {long}"


def test_maturin_takes_the_version_from_cargo(tmp_path):
    need("maturin")
    run("maturin", "sdist", "--out", str(tmp_path))
    import alphanet_fast

    [archive] = tmp_path.glob("*.tar.gz")
    assert archive.name == f"alphanet_fast-{alphanet_fast.__version__}.tar.gz"
