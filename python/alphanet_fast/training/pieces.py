"""Fixed pieces of work shared by the calling thread and helper threads, when that pays.

The network's first layer is computed in pieces (``training.network``) whose
number depends on the input's size only; each piece is the same single-threaded
product whichever thread runs it, so the result never depends on who runs what.
That leaves the choice free to be made on speed alone. :class:`PieceRunner`
shares the pieces between the calling thread and ``workers - 1`` helpers when the
other cores are free, and runs them on the calling thread alone when another
process holds them: then a helper would wait for a core while the step waits
for the helper. It decides by timing both ways now and then, during the run.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

__all__ = ["PieceRunner"]

# Calls timed each way per probe (an even number: a training step makes two),
# and calls between the starts of two probes.
PROBE_CALLS = 16
PROBE_EVERY = 512


class PieceRunner:
    """``runner(fn, items)`` calls ``fn(item)`` for every item and returns when all are done.

    With ``workers > 1`` it owns ``workers - 1`` helper threads (torch on one
    thread each) and is a context manager that shuts them down. Every
    :data:`PROBE_EVERY` calls it runs :data:`PROBE_CALLS` calls shared, then as
    many on the calling thread alone, and keeps the way whose calls came round
    faster until the next probe. It times from the start of one call to the
    start of the next, so what sharing costs the work between calls (the rest
    of the training step reading results another core wrote, a core taken from
    a neighbour) is counted too; the median over pairs of calls drops the odd
    long interval (an epoch's validation).
    """

    def __init__(self, workers: int):
        self.helpers = max(0, workers - 1)
        self._pool = None
        if self.helpers:
            # Each piece must be the same single-threaded product on any thread: a new
            # thread's OpenMP team size is not the caller's (it depends on whether the
            # main thread had run a parallel region before torch.set_num_threads).
            self._pool = ThreadPoolExecutor(
                self.helpers,
                thread_name_prefix="alphanet-layer",
                initializer=torch.set_num_threads,
                initargs=(1,),
            )
        self.calls = 0
        self.shared = True
        self._started = 0.0
        self._intervals: list[float] = []

    def __enter__(self) -> PieceRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def __call__(self, fn: Callable[[Any], None], items: Iterable[Any]) -> None:
        items = list(items)
        self._run(fn, items, self.next_way())

    def next_way(self) -> bool:
        """Whether the call about to start should share its work, with the probes'
        bookkeeping: for work that is shared elsewhere (the Rust kernels' pool),
        called once per call, whose time to the next call is what is compared."""
        if self._pool is None:
            return False
        now = time.perf_counter()
        phase = self.calls % PROBE_EVERY
        self.calls += 1
        if 0 < phase <= 2 * PROBE_CALLS:
            self._intervals.append(now - self._started)
        if phase == 2 * PROBE_CALLS:
            self.shared = self._faster_shared()
        self._started = now
        probing = phase < 2 * PROBE_CALLS
        return phase < PROBE_CALLS if probing else self.shared

    def share(self, fn: Callable[[Any], None], items: Iterable[Any]) -> None:
        """Like calling the runner, but always shared, without probes: for coarse
        work (each item long against waking a thread), where a helper kept off
        its core holds up one item at most."""
        items = list(items)
        self._run(fn, items, self._pool is not None)

    def _faster_shared(self) -> bool:
        """Whether the shared calls of the probe just ended came round faster."""
        steps = [a + b for a, b in zip(self._intervals[::2], self._intervals[1::2])]
        self._intervals = []
        half = PROBE_CALLS // 2
        return statistics.median(steps[:half]) <= statistics.median(steps[half:])

    def _run(self, fn: Callable[[Any], None], items: list, shared: bool) -> None:
        if not shared:
            for item in items:
                fn(item)
            return
        # Every thread takes the next untaken piece until none is left, so a helper
        # kept off its core holds up at most the piece it took, and one that never
        # started is cancelled instead of waited for.
        taken, lock = itertools.count(), threading.Lock()

        def drain() -> None:
            while True:
                with lock:
                    i = next(taken)
                if i >= len(items):
                    return
                fn(items[i])

        helpers = [self._pool.submit(drain) for _ in range(self.helpers)]
        drain()
        for helper in helpers:
            if not helper.cancel():
                helper.result()
