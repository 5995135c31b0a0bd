"""Mutation checks of the method tests, run by hand (not in CI).

Each mutation rewrites one piece of the method in a copy of the package's Python
source (the compiled extension is copied as is), then runs the given tests against
that copy and prints which of them failed. A mutation that no test catches, or
whose code is not found, makes the script exit non-zero.

The code to mutate is found by pattern anywhere in the package, so the script
survives modules being split or moved; a pattern that matches nothing (or more
than once) is reported by name so that it can be updated.

    python benches/mutations.py                       # every mutation, default tests
    python benches/mutations.py softmax relu          # some of them
    python benches/mutations.py --tests tests/test_reference_alphanet.py tests/test_method.py
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "python" / "alphanet_fast"
DEFAULT_TESTS = ["tests/test_reference_alphanet.py", "tests/test_method.py"]

# name: (what it does, pattern, replacement)
MUTATIONS = {
    "softmax": (
        "softmax instead of signed L1 normalisation of the network's outputs",
        # AlphaNetwork.forward (model.py).
        r"F\.normalize\((\w+), p=1(?:\.0)?, dim=1\)",
        r"torch.softmax(\1, dim=1)",
    ),
    "relu": (
        "ReLU instead of LeakyReLU(0.01) between the layers",
        r"F\.leaky_relu\((\w+), LEAKY_SLOPE\)",
        r"F.relu(\1)",
    ),
    "uniform-rows": (
        "base rows drawn uniformly by row instead of class-balanced",
        # ClassBalancedSampler.draw (training/sampling.py): a class, then one of its rows.
        r"return (self\.\w+)\[self\.starts\[(\w+)\] \+ rng\.integers\(0, self\.counts\[\2\]\)\]",
        r"return \1[rng.integers(0, \1.size, size=\2.size)]",
    ),
    "last-epoch": (
        "the last epoch kept instead of the best validation epoch",
        # _Best.offer (training/trainer.py): the validated branch.
        r"keep = epoch >= self\.first_eligible and acc > self\.acc",
        r"keep = epoch == self.epochs",
    ),
    "farthest": (
        "the k farthest base classes instead of the nearest",
        # choose_neighbors (neighbors.py), the one rule correct() uses.
        r"(\w+), (\w+) = nearest_neighbors\(means\[kept\], means\[base\], k, metric\)",
        r"\1, \2 = (a[:, ::-1][:, :k] for a in "
        r"nearest_neighbors(means[kept], means[base], base.size, metric))",
    ),
}


def mutate(tree: Path, name: str) -> Path:
    """Apply mutation ``name`` to the package copy under ``tree``; return the file changed."""
    _, pattern, replacement = MUTATIONS[name]
    hits = []
    for path in sorted(tree.rglob("*.py")):
        text = path.read_text()
        found = len(re.findall(pattern, text))
        if found:
            hits.append((path, text, found))
    if sum(found for _, _, found in hits) != 1:
        where = ", ".join(f"{p.name} x{n}" for p, _, n in hits) or "nowhere"
        raise SystemExit(
            f"mutation {name!r}: pattern {pattern!r} must match once in the package, "
            f"found {where}; update MUTATIONS in {Path(__file__).name}"
        )
    path, text, _ = hits[0]
    path.write_text(re.sub(pattern, replacement, text))
    return path


def failing_tests(tree: Path, tests: list[str]) -> tuple[list[str], str]:
    """Run ``tests`` with the mutated copy first on the path; the failed test ids."""
    env = dict(os.environ, PYTHONPATH=str(tree) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    probe = subprocess.run(
        [sys.executable, "-c", "import alphanet_fast; print(alphanet_fast.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    if not probe.stdout.strip().startswith(str(tree)):
        raise SystemExit(f"the mutated copy is not the one imported: {probe.stdout.strip()}")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *tests],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    failed = re.findall(r"^FAILED (\S+)", out.stdout, flags=re.MULTILINE)
    return failed, out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"mutations to run, of {', '.join(MUTATIONS)}")
    parser.add_argument("--tests", nargs="+", default=DEFAULT_TESTS)
    args = parser.parse_args()
    names = args.names or list(MUTATIONS)
    unknown = [name for name in names if name not in MUTATIONS]
    if unknown:
        parser.error(f"unknown mutation {unknown[0]!r}; expected one of {', '.join(MUTATIONS)}")
    uncaught = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix="alphanet-mutant-") as tmp:
            tree = Path(tmp)
            shutil.copytree(
                PACKAGE, tree / "alphanet_fast", ignore=shutil.ignore_patterns("__pycache__")
            )
            changed = mutate(tree, name)
            failed, summary = failing_tests(tree, args.tests)
        print(f"{name}: {MUTATIONS[name][0]} ({changed.name})")
        print(f"  {summary}")
        for test in failed:
            print(f"  caught by {test}")
        if not failed:
            print("  NOT CAUGHT")
            uncaught.append(name)
    if uncaught:
        print(f"not caught: {', '.join(uncaught)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
