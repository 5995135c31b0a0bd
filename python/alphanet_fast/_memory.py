"""Streaming over memory-mapped features without keeping the file resident.

Pages of a file mapping that a process has read count towards its resident
memory until the kernel reclaims them, so one pass over a 20 GB ``.npy`` would
show a 20 GB RSS. For read-only (or write-through) ``np.memmap`` inputs the
kernels are fed in chunks of rows and each chunk's pages are handed back with
``madvise(MADV_DONTNEED)`` once done: the data stay in the page cache, but the
process's footprint stays at one chunk. Copy-on-write maps (mode ``"c"``) are
never released, since that would discard private changes, and neither is
anything that is not a file mapping.

:func:`memory_limit` is the memory a process may still allocate as far as
the up-front checks are concerned: the least of the machine's memory, the
cgroup's limit (``memory.max``, or ``memory.limit_in_bytes`` under cgroup v1)
and what the process's ``RLIMIT_AS`` and ``RLIMIT_DATA`` leave beyond the
address space it already uses.
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
    """``np.load(x, mmap_mode="r")`` for a path to a ``.npy`` file, else ``x``.

    A path that is not a regular file (missing, a FIFO, a device) raises
    ``ValueError`` saying so, before it is opened.
    """
    if isinstance(x, (str, os.PathLike)):
        from alphanet_fast.files.formats import not_regular

        path = os.fspath(x)
        problem = not_regular(path)
        if problem is not None:
            raise ValueError(f"{path}: {problem}")
        return np.load(path, mmap_mode="r", allow_pickle=False)
    return x


_UNLIMITED = 1 << 62


def _physical() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 1 << 40


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read(64).strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _cgroup_limit(root: str = "/sys/fs/cgroup") -> int | None:
    """The tightest memory limit of this process's cgroup and its ancestors (v2 or v1)."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    found = []
    for line in lines:
        _, controllers, group = line.split(":", 2)
        if controllers == "":
            base, name = root, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = f"{root}/memory", "memory.limit_in_bytes"
        else:
            continue
        parts = [q for q in group.split("/") if q]
        # The group and each ancestor (in a container the path may be the root only).
        for cut in range(len(parts), -1, -1):
            value = _read_int(os.path.join(base, *parts[:cut], name))
            if value is not None and value < _UNLIMITED:
                found.append(value)
    return min(found) if found else None


def _status_bytes(field: str) -> int:
    """``VmSize``/``VmData`` of ``/proc/self/status`` in bytes (0 where unknown)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _rlimit_left(which: str, used_field: str) -> int | None:
    try:
        import resource

        soft, _ = resource.getrlimit(getattr(resource, which))
    except (ImportError, AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        return None
    if soft == resource.RLIM_INFINITY or soft >= _UNLIMITED:
        return None
    return max(0, soft - _status_bytes(used_field))


def memory_limit() -> tuple[int, str]:
    """Bytes this process may still allocate, and what sets that bound (for messages).

    The least of the machine's physical memory, the cgroup's memory limit and
    what ``RLIMIT_AS`` and ``RLIMIT_DATA`` leave beyond the address space and
    data already in use. A structure larger than this cannot be allocated, so
    the checks of ``rho``, ``hidden`` and class counts refuse it up front.

    Examples
    --------
    >>> limit, what = memory_limit()
    >>> limit > 0 and isinstance(what, str)
    True
    """
    bounds = [(_physical(), "this machine's memory")]
    cgroup = _cgroup_limit()
    if cgroup is not None:
        bounds.append((cgroup, "this process's cgroup memory limit"))
    for which, field, what in (
        ("RLIMIT_AS", "VmSize", "what this process's address-space limit (RLIMIT_AS) leaves"),
        ("RLIMIT_DATA", "VmData", "what this process's data limit (RLIMIT_DATA) leaves"),
    ):
        left = _rlimit_left(which, field)
        if left is not None:
            bounds.append((left, what))
    return min(bounds, key=lambda bound: bound[0])


def memory_limit_bytes() -> int:
    """The first value of :func:`memory_limit`."""
    return memory_limit()[0]


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
