"""Reading features, labels and classifiers from users' files, and writing outputs safely.

Formats
-------
Features and labels
    ``.npz`` with keys ``features``/``labels`` (or ``X``/``y``, ``feats``,
    ``embeddings``, ``targets`` ...); ``.npy`` features (memory-mapped, never
    loaded whole) with the labels in a second file (``.npy``, ``.txt``,
    ``.csv``, or any of the container formats); PyTorch ``.pt``/``.pth``
    dicts and ``.safetensors`` files with the same keys.
Classifiers
    ``.npz`` (``weight``/``bias``, ``W``/``b``, ``coef_``/``intercept_``),
    ``.npy`` (weights only), PyTorch state dicts (``weight``/``bias``, also
    under a prefix such as ``fc.`` or ``head.``, at any depth of nested
    dicts; read with ``torch.load(..., weights_only=True)``) and
    ``.safetensors``. A corrected classifier is written in its input's
    format with every other entry of the file kept as it was.
Class names and groups
    Text files, one entry per line.

Every problem with a user's file raises :class:`InputError` (a
``ValueError``) with one line that names the file and what is wrong. Every
output is written to a temporary file in the target directory and renamed
into place, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from alphanet_fast._validation import int_array

__all__ = [
    "Classifier",
    "InputError",
    "atomic_write",
    "load_class_names",
    "load_classifier",
    "load_data",
    "load_lines",
    "save_classifier",
    "write_json",
    "write_text",
]

FEATURE_KEYS = ("features", "feats", "feature", "X", "x", "embeddings", "data", "inputs")
LABEL_KEYS = ("labels", "label", "y", "Y", "targets", "target")
# Weight name -> bias names, for files that are not torch state dicts.
WEIGHT_NAMES = {
    "weight": ("bias",),
    "W": ("b", "bias"),
    "weights": ("biases", "bias"),
    "w": ("b", "bias"),
    "coef_": ("intercept_",),
    "coef": ("intercept",),
}
# Module names that usually hold a network's final classifier; used only to
# break a tie between several candidate weight matrices.
HEAD_NAMES = {"fc", "head", "heads", "classifier", "linear", "last_linear", "logits", "cls", "out"}
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
_CHUNK_ROWS = 1 << 16


class InputError(ValueError):
    """A user's file cannot be used: missing, unreadable, a missing key, a bad shape or value."""


# --------------------------------------------------------------------------- reading


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    if suffix == ".npy":
        return "npy"
    if suffix in TORCH_SUFFIXES:
        return "torch"
    if suffix == ".safetensors":
        return "safetensors"
    if suffix in (".txt", ".csv", ".tsv"):
        return "text"
    raise InputError(
        f"{path}: unknown file type {suffix or '(no suffix)'!r}; expected .npz, .npy, "
        ".pt/.pth, .safetensors (or .txt/.csv for labels)"
    )


def _existing(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a file")
    return p


def _to_numpy(value: Any) -> Any:
    """A torch tensor as a numpy array (bfloat16 widened); anything else unchanged."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        t = value.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()  # numpy has no bfloat16
        return t.numpy()
    return value


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

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is a paragraph; keep only the reason it names.
        text = " ".join(str(exc).split())
        found = re.search(r"WeightsUnpickler error: (.*?)(?: Please use| Check the|$)", text)
        reason = found.group(1).rstrip(". ") if found else _one_line(exc)
        raise InputError(
            f"{path}: torch.load(weights_only=True) refused it ({reason}); expected a file "
            "of tensors such as a state dict"
        ) from None
    except Exception as exc:
        raise InputError(f"{path}: not a readable PyTorch file ({_one_line(exc)})") from None


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
        raise InputError(f"{path}: not a readable safetensors file ({_one_line(exc)})") from None


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npz file ({_one_line(exc)})") from None


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npy file ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


def _entries(path: Path) -> dict[str, Any]:
    """The named arrays of a container file, nested dicts flattened to dotted names."""
    fmt = _format_of(path)
    if fmt == "npz":
        return _load_npz(path)
    if fmt == "torch":
        obj = _load_torch(path)
        if not isinstance(obj, Mapping):
            raise InputError(
                f"{path}: expected a dict of tensors (a state dict), found {type(obj).__name__}"
            )
        return {".".join(k): v for k, v in _flatten(obj).items()}
    if fmt == "safetensors":
        return _load_safetensors(path)[0]
    raise InputError(f"{path}: expected a container file (.npz, .pt/.pth, .safetensors)")


def _pick(
    entries: Mapping[str, Any], path: Path, key: str | None, names: tuple[str, ...], what: str
):
    if key is not None:
        if key not in entries:
            raise InputError(f"{path}: no entry {key!r} (found: {_listing(entries)})")
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
        f"{path}: no {what} entry (looked for {', '.join(names[:4])}, ...; found: "
        f"{_listing(entries)})"
    )


def _listing(entries: Mapping[str, Any], limit: int = 8) -> str:
    keys = list(entries)
    if not keys:
        return "nothing"
    shown = ", ".join(f"{k} {_shape_text(entries[k])}" for k in keys[:limit])
    return shown + (f", ... ({len(keys)} entries)" if len(keys) > limit else "")


def _shape_text(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is None:
        return f"({type(value).__name__})"
    return "x".join(str(s) for s in shape) if len(shape) else "(scalar)"


def _labels_from(value: Any, source: str, n_rows: int | None) -> np.ndarray:
    value = _to_numpy(value)
    arr = np.asarray(value)
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
    arr = _to_numpy(value)
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


def load_data(
    path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str] | None = None,
    *,
    features_key: str | None = None,
    labels_key: str | None = None,
    labels_hint: str = "a labels file",
) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels from one file, or features and labels from two.

    Parameters
    ----------
    path : path-like
        ``.npz``, ``.pt``/``.pth`` or ``.safetensors`` with a features entry
        (``features``, ``feats``, ``X``, ``embeddings``, ...) and, unless
        ``labels_path`` is given, a labels entry (``labels``, ``y``,
        ``targets``, ...); or a ``.npy`` of features, opened as a read-only
        memory map.
    labels_path : path-like, optional
        A separate labels file: ``.npy``, ``.txt``/``.csv`` (one integer per
        line) or a container with a labels entry. Required for ``.npy``
        features.
    features_key, labels_key : str, optional
        Entry names, when the usual ones are absent or ambiguous.
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
        Missing or unreadable file, missing entry, non-numeric or non-2-d
        features, NaN or infinity (first bad row named), labels that are not
        integers, negative, or not one per row.
    """
    p = _existing(path)
    fmt = _format_of(p)
    entries: dict[str, Any] = {}
    if fmt == "npy":
        features = _load_npy(p, mmap=True)
        source = str(p)
    elif fmt == "text":
        raise InputError(f"{p}: features must be .npz, .npy, .pt/.pth or .safetensors, not text")
    else:
        entries = _entries(p)
        fkey = _pick(entries, p, features_key, FEATURE_KEYS, "features")
        features = entries[fkey]
        source = f"{p} [{fkey}]"
    features = _features_from(features, source)

    if labels_path is None:
        if fmt == "npy":
            raise InputError(f"{p}: a .npy file holds only the features; give {labels_hint} too")
        lkey = _pick(entries, p, labels_key, LABEL_KEYS, "labels")
        return features, _labels_from(entries[lkey], f"{p} [{lkey}]", features.shape[0])
    return features, load_labels(labels_path, n_rows=features.shape[0], labels_key=labels_key)


def load_labels(
    path: str | os.PathLike[str], *, n_rows: int | None = None, labels_key: str | None = None
) -> np.ndarray:
    """Integer labels from ``.npy``, ``.txt``/``.csv`` (one per line) or a container file.

    Raises :class:`InputError` for a missing file or entry, non-integer or
    negative labels, or a count other than ``n_rows``.
    """
    p = _existing(path)
    fmt = _format_of(p)
    if fmt == "npy":
        return _labels_from(_load_npy(p, mmap=False), str(p), n_rows)
    if fmt == "text":
        try:
            values = np.loadtxt(
                p, dtype=np.float64, delimiter="," if p.suffix == ".csv" else None, ndmin=1
            )
        except Exception as exc:
            raise InputError(
                f"{p}: expected one integer label per line ({_one_line(exc)})"
            ) from None
        return _labels_from(values, str(p), n_rows)
    entries = _entries(p)
    key = _pick(entries, p, labels_key, LABEL_KEYS, "labels")
    return _labels_from(entries[key], f"{p} [{key}]", n_rows)


def load_lines(
    path: str | os.PathLike[str], *, n: int | None = None, what: str = "lines"
) -> list[str]:
    """The lines of a UTF-8 text file, stripped; ``n`` of them if given.

    Trailing blank lines are ignored; a blank line in between is an error.
    """
    p = _existing(path)
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


def load_class_names(path: str | os.PathLike[str], n_classes: int | None = None) -> list[str]:
    """Class names, one per line, in class-id order; ``n_classes`` of them if given."""
    return load_lines(path, n=n_classes, what="class names")


@dataclass
class Classifier:
    """A linear classifier read from a file, with what is needed to write it back.

    Attributes
    ----------
    W : ndarray, shape (C, d)
        The weights, as float32 or float64 (float16/bfloat16 are widened to
        float32).
    b : ndarray, shape (C,), or None
    path : Path
        The file it was read from.
    format : str
        "npz", "npy", "torch" or "safetensors".
    weight_key, bias_key : str or None
        The entries holding the weights and biases (dotted names for nested
        torch checkpoints).
    """

    W: np.ndarray
    b: np.ndarray | None
    path: Path
    format: str
    weight_key: str | None
    bias_key: str | None

    @property
    def n_classes(self) -> int:
        return int(self.W.shape[0])

    @property
    def suffix(self) -> str:
        """The file suffix outputs in this format get."""
        return self.path.suffix

    def describe(self) -> str:
        """``model.pt [fc.weight 1000x512]``: the file and entry, for messages."""
        key = f"{self.weight_key} " if self.weight_key else ""
        return f"{self.path} [{key}{self.W.shape[0]}x{self.W.shape[1]}]"


def _bias_names(weight_key: str) -> list[str]:
    if weight_key in WEIGHT_NAMES:
        return list(WEIGHT_NAMES[weight_key])
    head, _, last = weight_key.rpartition(".")
    if last in WEIGHT_NAMES:
        return [f"{head}.{b}" for b in WEIGHT_NAMES[last]]
    return []


def _is_weight_name(key: str) -> bool:
    return key in WEIGHT_NAMES or key.rpartition(".")[2] in ("weight", "W", "weights")


def _float_2d(value: Any) -> bool:
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    return shape is not None and len(shape) == 2 and "float" in str(dtype)


def _find_weight(
    entries: Mapping[str, Any], path: Path, weight_key: str | None, dim: int | None
) -> str:
    if weight_key is not None:
        stem = weight_key.rstrip(".")
        if weight_key in entries:
            hits = [weight_key]
        else:
            # A prefix ("fc", "fc.") or a name inside a nested checkpoint ("state_dict.fc.weight").
            names = (stem, f"{stem}.weight", f"{stem}.W")
            hits = [k for k in entries if any(k == n or k.endswith("." + n) for n in names)]
        if len(hits) > 1:
            raise InputError(f"{path}: weight key {weight_key!r} matches {', '.join(hits[:6])}")
        if hits:
            key = hits[0]
            if not _float_2d(entries[key]):
                raise InputError(
                    f"{path}: entry {key!r} is not a 2-d float matrix "
                    f"(found {_shape_text(entries[key])})"
                )
            return key
        raise InputError(
            f"{path}: no weight entry {weight_key!r} (2-d entries: "
            f"{_listing({k: v for k, v in entries.items() if _float_2d(v)})})"
        )
    candidates = [k for k, v in entries.items() if _is_weight_name(k) and _float_2d(v)]
    if not candidates:
        raise InputError(
            f"{path}: no classifier weight entry (looked for weight, W, <prefix>.weight; "
            f"found: {_listing(entries)})"
        )
    if dim is not None:
        fitting = [k for k in candidates if entries[k].shape[1] == dim]
        if not fitting:
            shapes = ", ".join(f"{k} {_shape_text(entries[k])}" for k in candidates[:6])
            raise InputError(
                f"{path}: no weight matrix has {dim} columns (the features' dimension); "
                f"found {shapes}"
            )
        candidates = fitting
    if len(candidates) > 1:
        heads = [k for k in candidates if k.rpartition(".")[0].rpartition(".")[2] in HEAD_NAMES]
        if len(heads) == 1:
            return heads[0]
        shown = ", ".join(f"{k} {_shape_text(entries[k])}" for k in candidates[:6])
        more = f", ... ({len(candidates)} in all)" if len(candidates) > 6 else ""
        raise InputError(
            f"{path}: several candidate classifier weights ({shown}{more}); pick one with "
            "the weight key option (--weight-key)"
        )
    return candidates[0]


def load_classifier(
    path: str | os.PathLike[str], *, weight_key: str | None = None, dim: int | None = None
) -> Classifier:
    """A linear classifier's weights and biases from .npz, .npy, torch or safetensors files.

    Parameters
    ----------
    path : path-like
        The file. Torch files are read with ``torch.load(weights_only=True)``
        on the CPU; nested dicts (``{"state_dict": {...}}``) are searched too.
    weight_key : str, optional
        The weight entry (``"fc.weight"``) or its prefix (``"fc"``, ``"fc."``);
        needed only when several entries could be the classifier.
    dim : int, optional
        The features' dimension: weight matrices with another column count are
        not candidates.

    Returns
    -------
    Classifier

    Raises
    ------
    InputError
        Missing or unreadable file, no (or more than one) candidate weight
        entry, a bias whose length is not the weight's row count, NaN or
        infinity in the weights.
    """
    p = _existing(path)
    fmt = _format_of(p)
    if fmt == "text":
        raise InputError(f"{p}: a classifier must be .npz, .npy, .pt/.pth or .safetensors")
    if fmt == "npy":
        entries: dict[str, Any] = {"": _load_npy(p, mmap=False)}
        wkey: str = ""
        if not _float_2d(entries[""]):
            raise InputError(
                f"{p}: expected a 2-d float weight matrix, found {_shape_text(entries[''])}"
            )
        if dim is not None and entries[""].shape[1] != dim:
            raise InputError(
                f"{p}: the weights have {entries[''].shape[1]} columns but the features have {dim}"
            )
    else:
        entries = _entries(p)
        wkey = _find_weight(entries, p, weight_key, dim)
    W = _to_numpy(entries[wkey])
    if W.dtype == np.float16:
        W = W.astype(np.float32)
    W = np.ascontiguousarray(W)
    if not np.isfinite(W).all():
        row = int(np.flatnonzero(~np.isfinite(W).all(axis=1))[0])
        raise InputError(f"{p} [{wkey}]: row {row} contains NaN or infinity")
    bkey = next((k for k in _bias_names(wkey) if k in entries), None) if wkey else None
    b = None
    if bkey is not None:
        b = np.asarray(_to_numpy(entries[bkey]))
        if b.ndim != 1 or b.shape[0] != W.shape[0]:
            raise InputError(
                f"{p} [{bkey}]: expected {W.shape[0]} biases (one per weight row), "
                f"found shape {b.shape}"
            )
        if b.dtype.kind != "f":
            raise InputError(f"{p} [{bkey}]: expected float biases, found dtype {b.dtype}")
        b = np.ascontiguousarray(b, dtype=W.dtype)
        if not np.isfinite(b).all():
            raise InputError(
                f"{p} [{bkey}]: entry {int(np.flatnonzero(~np.isfinite(b))[0])} is NaN or infinity"
            )
    return Classifier(W=W, b=b, path=p, format=fmt, weight_key=wkey or None, bias_key=bkey)


# --------------------------------------------------------------------------- writing


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    The parent directory is created if needed. On an exception the temporary
    file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); give it the usual umask-based mode.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) atomically; returns the path."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented, strict JSON (NaN is an error) atomically; returns the path."""
    return write_text(
        path, json.dumps(data, indent=2, allow_nan=False, default=_json_default) + "\n"
    )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def _write_with(path: Path, writer: Callable[[Path], None]) -> Path:
    with atomic_write(path) as tmp:
        writer(tmp)
    return path


def _like(new: np.ndarray, old: Any) -> Any:
    """``new`` in the type and dtype of ``old`` (a numpy array or a torch tensor)."""
    if hasattr(old, "detach"):
        import torch

        return torch.from_numpy(np.ascontiguousarray(new)).to(dtype=old.dtype)
    return np.ascontiguousarray(new, dtype=np.asarray(old).dtype)


def save_classifier(classifier: Classifier, W: Any, path: str | os.PathLike[str]) -> Path:
    """Write new weights ``W`` in ``classifier``'s file format, keeping the file's other entries.

    The source file is read again and only the weight entry is replaced,
    keeping its dtype; biases (which AlphaNet never changes) and every other
    entry stay as they were; torch checkpoints keep their nesting,
    safetensors files their metadata, ``.npz`` files their compression.

    Parameters
    ----------
    classifier : Classifier
        What :func:`load_classifier` returned for the source file.
    W : array_like, shape (C, d)
        The new weights.
    path : path-like
        Where to write; its suffix must suit the format (``.npz``, ``.npy``,
        ``.pt``/``.pth``, ``.safetensors``).

    Returns
    -------
    Path

    Raises
    ------
    InputError
        A suffix that does not match the format, ``path`` equal to the source
        file, or ``W`` of another shape than the source's weights.
    """
    out = Path(path)
    W = np.asarray(W)
    if W.shape != classifier.W.shape:
        raise InputError(
            f"W: expected shape {classifier.W.shape} (as {classifier.describe()}), found {W.shape}"
        )
    try:
        fmt = _format_of(out)
    except InputError:
        fmt = "?"
    if fmt != classifier.format:
        raise InputError(
            f"{out}: the corrected classifier is written in its input's format; use a "
            f"{classifier.suffix} name"
        )
    if out.exists() and out.resolve() == classifier.path.resolve():
        raise InputError(f"{out}: would overwrite the input classifier; choose another output name")

    src, wkey = classifier.path, classifier.weight_key or ""
    if fmt == "npy":
        old = _load_npy(src, mmap=False)
        return _write_with(out, lambda tmp: _save_npy(tmp, _like(W, old)))
    if fmt == "npz":
        entries = _load_npz(src)
        entries[wkey] = _like(W, entries[wkey])
        with zipfile.ZipFile(src) as zf:
            compressed = any(i.compress_type != zipfile.ZIP_STORED for i in zf.infolist())
        save = np.savez_compressed if compressed else np.savez
        return _write_with(out, lambda tmp: _save_npz(tmp, save, entries))
    if fmt == "safetensors":
        from safetensors.torch import save_file

        tensors, metadata = _load_safetensors(src)
        tensors[wkey] = _like(W, tensors[wkey])
        return _write_with(out, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    # torch: replace the leaves in place of a freshly loaded copy, keeping the nesting.
    import torch

    obj = _load_torch(src)
    _set_leaf(obj, wkey, W)
    return _write_with(out, lambda tmp: torch.save(obj, tmp))


def _set_leaf(obj: Any, dotted: str, value: np.ndarray) -> None:
    """Replace the leaf that :func:`_flatten` named ``dotted`` (keys may contain dots)."""
    for path, old in _flatten(obj).items():
        if ".".join(path) == dotted:
            parent = obj
            for key in path[:-1]:
                parent = _child(parent, key)
            real_key = next(k for k in parent if str(k) == path[-1])
            parent[real_key] = _like(value, old)
            return
    raise InputError(f"entry {dotted!r} vanished from the source file")


def _child(parent: Mapping[Any, Any], key: str) -> Any:
    return next(v for k, v in parent.items() if str(k) == key)


def _save_npy(tmp: Path, arr: np.ndarray) -> None:
    with open(tmp, "wb") as f:  # a file object, so numpy adds no ".npy" to the name
        np.save(f, arr, allow_pickle=False)


def _save_npz(tmp: Path, save: Callable[..., None], entries: dict[str, np.ndarray]) -> None:
    with open(tmp, "wb") as f:  # a file object, so numpy adds no ".npz" to the name
        save(f, **entries)
