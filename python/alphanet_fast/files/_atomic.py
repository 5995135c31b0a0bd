"""Writing outputs whole or not at all: temporary names, renames and clean-up.

Every file the package writes goes first to a temporary file in the target's
own folder, named ``.NAME.PID.RANDOM.tmp`` (``NAME`` the target's name, ``PID``
the writing process), and is renamed over the target only once complete, so a
crash never leaves a half-written output. Clean-up:

- an exception, Ctrl-C (SIGINT) or SIGTERM removes the temporary file (SIGTERM
  is turned into :class:`Terminated` while a write runs in the main thread,
  unless the program installed its own handler);
- after SIGKILL or a power cut the temporary file stays; it never has the
  target's name, so nothing reads it, and the next write to the same target
  removes the leftovers of processes that no longer exist.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Terminated",
    "atomic_write",
    "json_default",
    "sigterm_raises",
    "temp_name",
    "write_json",
    "write_npz",
    "write_text",
]


class Terminated(BaseException):
    """SIGTERM arrived; raised so that ``finally`` blocks and clean-ups run.

    A ``BaseException`` (as ``KeyboardInterrupt``), so ``except Exception``
    does not swallow it.
    """


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(f"terminated by signal {signum}")


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` instead of killing the process.

    Only in the main thread (Python runs signal handlers there) and only when
    SIGTERM has its default action: a program's own handler is left alone.
    The previous handler is restored on leaving.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def temp_name(target: Path) -> Path:
    """``.NAME.PID.RANDOM.tmp`` beside ``target``: hidden, never the target's name."""
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove temporary files of ``target`` left by processes that no longer exist.

    Returns the removed paths. Files of live processes (another run writing
    the same output now) are kept.
    """
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(\d+)\.[0-9a-f]{{8}}\.tmp")
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            found = pattern.fullmatch(entry.name)
            if found and entry.is_file(follow_symlinks=False):
                if not _pid_alive(int(found.group(1))):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
                        removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    The parent directory is created if needed. On an exception, Ctrl-C or
    SIGTERM the temporary file is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : path-like
        The output file.

    Yields
    ------
    Path
        Where to write (``.NAME.PID.RANDOM.tmp`` in the same folder).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_write(folder / "out.txt") as tmp:
    ...     _ = tmp.write_text("done")
    >>> sorted(p.name for p in folder.iterdir())
    ['out.txt']
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp = temp_name(target)
    with sigterm_raises():
        # O_EXCL: never write through a file (or link) that is already there.
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        try:
            yield tmp
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) atomically; returns the path."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented, strict JSON (NaN is an error) atomically; returns the path."""
    return write_text(
        path, json.dumps(data, indent=2, allow_nan=False, default=json_default) + "\n"
    )


def write_npz(path: str | os.PathLike[str], **arrays: Any) -> Path:
    """Write ``arrays`` to an uncompressed ``.npz`` atomically (no suffix added); returns it."""
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # a file object, so numpy adds no ".npz" to the name
    return Path(path)


def json_default(obj: Any) -> Any:
    """``default=`` for ``json.dumps``: numpy scalars and arrays, tuples and paths as JSON."""
    # numpy values sneak into configs and reports (e.g. a hidden tuple of np.int64).
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
