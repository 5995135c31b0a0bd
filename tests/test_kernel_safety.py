"""Nothing passed to a kernel kills or hangs the process.

Generated bad arguments to every entry point raise only the documented exception
types (never pyo3's ``PanicException``); labels changed by another thread while
a kernel runs never make it read out of bounds; absurd thread counts are capped
with a warning. The crash- and thread-prone cases run in a subprocess, so that a
crash fails the test instead of killing pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import alphanet_fast as af
import numpy as np
import pytest
from alphanet_fast import _core
from hypothesis import given, settings
from hypothesis import strategies as st

DOCUMENTED = (ValueError, TypeError, MemoryError)

X = np.arange(12, dtype=np.float32).reshape(4, 3)
Y = np.array([0, 1, 1, 2])
W = np.ones((5, 3), dtype=np.float32)

BAD_VALUES = st.sampled_from(
    [
        None,
        "x",
        1.5,
        -5,
        0,
        2**70,
        -(2**70),
        [[1, 2], [3]],
        np.array(3.0),
        np.zeros((0, 3)),
        np.zeros((2, 0)),
        np.zeros((2, 3, 1)),
        np.ones(4),
        np.array([np.nan, 1.0, 2.0, 3.0]),
        np.array([[np.inf, 1.0, 2.0]]),
        np.full((4, 3), 1e300),
        np.full((4, 3), -1e300),
        np.full((4, 3), 3e38, np.float32),
        np.array([0, 1, 2**62, 3]),
        np.array([0, -1, 1, 2]),
        np.array([0, 1, 1, 2**64 - 1], np.uint64),
        np.array([0.0, 1e20, 1.0, 0.0]),
        np.array([True, False, True, True]),
        np.ones((4, 3), np.complex64),
        np.ones((4, 3), np.float16),
        np.ones((4, 3), np.int8),
        np.array([["a", "b", "c"]] * 4),
        np.array([[object()] * 3] * 4, dtype=object),
        np.ones((4, 3))[:, ::2],
        np.ones((3, 3), np.float64).T,
    ]
)

# Each entry point with valid arguments; one of them is replaced by a bad value.
CALLS = {
    "class_means": (af.class_means, [X, Y, 3]),
    "class_sums": (af.class_sums, [X, Y, 3]),
    "nearest_neighbors": (af.nearest_neighbors, [X, W, 2, "cosine"]),
    "combine": (af.combine, [W, np.array([0, 1]), np.array([[2], [3]]), np.ones((2, 2))]),
    "topk_scores": (af.topk_scores, [X, W, np.zeros(5, np.float32), 2]),
    "_core.class_means": (_core.class_means, [X, np.array(Y), 3]),
    "_core.class_sums": (_core.class_sums, [X, np.array(Y), 3]),
    "_core.accumulate_class_sums": (
        _core.accumulate_class_sums,
        [X, np.array(Y), np.zeros((3, 3)), np.zeros(3, np.int64), 0],
    ),
    "_core.means_from_sums": (_core.means_from_sums, [np.ones((3, 3)), np.ones(3, np.int64), 1]),
    "_core.nearest_neighbors": (_core.nearest_neighbors, [X, W, 2, "euclidean"]),
    "_core.combine": (
        _core.combine,
        [W, np.array([0, 1]), np.array([[2], [3]]), np.ones((2, 2))],
    ),
    "_core.topk_scores": (_core.topk_scores, [X, W, None, 2, 0]),
    "_core._read_probe": (_core._read_probe, [X]),
}


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(CALLS)), position=st.integers(0, 4), bad=BAD_VALUES)
def test_bad_arguments_raise_only_documented_exceptions(name, position, bad):
    func, args = CALLS[name]
    args = list(args)
    args[position % len(args)] = bad
    try:
        func(*args)
    except BaseException as exc:  # PanicException derives from BaseException
        assert isinstance(exc, DOCUMENTED), f"{name}: {type(exc).__name__}: {exc}"


def run_script(script: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout}\n{out.stderr[-3000:]}"
    return out.stdout


LABELS_CHANGING_UNDER_A_KERNEL = """
import threading
import numpy as np
import alphanet_fast as af
from alphanet_fast import _core

n, d = 200_000, 32
x = np.ones((n, d), np.float32)
y = np.zeros(n, np.int64)
stop = threading.Event()

def scribble():
    # Holds the interpreter for each write, as any Python writer does.
    j = 0
    while not stop.is_set():
        y[j] = 1 << 40
        y[j] = 0
        j = (j + 7919) % n

writer = threading.Thread(target=scribble)
writer.start()
results = errors = 0
try:
    for _ in range(30):
        for call in (lambda: _core.class_means(x, y, 1), lambda: af.class_means(x, y, 1)):
            try:
                means, counts = call()
            except af.KernelError as exc:
                assert exc.argument == "labels" and "1099511627776" in str(exc), exc
                errors += 1
            else:
                # A consistent label state: every row in class 0.
                assert counts.tolist() == [n] and (means == 1).all()
                results += 1
finally:
    stop.set()
    writer.join()
print(results + errors)
"""


def test_labels_changed_by_another_thread_never_crash_a_kernel():
    assert run_script(LABELS_CHANGING_UNDER_A_KERNEL).split() == ["60"]


THREADS_REPORT = """
import warnings
import numpy as np
import alphanet_fast as af
from alphanet_fast import _core

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    {action}
    af.class_means(np.ones((4, 2)), [0, 1, 0, 1])
    threads = af.get_num_threads()
print(threads, _core.max_threads())
for w in caught:
    print(w.category.__name__, "|", w.message)
"""


@pytest.mark.parametrize(
    "action, env, words",
    [
        ("pass", {"ALPHANET_FAST_NUM_THREADS": "100000"}, "ALPHANET_FAST_NUM_THREADS=100000"),
        ("pass", {"RAYON_NUM_THREADS": "100000"}, "RAYON_NUM_THREADS=100000"),
        ("af.set_num_threads(10**6)", {}, "n: 1000000 threads"),
        ("af.set_num_threads(10**30)", {}, "n: 1000000000000000000000000000000 threads"),
    ],
)
def test_absurd_thread_counts_are_capped_with_a_warning(action, env, words):
    env = {"ALPHANET_FAST_NUM_THREADS": "", "RAYON_NUM_THREADS": "", **env}
    lines = run_script(THREADS_REPORT.format(action=action), env).splitlines()
    threads, ceiling = map(int, lines[0].split())
    assert threads == ceiling == 4 * len(os.sched_getaffinity(0))
    assert len(lines) == 2, lines  # one warning, once
    assert lines[1].startswith("RuntimeWarning |") and words in lines[1]


def test_unreadable_thread_setting_is_reported():
    env = {"ALPHANET_FAST_NUM_THREADS": "many"}
    lines = run_script(THREADS_REPORT.format(action="pass"), env).splitlines()
    assert lines[0].split()[0] == str(len(os.sched_getaffinity(0)))
    assert 'ALPHANET_FAST_NUM_THREADS="many" is not a whole number' in lines[1]
