"""Streaming over memory-mapped features without keeping the file resident.

Pages of a file mapping that a process has read count towards its resident
memory until the kernel reclaims them, so one pass over a 20 GB ``.npy`` would
show a 20 GB RSS. For read-only (or write-through) ``np.memmap`` inputs the
kernels are fed in chunks of rows and each chunk's pages are handed back with
``madvise(MADV_DONTNEED)`` once done: the data stay in the page cache, but the
process's footprint stays at one chunk. Copy-on-write maps (mode ``"c"``) are
never released, since that would discard private changes, and neither is
anything that is not a file mapping.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from alphanet_fast import _core

#: Rows per chunk are chosen to read about this many bytes.
CHUNK_BYTES = 256 << 20

_MADV_DONTNEED = 4
_libc: Any = None


def as_array_or_path(x: Any) -> Any:
    """``np.load(x, mmap_mode="r")`` for a path to a ``.npy`` file, else ``x``."""
    if isinstance(x, (str, os.PathLike)):
        path = os.fspath(x)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no such file: {path}")
        return np.load(path, mmap_mode="r", allow_pickle=False)
    return x


def is_releasable(x: np.ndarray) -> bool:
    """Whether ``x`` is a row-contiguous, shared file mapping whose pages may be dropped."""
    return (
        sys.platform.startswith("linux")
        and isinstance(x, np.memmap)
        and getattr(x, "mode", "c") in ("r", "r+", "readonly", "readwrite")
        and x.ndim == 2
        and x.flags.c_contiguous
    )


def row_chunks(x: np.ndarray, chunk_bytes: int | None = None) -> Iterator[tuple[int, int]]:
    """``(start, end)`` row ranges of about ``chunk_bytes`` (default :data:`CHUNK_BYTES`) each."""
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    row_bytes = max(1, x.shape[1] * x.itemsize)
    # Whole top-k row blocks per chunk, so chunked scoring is bitwise the one-call result.
    align = _core.TOPK_ROW_BLOCK
    rows = max(align, chunk_bytes // row_bytes // align * align)
    for start in range(0, x.shape[0], rows):
        yield start, min(start + rows, x.shape[0])


def release_rows(x: np.ndarray, start: int, end: int) -> None:
    """Drop the process's mapping of the whole pages inside rows ``start:end`` of ``x``."""
    global _libc
    if not is_releasable(x) or end <= start:
        return
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    page = mmap.PAGESIZE
    row_bytes = x.shape[1] * x.itemsize
    base = x.__array_interface__["data"][0]
    lo = base + start * row_bytes
    hi = base + end * row_bytes
    lo = (lo + page - 1) // page * page
    hi = hi // page * page
    if hi > lo:
        _libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), ctypes.c_int(_MADV_DONTNEED))
