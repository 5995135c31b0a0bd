"""File formats: one table of adapters that detect, read and write each kind of file.

Formats
-------
``npz``
    numpy archives; read with ``allow_pickle=False``.
``npy``
    one array (the weights only, for a classifier); features are memory-mapped.
``torch``
    ``.pt``/``.pth``/``.bin``/``.ckpt`` dicts of tensors, read with
    ``torch.load(..., weights_only=True)`` after checking the zip's CRCs
    (torch's own reader skips them).
``safetensors``
    read and written with the safetensors package.
``text``
    ``.txt``/``.csv``/``.tsv``, for labels only.

Reading and writing classifiers with this table is :mod:`alphanet_fast.files.classifiers`;
features and labels, :mod:`alphanet_fast.files.data_files`.

Every problem with a user's file raises :class:`InputError` (a ``ValueError``)
with one line that names the file and what is wrong.
"""

from __future__ import annotations

import math
import os
import re
import stat
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alphanet_fast._errors import fail
from alphanet_fast.files._atomic import open_temp
from alphanet_fast.files._paths import note_input

__all__ = [
    "FORMATS",
    "Format",
    "InputError",
    "check_zip",
    "existing_file",
    "format_of",
    "not_regular",
    "npz_member_bytes",
    "listing",
    "one_line",
    "read_entries",
    "read_npy",
    "shape_text",
    "to_numpy",
]


class InputError(ValueError):
    """A user's file cannot be used: missing, unreadable, a missing key, a bad shape or value."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line of at most 200 characters (its type if empty)."""
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


_KINDS = (
    (stat.S_ISDIR, "is a directory"),
    (stat.S_ISFIFO, "is a FIFO (named pipe)"),
    (stat.S_ISCHR, "is a character device"),
    (stat.S_ISBLK, "is a block device"),
    (stat.S_ISSOCK, "is a socket"),
)


def not_regular(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not an existing regular file (links followed), or None if it is.

    Only ``stat`` is called: a FIFO is never opened, so no read blocks.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    if stat.S_ISREG(mode):
        return None
    kind = next((text for test, text in _KINDS if test(mode)), "is not a regular file")
    return f"{kind}, expected a regular file (save the data to a file first)"


def existing_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path, noted as an input of this process.

    Raises :class:`InputError` if it is missing or not a regular file: a
    directory, a FIFO (which could block for ever), a device such as
    ``/dev/zero`` (which never ends) or a socket is refused before it is opened.
    """
    p = Path(path)
    problem = not_regular(p)
    if problem is not None:
        raise InputError(f"{p}: {problem}")
    note_input(p)
    return p


def to_numpy(value: Any) -> Any:
    """A torch tensor as a numpy array (bfloat16 widened); anything else unchanged."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        t = value.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()  # numpy has no bfloat16
        return t.numpy()
    return value


def check_zip(path: Path) -> None:
    """Verify every member's CRC of a zip-based file (``.npz``, torch's format).

    Raises :class:`InputError` naming the first damaged member. Files that are
    not zips (torch's legacy format) are left to their reader.
    """
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except Exception as exc:  # a damaged directory: BadZipFile, OSError, EOFError ...
        raise InputError(f"{path}: damaged zip file ({one_line(exc)})") from None
    if bad is not None:
        raise InputError(f"{path}: entry {bad!r} is damaged (its CRC does not match)")


# --------------------------------------------------------------------------- readers


def _flatten(obj: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Leaves of nested dicts (torch checkpoints), keyed by their path of keys."""
    out: dict[tuple[str, ...], Any] = {}
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            out.update(_flatten(value, (*prefix, str(key))))
    else:
        out[prefix] = obj
    return out


def _load_torch(path: Path) -> Any:
    import pickle

    import torch

    check_zip(path)
    try:
        with warnings.catch_warnings():
            # A file of another pickle protocol: the load succeeds or fails with its reason.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is a paragraph; keep only the reason it names.
        text = " ".join(str(exc).split())
        found = re.search(r"WeightsUnpickler error: (.*?)(?: Please use| Check the|$)", text)
        reason = found.group(1).rstrip(". ") if found else one_line(exc)
        raise InputError(
            f"{path}: torch.load(weights_only=True) refused it ({reason}); expected a file "
            "of tensors such as a state dict"
        ) from None
    except Exception as exc:
        raise InputError(f"{path}: not a readable PyTorch file ({one_line(exc)})") from None


def _torch_entries(path: Path) -> dict[str, Any]:
    obj = _load_torch(path)
    if not isinstance(obj, Mapping):
        raise InputError(
            f"{path}: expected a dict of tensors (a state dict), found {type(obj).__name__}"
        )
    return {".".join(k): v for k, v in _flatten(obj).items()}


def _load_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, str] | None]:
    try:
        from safetensors import safe_open
    except ImportError:
        raise InputError(
            f"{path}: reading .safetensors files needs the safetensors package "
            "(pip install safetensors)"
        ) from None
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    except Exception as exc:
        raise InputError(f"{path}: not a readable safetensors file ({one_line(exc)})") from None


def npz_member_bytes(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> int:
    """The bytes a ``.npz`` member's ``.npy`` header says its array holds.

    Raises ``ValueError`` when the header is malformed, holds Python objects,
    or claims more (or less) than the member's size in the zip: checked before
    numpy allocates what a forged header asks for.
    """
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        readers = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }
        if version not in readers:
            raise ValueError(f"unsupported .npy version {version}")
        shape, _, dtype = readers[version](f)
        header_bytes = f.tell()
    if dtype.hasobject:
        raise ValueError("holds Python objects, which are never loaded")
    data_bytes = math.prod(shape) * dtype.itemsize
    if header_bytes + data_bytes != info.file_size:
        raise ValueError(
            f"its header claims shape {tuple(shape)} of {dtype} ({data_bytes:,} bytes), "
            f"but the entry holds {max(0, info.file_size - header_bytes):,} bytes"
        )
    return data_bytes


def _npz_entries(path: Path) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.filename.endswith(".npy"):
                    try:
                        npz_member_bytes(zf, info)
                    except Exception as exc:
                        name = info.filename.removesuffix(".npy")
                        raise InputError(f"{path}: entry {name!r}: {one_line(exc)}") from None
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npz file ({one_line(exc)})") from None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npz file ({one_line(exc)})") from None


def read_npy(path: Path, *, mmap: bool) -> np.ndarray:
    """A ``.npy`` array without pickles; a read-only memory map when ``mmap``.

    Read through a memory map either way, so a header claiming more than the
    file holds is an error before anything is allocated.
    """
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        return mapped if mmap else np.array(mapped)
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npy file ({one_line(exc)})") from None


# --------------------------------------------------------------------------- writers


def _fits(new: np.ndarray, top: float, dtype_name: str) -> None:
    """Refuse weights that the file's dtype cannot hold (they would be written as infinity)."""
    over = np.abs(np.asarray(new, dtype=np.float64)) > top  # float64: no overflow in compare
    rows = np.flatnonzero(over.reshape(over.shape[0], -1).any(axis=1))
    if rows.size:
        row = int(rows[0])
        raise fail("W", f"row {row} holds a value beyond the file's {dtype_name} range", row=row)


def _like(new: np.ndarray, old: Any) -> Any:
    """``new`` in the type and dtype of ``old`` (a numpy array or a torch tensor)."""
    if hasattr(old, "detach"):
        import torch

        if old.dtype.is_floating_point:
            _fits(new, torch.finfo(old.dtype).max, str(old.dtype).removeprefix("torch."))
        return torch.from_numpy(np.ascontiguousarray(new)).to(dtype=old.dtype)
    dtype = np.asarray(old).dtype
    if dtype.kind == "f":
        _fits(new, float(np.finfo(dtype).max), str(dtype))
    return np.ascontiguousarray(new, dtype=dtype)


def _write_npy(src: Path, updates: Mapping[str, np.ndarray], drop: Any, tmp: Path) -> None:
    W = updates[""]
    with open_temp(tmp) as f:  # a file object, so numpy adds no ".npy" to the name
        np.save(f, _like(W, read_npy(src, mmap=False)), allow_pickle=False)


def _updated(entries: dict[str, Any], updates: Mapping[str, np.ndarray], drop: Any) -> None:
    """``entries`` with ``drop`` removed and ``updates`` written (in the old entry's
    type and dtype; a new entry in the type and dtype of the first update's old one)."""
    first = next(iter(updates))
    for key in drop:
        entries.pop(key, None)
    for key, value in updates.items():
        entries[key] = _like(value, entries.get(key, entries[first]))


def _write_npz(src: Path, updates: Mapping[str, np.ndarray], drop: Any, tmp: Path) -> None:
    entries = _npz_entries(src)
    _updated(entries, updates, drop)
    with zipfile.ZipFile(src) as zf:
        compressed = any(i.compress_type != zipfile.ZIP_STORED for i in zf.infolist())
    save = np.savez_compressed if compressed else np.savez
    with open_temp(tmp) as f:  # a file object, so numpy adds no ".npz" to the name
        save(f, **entries)


def _write_safetensors(src: Path, updates: Mapping[str, np.ndarray], drop: Any, tmp: Path) -> None:
    from safetensors.torch import save

    tensors, metadata = _load_safetensors(src)
    _updated(tensors, updates, drop)
    with open_temp(tmp) as f:
        f.write(save(tensors, metadata=metadata))


def _write_torch(src: Path, updates: Mapping[str, np.ndarray], drop: Any, tmp: Path) -> None:
    import torch

    # Replace the leaves in a freshly loaded copy, keeping the nesting; a new entry
    # (biases the file did not have) goes beside the first update's (the weights).
    obj = _load_torch(src)
    leaves = {".".join(path): path for path in _flatten(obj)}
    first = next(iter(updates))
    if first not in leaves:
        raise InputError(f"{src}: entry {first!r} vanished from the source file")
    anchor = leaves[first]
    for key in drop:
        if key in leaves and len(leaves[key]) == 1:
            obj.pop(next(k for k in obj if str(k) == key))
    for key, value in updates.items():
        path = leaves.get(key)
        if path is None:  # beside the anchor: same parent, the rest of the dotted name
            stem = ".".join(anchor[:-1])
            path = (*anchor[:-1], key[len(stem) + 1 :] if stem else key)
        parent = obj
        for part in path[:-1]:
            parent = next(v for k, v in parent.items() if str(k) == part)
        real_key = next((k for k in parent if str(k) == path[-1]), path[-1])
        old = parent.get(real_key, _leaf(obj, anchor))
        parent[real_key] = _like(value, old)
    with open_temp(tmp) as f:
        torch.save(obj, f)


def _leaf(obj: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        obj = next(v for k, v in obj.items() if str(k) == part)
    return obj


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Format:
    """How one kind of file is recognised, read and written.

    Attributes
    ----------
    name : str
    suffixes : tuple of str
        Lower-case suffixes that select it.
    entries : callable or None
        ``entries(path) -> {name: array}`` for container formats (nested
        dicts flattened to dotted names); None for single arrays and text.
    write_weights : callable or None
        ``write_weights(src, updates, drop, tmp)``: ``src`` with each entry of
        ``updates`` (name -> array; the weights first) written in the old
        entry's type and dtype (a new entry takes the weights'), the entries
        named in ``drop`` left out, written to ``tmp``; None where a
        classifier cannot be stored. A ``.npy`` holds its one array, ``""``.
    """

    name: str
    suffixes: tuple[str, ...]
    entries: Callable[[Path], dict[str, Any]] | None
    write_weights: Callable[[Path, Mapping[str, np.ndarray], Any, Path], None] | None


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("npz", (".npz",), _npz_entries, _write_npz),
        Format("npy", (".npy",), None, _write_npy),
        Format("torch", (".pt", ".pth", ".bin", ".ckpt"), _torch_entries, _write_torch),
        Format(
            "safetensors",
            (".safetensors",),
            lambda p: _load_safetensors(p)[0],
            _write_safetensors,
        ),
        Format("text", (".txt", ".csv", ".tsv"), None, None),
    )
}


def format_of(path: str | os.PathLike[str]) -> Format:
    """The :class:`Format` of ``path`` by its suffix; :class:`InputError` for an unknown one."""
    p = Path(path)
    suffix = p.suffix.lower()
    for fmt in FORMATS.values():
        if suffix in fmt.suffixes:
            return fmt
    raise InputError(
        f"{p}: unknown file type {suffix or '(no suffix)'!r}; expected .npz, .npy, "
        ".pt/.pth, .safetensors (or .txt/.csv for labels)"
    )


def read_entries(path: Path) -> dict[str, Any]:
    """The named arrays of a container file (``.npz``, torch, safetensors)."""
    fmt = format_of(path)
    if fmt.entries is None:
        raise InputError(f"{path}: expected a container file (.npz, .pt/.pth, .safetensors)")
    if fmt.name == "npz":
        check_zip(path)
    return fmt.entries(path)


def listing(entries: Mapping[str, Any], limit: int = 8) -> str:
    """``features 10x3, labels 10``: the entries of a file with their shapes, for messages."""
    keys = list(entries)
    if not keys:
        return "nothing"
    shown = ", ".join(f"{k} {shape_text(entries[k])}" for k in keys[:limit])
    return shown + (f", ... ({len(keys)} entries)" if len(keys) > limit else "")


def shape_text(value: Any) -> str:
    """``10x3``, ``(scalar)`` or ``(list)``: a value's shape, for messages."""
    shape = getattr(value, "shape", None)
    if shape is None:
        return f"({type(value).__name__})"
    return "x".join(str(s) for s in shape) if len(shape) else "(scalar)"
