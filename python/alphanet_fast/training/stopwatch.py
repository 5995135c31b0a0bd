"""Seconds per stage of a run (``result.timings``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["Stopwatch"]


class Stopwatch:
    """Seconds per stage; on CUDA the queue is drained at stage edges so times are honest."""

    def __init__(self, device: torch.device):
        self.seconds: dict[str, float] = {}
        self._cuda = device.type == "cuda"

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the time spent in the ``with`` block to ``seconds[name]``."""
        if self._cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self._cuda:
                torch.cuda.synchronize()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
