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

Temporary files are created exclusively (``O_EXCL``, ``O_NOFOLLOW``): a file
or symbolic link planted at the name makes the write fail instead of being
written through. The clean-up removes only names this package made: ``RANDOM``
is 8 random hex digits followed by 8 that are a keyed hash of the target's
name, the process id and those digits, so a user's file that merely looks
like a temporary file is not one; a file that is not a regular file owned by
this user, a link, or any file this process has read as an input
(:func:`alphanet_fast.files._paths.is_input`) is never removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import signal
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Terminated",
    "atomic_write",
    "create_exclusive",
    "json_default",
    "open_temp",
    "remove_stale_temps",
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


_TAG_KEY = b"alphanet_fast temporary file"
# Flags of a temporary file: created here, never an existing file or a link's target.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def _tag(name: str, pid: int, token: str) -> str:
    digest = hashlib.blake2s(f"{name}\0{pid}\0{token}".encode(), key=_TAG_KEY, digest_size=4)
    return digest.hexdigest()


def temp_name(target: Path, pid: int | None = None) -> Path:
    """``.NAME.PID.RANDOM.tmp`` beside ``target``: hidden, never the target's name.

    ``RANDOM`` is 8 random hex digits and 8 of a keyed hash of ``NAME``,
    ``PID`` and those digits, by which :func:`remove_stale_temps` recognises
    names this package made. ``pid`` defaults to this process's.
    """
    pid = os.getpid() if pid is None else int(pid)
    token = secrets.token_hex(4)
    return target.with_name(f".{target.name}.{pid}.{token}{_tag(target.name, pid, token)}.tmp")


def create_exclusive(path: Path) -> int:
    """Create ``path`` for writing and return its descriptor; never opens an existing
    file or follows a link (``FileExistsError``/``OSError`` instead)."""
    return os.open(path, _CREATE, 0o666)


def open_temp(path: Path) -> Any:
    """Open the temporary file ``path`` (made by :func:`atomic_write`) for binary
    writing, refusing a link put in its place (``O_NOFOLLOW``)."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0))
    return os.fdopen(fd, "wb")


def _check_same(tmp: Path, made: os.stat_result) -> None:
    # The file renamed into place must be the one created here, not a swapped-in link.
    now = os.lstat(tmp)
    if (now.st_dev, now.st_ino) != (made.st_dev, made.st_ino) or not stat.S_ISREG(now.st_mode):
        raise OSError(f"{tmp}: the temporary file was replaced while it was written")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):  # another user's process; no pid
        return True
    return True


def _is_our_leftover(entry: os.DirEntry, target_name: str, found: re.Match) -> bool:
    """A regular file, not a link, owned by us, named by :func:`temp_name`, of a dead
    process, and not an input of this process."""
    from alphanet_fast.files._paths import is_input

    pid, token, tag = int(found.group(1)), found.group(2), found.group(3)
    if tag != _tag(target_name, pid, token) or not entry.is_file(follow_symlinks=False):
        return False
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        return False
    return not is_input(entry.path) and not _pid_alive(pid)


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove temporary files of ``target`` left by processes that no longer exist.

    Returns the removed paths. Only names made by :func:`temp_name` for this
    target are candidates; files of live processes (another run writing the
    same output now), links, other users' files and this process's inputs
    are kept.
    """
    name = re.escape(target.name)
    pattern = re.compile(rf"\.{name}\.([1-9][0-9]{{0,9}})\.([0-9a-f]{{8}})([0-9a-f]{{8}})\.tmp")
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            found = pattern.fullmatch(entry.name)
            if found and _is_our_leftover(entry, target.name, found):
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
        # Exclusive: never write through a file (or link) that is already there.
        fd = create_exclusive(tmp)
        try:
            made = os.fstat(fd)
        finally:
            os.close(fd)
        try:
            yield tmp
            _check_same(tmp, made)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) atomically; returns the path."""
    with atomic_write(path) as tmp, open_temp(tmp) as f:
        f.write(text.encode("utf-8"))
    return Path(path)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented, strict JSON (NaN is an error) atomically; returns the path."""
    return write_text(
        path, json.dumps(data, indent=2, allow_nan=False, default=json_default) + "\n"
    )


def write_npz(path: str | os.PathLike[str], **arrays: Any) -> Path:
    """Write ``arrays`` to an uncompressed ``.npz`` atomically (no suffix added); returns it."""
    with atomic_write(path) as tmp, open_temp(tmp) as f:
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
