"""Is this output one of the inputs? Path identity that survives links, ``..`` and absent folders.

Two paths name the same file when their fully resolved forms are equal
(symbolic links and ``..`` followed, also below a folder that does not exist
yet: the longest existing prefix is resolved and the rest appended), or when
both exist and share ``(st_dev, st_ino)`` (hard links).

Every file this process reads as an input is noted (:func:`note_input`), so
that the clean-up of dead runs' temporary files never removes one
(:func:`is_input`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

__all__ = ["check_outputs", "is_input", "note_input", "resolved", "same_file", "writable_folder"]

# (st_dev, st_ino) of every file read as an input by this process.
_INPUTS: set[tuple[int, int]] = set()
_INPUTS_LOCK = threading.Lock()


def note_input(path: str | os.PathLike[str]) -> None:
    """Remember ``path`` (an existing file) as an input of this process."""
    try:
        st = os.stat(path)
    except OSError:
        return
    with _INPUTS_LOCK:
        _INPUTS.add((st.st_dev, st.st_ino))


def is_input(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is (a link to) a file this process noted as an input."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    with _INPUTS_LOCK:
        return (st.st_dev, st.st_ino) in _INPUTS


def resolved(path: str | os.PathLike[str]) -> Path:
    """``path`` absolute, with links and ``..`` resolved as far as it exists.

    ``sub/../model.npz`` is ``model.npz`` even when ``sub`` does not exist:
    the longest existing prefix is resolved (``Path.resolve``) and the rest is
    normalised as text and appended; a later ``..`` after a link inside the
    existing part is resolved by the operating system first.
    """
    raw = Path(path)
    if not raw.is_absolute():
        raw = Path.cwd() / raw
    parts = raw.parts
    # The root always exists, so the loop always returns.
    for cut in range(len(parts), 0, -1):
        head = Path(*parts[:cut])
        if head.exists():
            return Path(os.path.normpath(Path(head.resolve(), *parts[cut:])))
    raise AssertionError("unreachable: the root exists")


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` name one file (by resolved path, or by inode for hard links)."""
    if resolved(a) == resolved(b):
        return True
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def writable_folder(path: str | os.PathLike[str]) -> str | None:
    """Why files cannot be written in folder ``path`` (None when they can).

    A missing folder is fine when its nearest existing ancestor is a
    writable folder (it will be created).
    """
    p = resolved(path)
    while not p.exists():
        p = p.parent
    if not p.is_dir():
        return f"{p} is not a folder"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"folder {p} is not writable"
    return None


def check_outputs(
    outputs: Iterable[tuple[str, str | os.PathLike[str], bool]],
    inputs: Iterable[tuple[str, str | os.PathLike[str]]],
) -> None:
    """Refuse outputs that would overwrite an input or each other, or cannot be written.

    Parameters
    ----------
    outputs : iterable of (label, path, is_folder)
        What will be written, labelled as the user named it (``--report``);
        ``is_folder`` for an output folder (``--plots``).
    inputs : iterable of (label, path)
        Every file read.

    Raises
    ------
    ValueError
        One line naming both labels: an output that is an input (or inside
        an output folder's place there is an input file), two outputs on one
        path, an output that is an existing folder (or a folder output that is
        a file), or a folder that cannot be created or written.
    """
    outs = [(label, Path(p), folder) for label, p, folder in outputs]
    ins = [(label, Path(p)) for label, p in inputs]
    for _, inp in ins:
        note_input(inp)
    for i, (label, out, folder) in enumerate(outs):
        for in_label, inp in ins:
            if same_file(out, inp):
                raise ValueError(
                    f"{label} {out} is the input {in_label} {inp}; choose another output path"
                )
        for other_label, other, _ in outs[:i]:
            if resolved(out) == resolved(other):
                raise ValueError(f"{label} and {other_label} are both {out}")
        if folder and out.exists() and not out.is_dir():
            raise ValueError(f"{label} {out}: expected a folder, found a file")
        if not folder and out.is_dir():
            raise ValueError(f"{label} {out}: is a folder, expected a file name")
        problem = writable_folder(out if folder else resolved(out).parent)
        if problem is not None:
            raise ValueError(f"{label} {out}: {problem}")
