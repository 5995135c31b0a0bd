"""Every accuracy figure the documentation quotes, computed by the code and kept in step with it.

Each figure block of the Markdown files sits between two markers,
``<!-- figures:NAME -->`` and ``<!-- /figures:NAME -->``, and is rendered by
the function of the same name below from a run of the package (the demo, the
comparison, the example CNN). Nothing between the markers is written by hand.

    python docs/figures.py                   # check every block; exit 1 and show the difference
    python docs/figures.py --write           # recompute every block and rewrite it in place
    python docs/figures.py demo-small        # only the named blocks (--list names them all)
    python docs/figures.py --light           # only the blocks that take seconds

The tests check the light blocks (``tests/test_figures.py``) and, with
``python -m pytest -m figures``, the heavy ones. Training runs are bitwise
reproducible on one machine whatever the thread count, but torch's and the
BLAS's float rounding differs between CPU models, so on another CPU a heavy
block may differ in its last digit: rerun with ``--write`` and read the diff.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import io
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"<!-- figures:([a-z0-9-]+) -->\n(.*?)<!-- /figures:\1 -->", re.DOTALL)


def markdown_files() -> list[Path]:
    """The files whose blocks are kept: the README and every page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    """One figure block: its renderer, and whether it takes minutes (a heavy block)."""

    name: str
    render: Callable[[], str]
    heavy: bool
    what: str


BLOCKS: dict[str, Block] = {}


def block(name: str, *, heavy: bool, what: str) -> Callable[[Callable[[], str]], Callable[[], str]]:
    """Register ``render`` as the block ``name``."""

    def register(render: Callable[[], str]) -> Callable[[], str]:
        BLOCKS[name] = Block(name, render, heavy, what)
        return render

    return register


# ---------------------------------------------------------------- runs


def run_cli(args: list[str]) -> str:
    """Standard output of ``alphanet-fast ARGS`` run in this process."""
    from alphanet_fast.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(args)
    if status != 0:
        raise RuntimeError(f"alphanet-fast {' '.join(args)} exited with {status}")
    return out.getvalue()


def run_demo(profile: str) -> tuple[str, dict]:
    """The demo's standard output and its report.json, on built-in data."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "demo"
        text = run_cli(["demo", "-q", "--no-plots", "--profile", profile, "-o", str(out)])
        report = json.loads((out / "report.json").read_text())
    return text, report


def section(text: str, start: str, stop: str) -> list[str]:
    """The lines of ``text`` from the first holding ``start`` up to the next holding ``stop``."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if start in line)
    last = next(i for i in range(first, len(lines)) if stop in lines[i])
    while last > first and not lines[last - 1].strip():
        last -= 1
    return lines[first:last]


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def demo_summary(text: str, report: dict) -> str:
    """One sentence of the demo's test figures, from its report and its last table line."""
    test = report["evaluation"]["test"]
    before, after = (test[m]["accuracy"]["top1"] for m in ("baseline", "alphanet"))
    near = [test[m]["few_errors"] for m in ("baseline", "alphanet")]
    share = [e["neighbor"] / sum(e.values()) for e in near]
    counts = re.search(r"(\d+) few classes in the test set: (\d+) gained, (\d+) lost", text)
    if counts is None:
        raise RuntimeError("the demo's output no longer ends with its few-class counts")
    n, gained, lost = counts.groups()
    return (
        f"few-class top-1 goes from {pct(before['few'])} to {pct(after['few'])} and overall "
        f"from {pct(before['overall'])} to {pct(after['overall'])}; {gained} of the {n} "
        f"few classes gain and {lost} lose, and the share of few-class samples mistaken "
        f"for one of their nearest frequent classes falls from {pct(share[0])} to "
        f"{pct(share[1])}."
    )


@functools.lru_cache(maxsize=1)  # the sweep and the comparison share the ImageNet-LT data
def long_tail(profile: str):
    from alphanet_fast.datasets import make_long_tail

    return make_long_tail(profile, seed=0)


def comparison_table(profile: str) -> str:
    """``af.compare(...).table()`` on built-in data, one seed."""
    import alphanet_fast as af

    d = long_tail(profile)
    report = af.compare(
        (d.train_features, d.train_labels), d.W, d.b, seeds=1,
        val=(d.val_features, d.val_labels), test=(d.test_features, d.test_labels),
    )  # fmt: skip
    return report.table()


def fenced(body: str, lang: str = "text") -> str:
    return f"```{lang}\n{body.rstrip()}\n```"


# ---------------------------------------------------------------- blocks


@block("demo-small", heavy=False, what="alphanet-fast demo --profile small: one sentence")
def demo_small() -> str:
    text, report = run_demo("small")
    return f"On its test set (`alphanet-fast demo --profile small`), {demo_summary(text, report)}"


@block("demo", heavy=True, what="alphanet-fast demo (ImageNet-LT shape): tables and counts")
def demo() -> str:
    text, _ = run_demo("imagenet_lt")
    tables = section(text, "Test set", "group accuracy")
    counts = [line for line in text.splitlines() if "few classes in the test set" in line]
    return fenced("\n".join(["$ alphanet-fast demo", "...", *tables, "...", *counts]))


@block("compare-small", heavy=False, what="af.compare on make_long_tail('small'), one seed")
def compare_small() -> str:
    return fenced(comparison_table("small"))


@block("compare", heavy=True, what="af.compare on make_long_tail('imagenet_lt'), one seed")
def compare_imagenet() -> str:
    return fenced(comparison_table("imagenet_lt"))


SWEEP = {
    "rho 0.5": {"rho": 0.5},
    "rho 1.0": {"rho": 1.0},
    "rho 1.5": {"rho": 1.5},
    "rho 0.5, random neighbours": {"rho": 0.5, "metric": "random"},
}
SPLITS = ("few", "medium", "many", "overall")


@block("sweep", heavy=True, what="correct() over rho and seeds 0-2 on the ImageNet-LT shape")
def sweep() -> str:
    import alphanet_fast as af

    d = long_tail("imagenet_lt")
    test, val = (d.test_features, d.test_labels), (d.val_features, d.val_labels)
    rows = ["| setting | few | medium | many | overall |", "|---|---|---|---|---|"]
    base = None
    for name, knobs in SWEEP.items():
        runs = []
        for seed in range(3):
            res = af.correct(d.train_features, d.train_labels, d.W, d.b, val=val, seed=seed,
                             progress=False, **knobs)  # fmt: skip
            base = base or af.evaluate(*test, d.W, d.b, splits=res, k=1)
            runs.append([af.evaluate(*test, res.W, res.b, splits=res, k=1).accuracy[1][s]
                         for s in SPLITS])  # fmt: skip
        a = 100 * np.array(runs)
        cells = [f"{m:.1f} ± {s:.1f}" for m, s in zip(a.mean(0), a.std(0, ddof=1))]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    first = "| baseline | " + " | ".join(f"{100 * base.accuracy[1][s]:.1f}" for s in SPLITS)
    return "\n".join([*rows[:2], first + " |", *rows[2:]])


@block("method-gains", heavy=True, what="python benches/method_gains.py --seeds 8")
def method_gains() -> str:
    text = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "method_gains.py"), "--seeds", "8"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return fenced(f"$ python benches/method_gains.py --seeds 8\n{text}")


@block("cnn", heavy=True, what="python examples/long_tail_cnn.py: its tables")
def cnn() -> str:
    text = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "long_tail_cnn.py")],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    tables = section(text, "rare classes", "total ")  # the last line is a time: left out
    return fenced("$ python examples/long_tail_cnn.py\n...\n" + "\n".join(tables))


# ---------------------------------------------------------------- check and write


def occurrences() -> dict[str, list[Path]]:
    """Every block name found between markers, with the files that hold it."""
    found: dict[str, list[Path]] = {}
    for path in markdown_files():
        for match in MARKER.finditer(path.read_text(encoding="utf-8")):
            found.setdefault(match.group(1), []).append(path)
    return found


def replace(text: str, name: str, body: str) -> str:
    """``text`` with the block ``name`` holding ``body``."""
    pattern = re.compile(rf"(<!-- figures:{name} -->\n).*?(<!-- /figures:{name} -->)", re.DOTALL)
    return pattern.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)


def current(path: Path, name: str) -> str:
    for match in MARKER.finditer(path.read_text(encoding="utf-8")):
        if match.group(1) == name:
            return match.group(2)
    raise KeyError(f"{path.name} has no block {name!r}")


def stale(names: Iterable[str], *, write: bool = False) -> list[str]:
    """Render the named blocks; return a diff per block that differs (rewritten when ``write``)."""
    where = occurrences()
    diffs = []
    for name in names:
        body = BLOCKS[name].render().rstrip() + "\n"
        for path in where.get(name, []):
            old = current(path, name)
            if old == body:
                continue
            rel = path.relative_to(ROOT)
            diffs.append("".join(difflib.unified_diff(
                old.splitlines(True), body.splitlines(True),
                f"{rel} [{name}] quoted", f"{rel} [{name}] computed now",
            )))  # fmt: skip
            if write:
                path.write_text(replace(path.read_text(encoding="utf-8"), name, body), "utf-8")
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="blocks to check or write (default: all)")
    parser.add_argument("--write", action="store_true", help="rewrite stale blocks in place")
    parser.add_argument("--light", action="store_true", help="only the blocks that take seconds")
    parser.add_argument("--list", action="store_true", help="name every block and stop")
    args = parser.parse_args(argv)
    if args.list:
        for b in BLOCKS.values():
            print(f"{b.name:<14} {'heavy' if b.heavy else 'light'}  {b.what}")
        return 0
    unknown = [n for n in args.names if n not in BLOCKS]
    if unknown:
        parser.error(f"unknown blocks {unknown}; known: {sorted(BLOCKS)}")
    names = args.names or [n for n, b in BLOCKS.items() if not (args.light and b.heavy)]
    diffs = stale(names, write=args.write)
    for diff in diffs:
        print(diff)
    verb = "rewrote" if args.write else "stale"
    print(f"{len(names)} block(s) computed, {len(diffs)} {verb}", file=sys.stderr)
    return 1 if diffs and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
