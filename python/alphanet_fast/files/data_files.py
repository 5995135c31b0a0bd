"""Features and labels from users' files, and the small text files around them.

Features and labels
    ``.npz``, PyTorch ``.pt``/``.pth`` dicts and ``.safetensors`` files with a
    features entry and a labels entry (the accepted names are
    :data:`FEATURE_KEYS` and :data:`LABEL_KEYS`; with ``split="train"`` also
    ``train_x``, ``x_train``, ``train_features`` ... see :func:`split_keys`),
    or any names given as ``features_key``/``labels_key``; or a ``.npy`` of
    features (memory-mapped, never loaded whole) with the labels in a second
    file (``.npy``, ``.txt``, ``.csv``, or any container).
Class names, groups, neighbours
    Text files, one entry per line; an integer matrix for neighbours.

Every problem raises :class:`~alphanet_fast.files.formats.InputError` (a
``ValueError``) with one line that names the file and what is wrong.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from alphanet_fast._validation import int_array
from alphanet_fast.files.formats import (
    InputError,
    existing_file,
    format_of,
    listing,
    one_line,
    read_entries,
    read_npy,
    to_numpy,
)

__all__ = [
    "FEATURE_KEYS",
    "LABEL_KEYS",
    "SPLIT_NAMES",
    "InputError",
    "CLASS_NAMES_ENTRY",
    "class_names_of",
    "load_class_names",
    "load_data",
    "load_labels",
    "load_lines",
    "load_neighbors",
    "split_keys",
]

FEATURE_KEYS = ("features", "feats", "feature", "X", "x", "embeddings", "data", "inputs")
LABEL_KEYS = ("labels", "label", "y", "Y", "targets", "target")
SPLIT_NAMES = ("train", "val", "test")
# The stems a bundled file uses after or before its split's name: train_x, x_train, ...
_SPLIT_FEATURE_STEMS = ("x", "X", "features", "feats", "embeddings")
_SPLIT_LABEL_STEMS = ("y", "Y", "labels", "targets")
_CHUNK_ROWS = 1 << 16


def split_keys(split: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The features and labels entry names accepted for one split of a bundled file.

    Parameters
    ----------
    split : str
        "train", "val" or "test".

    Returns
    -------
    features, labels : tuple of str
        ``train_x, x_train, train_X, X_train, train_features, ...`` and
        ``train_y, y_train, ..., train_labels, labels_train, ...``.

    Examples
    --------
    >>> split_keys("val")[1][:4]
    ('val_y', 'y_val', 'val_Y', 'Y_val')
    """
    if split not in SPLIT_NAMES:
        raise ValueError(f"split: expected one of {SPLIT_NAMES}, found {split!r}")

    def names(stems: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(n for s in stems for n in (f"{split}_{s}", f"{s}_{split}"))

    return names(_SPLIT_FEATURE_STEMS), names(_SPLIT_LABEL_STEMS)


def _pick(
    entries: Mapping[str, Any], path: Path, key: str | None, names: tuple[str, ...], what: str
) -> str:
    if key is not None:
        if key not in entries:
            raise InputError(f"{path}: no entry {key!r} (found: {listing(entries)})")
        return key
    # Exact names first, then names under a prefix ("data.features").
    for name in names:
        if name in entries:
            return name
    for name in names:
        hits = [k for k in entries if k.endswith("." + name)]
        if len(hits) == 1:
            return hits[0]
    raise InputError(
        f"{path}: no {what} entry (looked for {', '.join(names)}; found: {listing(entries)}); "
        f"name it with the {what} key option"
    )


def _labels_from(value: Any, source: str, n_rows: int | None) -> np.ndarray:
    arr = np.asarray(to_numpy(value))
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    try:
        labels = int_array(arr, "labels")
    except (TypeError, ValueError) as exc:
        raise InputError(f"{source}: {exc}") from None
    if n_rows is not None and labels.shape[0] != n_rows:
        raise InputError(
            f"{source}: {labels.shape[0]} labels for {n_rows} feature rows; they must match"
        )
    negative = np.flatnonzero(labels < 0)
    if negative.size:
        i = int(negative[0])
        raise InputError(f"{source}: label {i} is {labels[i]}; labels must be non-negative")
    return labels


def _features_from(value: Any, source: str) -> np.ndarray:
    arr = to_numpy(value)
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{source}: expected an array, found {type(arr).__name__}")
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{source}: expected numbers, found dtype {arr.dtype}")
    if arr.ndim != 2:
        raise InputError(f"{source}: expected a 2-d array (rows x dims), found shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{source}: expected a non-empty array, found shape {arr.shape}")
    if arr.dtype.kind == "f":
        # Chunked, so a memory-mapped file is checked without loading it whole.
        for start in range(0, arr.shape[0], _CHUNK_ROWS):
            bad = ~np.isfinite(arr[start : start + _CHUNK_ROWS]).all(axis=1)
            if bad.any():
                row = start + int(np.flatnonzero(bad)[0])
                raise InputError(f"{source}: row {row} contains NaN or infinity")
    return arr


def _key_names(split: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if split is None:
        return FEATURE_KEYS, LABEL_KEYS
    fkeys, lkeys = split_keys(split)
    return (*FEATURE_KEYS, *fkeys), (*LABEL_KEYS, *lkeys)


def load_data(
    path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str] | None = None,
    *,
    features_key: str | None = None,
    labels_key: str | None = None,
    split: str | None = None,
    labels_hint: str = "a labels file",
) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels from one file, or features and labels from two.

    Parameters
    ----------
    path : path-like
        ``.npz``, ``.pt``/``.pth`` or ``.safetensors`` with a features entry
        and, unless ``labels_path`` is given, a labels entry (names in
        :data:`FEATURE_KEYS`, :data:`LABEL_KEYS`); or a ``.npy`` of features,
        opened as a read-only memory map.
    labels_path : path-like, optional
        A separate labels file: ``.npy``, ``.txt``/``.csv`` (one integer per
        line) or a container with a labels entry. Required for ``.npy``
        features.
    features_key, labels_key : str, optional
        Entry names, when the usual ones are absent or ambiguous.
    split : {"train", "val", "test"}, optional
        The set a bundled file is read for: after the usual names, its own
        entries (``train_x``, ``x_train``, ``train_features``, ...; see
        :func:`split_keys`) are looked for.
    labels_hint : str
        How the caller names the labels input, for the error message when it
        is missing (the CLI passes its option name).

    Returns
    -------
    features : ndarray, shape (n, d)
        As stored (float16/32/64 or integers); a memory map for ``.npy``.
    labels : ndarray of int64, shape (n,)

    Raises
    ------
    InputError
        Missing or unreadable file, missing entry (every accepted name is
        listed), non-numeric or non-2-d features, NaN or infinity (first bad
        row named), labels that are not integers, negative, or not one per row.
    """
    p = existing_file(path)
    fmt = format_of(p)
    fnames, lnames = _key_names(split)
    entries: dict[str, Any] = {}
    if fmt.name == "npy":
        features, source = read_npy(p, mmap=True), str(p)
    elif fmt.entries is None:
        raise InputError(f"{p}: features must be .npz, .npy, .pt/.pth or .safetensors, not text")
    else:
        entries = read_entries(p)
        fkey = _pick(entries, p, features_key, fnames, "features")
        features, source = entries[fkey], f"{p} [{fkey}]"
    features = _features_from(features, source)

    if labels_path is None:
        if fmt.name == "npy":
            raise InputError(f"{p}: a .npy file holds only the features; give {labels_hint} too")
        lkey = _pick(entries, p, labels_key, lnames, "labels")
        return features, _labels_from(entries[lkey], f"{p} [{lkey}]", features.shape[0])
    return features, load_labels(
        labels_path, n_rows=features.shape[0], labels_key=labels_key, split=split
    )


def load_labels(
    path: str | os.PathLike[str],
    *,
    n_rows: int | None = None,
    labels_key: str | None = None,
    split: str | None = None,
) -> np.ndarray:
    """Integer labels from ``.npy``, ``.txt``/``.csv`` (one per line) or a container file.

    Raises :class:`InputError` for a missing file or entry, non-integer or
    negative labels, or a count other than ``n_rows``.
    """
    p = existing_file(path)
    fmt = format_of(p)
    if fmt.name == "npy":
        return _labels_from(read_npy(p, mmap=False), str(p), n_rows)
    if fmt.name == "text":
        try:
            values = _loadtxt(
                p, dtype=np.float64, delimiter="," if p.suffix == ".csv" else None, ndmin=1
            )
        except InputError:
            raise
        except Exception as exc:
            raise InputError(
                f"{p}: expected one integer label per line ({one_line(exc)})"
            ) from None
        return _labels_from(values, str(p), n_rows)
    entries = read_entries(p)
    key = _pick(entries, p, labels_key, _key_names(split)[1], "labels")
    return _labels_from(entries[key], f"{p} [{key}]", n_rows)


def _loadtxt(path: Path, **kwargs: Any) -> np.ndarray:
    """``np.loadtxt`` with an empty file an :class:`InputError` (numpy only warns)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*input contained no data")
        values = np.loadtxt(path, **kwargs)
    if values.size == 0:
        raise InputError(f"{path}: empty, expected one entry per line")
    return values


def load_lines(
    path: str | os.PathLike[str], *, n: int | None = None, what: str = "lines"
) -> list[str]:
    """The lines of a UTF-8 text file, stripped; ``n`` of them if given.

    Trailing blank lines are ignored; a blank line in between is an error.
    """
    p = existing_file(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{p}: not a UTF-8 text file") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise InputError(f"{p}: empty, expected one entry per line")
    if "" in lines:
        raise InputError(f"{p}: line {lines.index('') + 1} is blank; expected one entry per line")
    if n is not None and len(lines) != n:
        raise InputError(f"{p}: {len(lines)} {what} for {n} classes; expected one per class")
    return lines


CLASS_NAMES_ENTRY = "class_names"
_CLASS_NAMES_EXPECTED = (
    "expected a UTF-8 text file with one class name per line, or FILE.npz:ENTRY (also .pt) "
    "naming an array of strings in a data file"
)


def _entry_reference(path: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """``FILE:ENTRY`` split into the file and the entry (``None`` for a plain path)."""
    p = Path(path)
    if p.exists() or ":" not in p.name:
        return p, None
    file_part, _, key = str(p).rpartition(":")
    return Path(file_part), key


def _is_container(p: Path) -> bool:
    try:
        return format_of(p).entries is not None
    except InputError:  # no known suffix: a text file
        return False


def _strings(value: Any, source: str) -> list[str]:
    """An entry as a list of strings: a 1-d array of str or UTF-8 bytes, or a list of str."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value]
    arr = np.asarray(to_numpy(value))
    if arr.ndim != 1 or arr.dtype.kind not in "US":
        raise InputError(
            f"{source}: expected a 1-d array of strings, found dtype {arr.dtype} "
            f"of shape {arr.shape}; {_CLASS_NAMES_EXPECTED}"
        )
    try:
        return [v.decode("utf-8").strip() if arr.dtype.kind == "S" else str(v).strip() for v in arr]
    except UnicodeDecodeError:
        raise InputError(f"{source}: the names are not UTF-8") from None


def _class_names_entry(p: Path, key: str) -> list[str]:
    fmt = format_of(p)
    if fmt.entries is None:
        raise InputError(f"{p}: an entry needs a .npz or .pt file; {_CLASS_NAMES_EXPECTED}")
    if fmt.name == "npz":  # read just the one entry
        try:
            with np.load(p, allow_pickle=False) as z:
                entries = {key: z[key]} if key in z.files else {k: z[k] for k in z.files}
        except Exception as exc:
            raise InputError(f"{p}: not a readable .npz file ({one_line(exc)})") from None
    else:
        entries = read_entries(p)
    if key not in entries:
        raise InputError(f"{p}: no entry {key!r} (found: {listing(entries)})")
    return _strings(entries[key], f"{p} [{key}]")


def load_class_names(path: str | os.PathLike[str], n_classes: int | None = None) -> list[str]:
    """Class names in class-id order; ``n_classes`` of them if given.

    ``path`` is a UTF-8 text file with one name per line, or ``FILE:ENTRY``
    naming an array of strings in a ``.npz`` (or a list of strings in a
    ``.pt``) file, such as ``data.npz:class_names``.

    Raises
    ------
    InputError
        A missing file or entry, a file that is neither (its message says what
        is expected), blank names, or a count other than ``n_classes``.
    """
    source, key = _entry_reference(path)
    if key is None and _is_container(source) and source.exists():
        key = CLASS_NAMES_ENTRY  # a data file given as it is: its class_names entry
    if key is not None:
        names = _class_names_entry(existing_file(source), key)
        where = f"{source} [{key}]"
        if any(not n for n in names):
            raise InputError(f"{where}: name {names.index('') + 1} is blank")
        if n_classes is not None and len(names) != n_classes:
            raise InputError(
                f"{where}: {len(names)} class names for {n_classes} classes; expected one per class"
            )
        return names
    try:
        return load_lines(source, n=n_classes, what="class names")
    except InputError as exc:
        if "UTF-8" not in str(exc):
            raise
        raise InputError(f"{source}: not a UTF-8 text file; {_CLASS_NAMES_EXPECTED}") from None


def class_names_of(path: str | os.PathLike[str], n_classes: int) -> list[str] | None:
    """The ``class_names`` entry of a ``.npz`` data file, or None when it has none.

    Only ``.npz`` files are looked into (their entries are read one by one);
    other files give None. A ``class_names`` entry that is there but unusable
    is an error, as with ``--class-names``.
    """
    p = Path(path)
    if format_of(p).name != "npz":
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            present = CLASS_NAMES_ENTRY in z.files
    except Exception:
        return None  # the data loader has already read (or refused) this file
    return load_class_names(f"{p}:{CLASS_NAMES_ENTRY}", n_classes) if present else None


def load_neighbors(path: str | os.PathLike[str]) -> np.ndarray:
    """An integer matrix of neighbours (``.npy``, or text with one row per line) as int64.

    Raises :class:`InputError` for a missing or malformed file, or values that
    are not integers.
    """
    p = existing_file(path)
    try:
        nb = read_npy(p, mmap=False) if p.suffix == ".npy" else _loadtxt(p, ndmin=2)
    except InputError:
        raise
    except Exception as exc:  # numpy raises several kinds for a malformed file
        raise InputError(f"{p}: not an integer matrix ({one_line(exc)})") from None
    if nb.ndim != 2 or nb.dtype.kind not in "iuf" or not np.array_equal(nb, np.round(nb)):
        raise InputError(f"{p}: expected a 2-d integer matrix, found shape {nb.shape}")
    if nb.dtype.kind == "f" and nb.size and np.abs(nb).max() >= 2**63:
        raise InputError(f"{p}: entries too large for class ids")
    return nb.astype(np.int64)
