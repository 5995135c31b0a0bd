"""The piece runner: every piece once, either way, the faster way kept (also for the
first layer's Rust products, which run on the pool or the calling thread)."""

from __future__ import annotations

import threading
import time

import alphanet_fast as af
import numpy as np
import pytest
import torch
from alphanet_fast.training import pieces
from alphanet_fast.training.pieces import PieceRunner
from training_toys import FAST, toy


def _recorder():
    seen, lock = [], threading.Lock()

    def fn(item):
        with lock:
            seen.append(item)

    return seen, fn


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_every_item_runs_once_per_call_either_way(workers, monkeypatch):
    monkeypatch.setattr(pieces, "PROBE_CALLS", 2)
    monkeypatch.setattr(pieces, "PROBE_EVERY", 6)
    seen, fn = _recorder()
    with PieceRunner(workers) as run:
        for call in range(20):
            seen.clear()
            run(fn, range(call % 5 + 1))
            assert sorted(seen) == list(range(call % 5 + 1))


def _pieces_slower_off_the_calling_thread(delay: float):
    main = threading.get_ident()

    def fn(item):
        if threading.get_ident() != main:
            time.sleep(delay)

    return fn


def test_probe_keeps_the_calling_thread_when_helpers_are_slow(monkeypatch):
    # A helper that takes a piece is held up 50 ms (as if its core were taken);
    # the calling thread alone is not: the probe must settle on it.
    monkeypatch.setattr(pieces, "PROBE_CALLS", 4)
    monkeypatch.setattr(pieces, "PROBE_EVERY", 10)
    fn = _pieces_slower_off_the_calling_thread(0.05)
    with PieceRunner(2) as run:
        for _ in range(9):
            run(fn, range(8))
        assert run.shared is False


def test_probe_shares_when_that_is_faster(monkeypatch):
    # Pieces that wait (and release the GIL) finish sooner on two threads.
    monkeypatch.setattr(pieces, "PROBE_CALLS", 4)
    monkeypatch.setattr(pieces, "PROBE_EVERY", 10)

    def fn(item):
        time.sleep(0.01)

    with PieceRunner(2) as run:
        run.shared = False
        for _ in range(9):
            run(fn, range(4))
        assert run.shared is True


def test_an_error_in_a_piece_reaches_the_caller():
    def fn(item):
        if item == 3:
            raise ValueError("piece 3")

    with PieceRunner(2) as run, pytest.raises(ValueError, match="piece 3"):
        run(fn, range(6))


@pytest.mark.parametrize("shared", [True, False])
def test_correct_gives_the_same_bits_whichever_way_the_pieces_ran(shared, monkeypatch):
    x, y, W, b, vx, vy = toy(23)
    kw = {**FAST, "val": (vx, vy)}
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        mixed = af.correct(x, y, W, b, **kw)  # the probes switch ways during the run
        monkeypatch.setattr(PieceRunner, "_faster_shared", lambda self: shared)
        monkeypatch.setattr(pieces, "PROBE_CALLS", 0)
        fixed = af.correct(x, y, W, b, **kw)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(fixed.alphas, mixed.alphas)
    np.testing.assert_array_equal(fixed.W, mixed.W)
    assert fixed.history == mixed.history
