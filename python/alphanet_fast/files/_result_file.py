"""Reading a saved result's ``.npz`` without trusting it: sizes before allocation, bounded JSON.

A result file is a zip of ``.npy`` members and one JSON string. A hostile
file can claim any shape in a member's header (numpy would allocate it before
noticing the data are short) and nest its JSON deeper than Python's recursion
limit. Here every member's header is read first and its shape checked against
the member's own size in the zip directory, and their total against the
memory this process may allocate (:func:`alphanet_fast._memory.memory_limit`),
before any array is read; the JSON is parsed with its depth bounded.

Every problem raises :class:`~alphanet_fast.ArgumentError` for the argument
``path``, with the file and the entry in its one-line message.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

from alphanet_fast._errors import ArgumentError, fail
from alphanet_fast._memory import memory_limit
from alphanet_fast.files.formats import check_zip, not_regular, npz_member_bytes, one_line

__all__ = ["MAX_DEPTH", "bad", "fspath", "parse_json", "read_entries"]

#: The deepest nesting of lists and objects accepted in a result's metadata.
MAX_DEPTH = 64


def bad(path: str, entry: str, what: str) -> ArgumentError:
    """The error ``path: FILE: ENTRY: WHAT`` (argument ``path``)."""
    return fail("path", f"{path}: {entry}: {what}")


def _member_size(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> int:
    """The member's array bytes, its header checked against its size."""
    try:
        return npz_member_bytes(zf, info)
    except Exception as exc:  # a malformed or forged header: numpy raises several kinds
        raise bad(path, info.filename.removesuffix(".npy"), one_line(exc)) from None


def read_entries(path: str) -> dict[str, np.ndarray]:
    """The arrays of the result file ``path``, every size checked before it is read.

    Raises
    ------
    ArgumentError
        ``path`` missing or not a regular file (a FIFO is refused without
        being opened), a damaged zip, a member whose header disagrees with its
        size, or arrays larger in total than the memory this process may
        allocate.
    """
    problem = not_regular(path)
    if problem is not None:
        raise fail("path", f"{path}: {problem}")
    try:
        check_zip(path)  # type: ignore[arg-type]
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if i.filename.endswith(".npy")]
            total = sum(_member_size(zf, info, path) for info in infos)
    except ArgumentError:
        raise
    except Exception as exc:  # not a zip, damaged, unreadable
        raise fail("path", f"{path}: not a readable result file ({one_line(exc)})") from None
    limit, what = memory_limit()
    if total > limit:
        raise fail(
            "path",
            f"{path}: its arrays need {total / 2**30:,.1f} GiB, more than the "
            f"{limit / 2**30:,.1f} GiB of {what}",
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except Exception as exc:  # BadZipFile, OSError, pickled data ... from a damaged file
        raise fail("path", f"{path}: not a readable result file ({one_line(exc)})") from None


def _depth(value: Any) -> int:
    """The nesting depth of lists and dicts, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(path: str, entry: str, text: str) -> Any:
    """``json.loads(text)``, refusing nesting deeper than :data:`MAX_DEPTH`, with
    errors naming ``entry`` (never a ``RecursionError``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad(path, entry, f"not valid JSON ({exc.msg} at character {exc.pos})") from None
    except RecursionError:  # deeper than the interpreter's limit
        raise bad(path, entry, f"nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:
        raise bad(path, entry, f"not valid JSON ({one_line(exc)})") from None
    if _depth(value) > MAX_DEPTH:
        raise bad(path, entry, f"nested more than {MAX_DEPTH} levels deep")
    return value


def fspath(path: Any) -> str:
    """``path`` as a string; a :class:`TypeError` naming ``path`` otherwise."""
    try:
        return os.fspath(path)
    except TypeError:
        found = type(path).__name__
        raise fail("path", f"expected a file path, found {found}", type_error=True) from None
