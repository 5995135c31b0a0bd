"""The torch environment of every training loop: the device, the thread count, precision.

One place for what ``correct()``, the trained baselines (``lws``, ``crt``) and
``alphanet_fast.torch`` agree on:

* :func:`parse_device`: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a
  ``torch.device``, checked, with errors naming ``device``;
* :data:`LOOP_THREADS`: torch's intra-op threads inside a training loop;
* :func:`loop_settings`: that thread count and full-precision float32 products
  for the duration of a loop, restored afterwards.

The loops spread their large products over Python workers of their own
(:class:`alphanet_fast.training.pieces.PieceRunner`), each running torch on one
thread, so their results never depend on the thread count.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from alphanet_fast._errors import fail

__all__ = ["LOOP_THREADS", "loop_settings", "parse_device"]

# Torch's intra-op threads wait for each other at every op: when another process
# holds a core, a 2-thread op stalls until the descheduled thread runs (see
# benches/README.md for the measurement; cRT in compare() on a shared 2-core machine
# took 4.7 s on two threads, 0.15 s on one). So torch runs on one thread in a loop,
# and the loop's large products are cut into fixed pieces that Python workers take
# when free, which a busy core cannot stall.
LOOP_THREADS = 1


def parse_device(device: Any, *, auto: torch.device | None = None, any_kind: bool = False):
    """The ``torch.device`` that ``device`` names.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"``, or anything ``torch.device`` accepts.
    auto : torch.device, optional
        What ``"auto"`` means; by default CUDA when torch sees a GPU, else the CPU.
    any_kind : bool, default False
        Accept any kind torch knows (a model may live on ``mps``); otherwise only
        ``cpu`` and ``cuda``, and ``cuda`` only when torch sees a GPU.

    Raises
    ------
    ArgumentError
        ``device`` names no device, or one this loop cannot use (``.argument`` is
        ``"device"``).

    Examples
    --------
    >>> parse_device("cpu")
    device(type='cpu')
    >>> try:
    ...     parse_device("tpu:0")
    ... except ValueError as exc:
    ...     print(exc.argument)
    device
    """
    if isinstance(device, str) and device == "auto":
        if auto is not None:
            return auto
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    expected = "'auto' or a torch device" if any_kind else "'auto', 'cpu', 'cuda' or 'cuda:N'"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise fail("device", f"expected {expected}, found {device!r}", value=device) from exc
    if any_kind:
        return dev
    if dev.type not in ("cpu", "cuda"):
        raise fail("device", f"expected a cpu or cuda device, found {device!r}", value=device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        detail = f"{device!r} requested but torch sees no CUDA device"
        raise fail("device", detail, value=device)
    return dev


@contextmanager
def loop_settings(device: torch.device, threads: int | None = LOOP_THREADS) -> Iterator[None]:
    """Torch on ``threads`` intra-op threads (CPU; ``None`` leaves it) and full-precision
    float32 products for the ``with`` block; both restored on exit.

    TF32 (if the caller enabled it) would make CUDA disagree with the CPU by ~1e-3.
    """
    prev_threads = torch.get_num_threads()
    prev_precision = torch.get_float32_matmul_precision()
    try:
        if threads is not None and device.type == "cpu" and threads != prev_threads:
            torch.set_num_threads(threads)
        torch.set_float32_matmul_precision("highest")
        yield
    finally:
        if torch.get_num_threads() != prev_threads:
            torch.set_num_threads(prev_threads)
        torch.set_float32_matmul_precision(prev_precision)
