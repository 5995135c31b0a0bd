"""A linear classifier read from a user's file, and written back in the same format.

A classifier is ``weight``/``bias``, ``W``/``b`` or ``coef_``/``intercept_``
in a ``.npz`` or safetensors file, a ``.npy`` of weights only, or a PyTorch
state dict (also under a prefix such as ``fc.`` or ``head.``, at any depth of
nested dicts). A corrected classifier is written in its input's format with
every other entry of the file kept as it was. Formats are those of
:data:`alphanet_fast.files.formats.FORMATS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alphanet_fast.files._atomic import atomic_write
from alphanet_fast.files._paths import same_file
from alphanet_fast.files.data_files import FEATURE_KEYS, LABEL_KEYS, SPLIT_NAMES, split_keys
from alphanet_fast.files.formats import (
    InputError,
    existing_file,
    format_of,
    listing,
    read_entries,
    read_npy,
    shape_text,
    to_numpy,
)

__all__ = ["Classifier", "InputError", "load_classifier", "save_classifier"]

# Weight name -> bias names, for files that are not torch state dicts.
WEIGHT_NAMES = {
    "weight": ("bias",),
    "W": ("b", "bias"),
    "weights": ("biases", "bias"),
    "w": ("b", "bias"),
    "coef_": ("intercept_",),
    "coef": ("intercept",),
}
#: Entry names of data (features and labels, of any split) that a classifier file
#: written from a bundled data file leaves out: the names :func:`load_data` accepts.
DATA_ENTRY_NAMES = frozenset(
    (*FEATURE_KEYS, *LABEL_KEYS, *(n for s in SPLIT_NAMES for keys in split_keys(s) for n in keys))
)
# Module names that usually hold a network's final classifier; used only to
# break a tie between several candidate weight matrices.
HEAD_NAMES = {"fc", "head", "heads", "classifier", "linear", "last_linear", "logits", "cls", "out"}


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
    data_entries : tuple of str
        Top-level entries of the file that hold data, not the classifier
        (features and labels under the names of :data:`DATA_ENTRY_NAMES`,
        e.g. ``train_x``, ``val_y``): a classifier written from this one
        leaves them out.
    """

    W: np.ndarray
    b: np.ndarray | None
    path: Path
    format: str
    weight_key: str | None
    bias_key: str | None
    data_entries: tuple[str, ...] = ()

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


def _named_weight(entries: Mapping[str, Any], path: Path, weight_key: str) -> str:
    stem = weight_key.rstrip(".")
    if weight_key in entries:
        hits = [weight_key]
    else:
        # A prefix ("fc", "fc.") or a name inside a nested checkpoint ("state_dict.fc.weight").
        names = (stem, f"{stem}.weight", f"{stem}.W")
        hits = [k for k in entries if any(k == n or k.endswith("." + n) for n in names)]
    if len(hits) > 1:
        raise InputError(f"{path}: weight key {weight_key!r} matches {', '.join(hits[:6])}")
    if not hits:
        raise InputError(
            f"{path}: no weight entry {weight_key!r} (2-d entries: "
            f"{listing({k: v for k, v in entries.items() if _float_2d(v)})})"
        )
    key = hits[0]
    if not _float_2d(entries[key]):
        raise InputError(
            f"{path}: entry {key!r} is not a 2-d float matrix (found {shape_text(entries[key])})"
        )
    return key


def _transposed_hint(shape: tuple[int, ...], dim: int) -> str:
    if shape[0] == dim and shape[1] != dim:
        return f"; W has shape ({shape[0]}, {shape[1]}): did you pass its transpose?"
    return ""


def _find_weight(
    entries: Mapping[str, Any], path: Path, weight_key: str | None, dim: int | None
) -> str:
    if weight_key is not None:
        return _named_weight(entries, path, weight_key)
    candidates = [k for k, v in entries.items() if _is_weight_name(k) and _float_2d(v)]
    if not candidates:
        named = [k for k, v in entries.items() if _is_weight_name(k) and hasattr(v, "dtype")]
        if named:
            value = entries[named[0]]
            raise InputError(
                f"{path}: entry {named[0]!r} ({shape_text(value)}, dtype {value.dtype}) is not "
                "a 2-d float matrix; expected the classifier's float weights"
            )
        raise InputError(
            f"{path}: no classifier weight entry (looked for 2-d float entries named weight, "
            f"W, weights, w, coef_, coef or <prefix>.weight; found: {listing(entries)})"
        )
    if dim is not None:
        fitting = [k for k in candidates if entries[k].shape[1] == dim]
        if not fitting:
            shapes = ", ".join(f"{k} {shape_text(entries[k])}" for k in candidates[:6])
            hint = _transposed_hint(tuple(entries[candidates[0]].shape), dim)
            raise InputError(
                f"{path}: no weight matrix has {dim} columns (the features' dimension); "
                f"found {shapes}{hint}"
            )
        candidates = fitting
    if len(candidates) > 1:
        heads = [k for k in candidates if k.rpartition(".")[0].rpartition(".")[2] in HEAD_NAMES]
        if len(heads) == 1:
            return heads[0]
        shown = ", ".join(f"{k} {shape_text(entries[k])}" for k in candidates[:6])
        more = f", ... ({len(candidates)} in all)" if len(candidates) > 6 else ""
        raise InputError(
            f"{path}: several candidate classifier weights ({shown}{more}); pick one with "
            "the weight key option (--weight-key)"
        )
    return candidates[0]


def _npy_weights(p: Path, dim: int | None) -> dict[str, Any]:
    W = read_npy(p, mmap=False)
    if not _float_2d(W):
        raise InputError(f"{p}: expected a 2-d float weight matrix, found {shape_text(W)}")
    if dim is not None and W.shape[1] != dim:
        raise InputError(
            f"{p}: the weights have {W.shape[1]} columns but the features have {dim}"
            + _transposed_hint(W.shape, dim)
        )
    return {"": W}


def _checked_bias(p: Path, bkey: str, value: Any, W: np.ndarray) -> np.ndarray:
    b = np.asarray(to_numpy(value))
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
    return b


def load_classifier(
    path: str | os.PathLike[str], *, weight_key: str | None = None, dim: int | None = None
) -> Classifier:
    """A linear classifier's weights and biases from .npz, .npy, torch or safetensors files.

    Parameters
    ----------
    path : path-like
        The file. Torch files are read with ``torch.load(weights_only=True)``
        on the CPU after their zip CRCs are checked; nested dicts
        (``{"state_dict": {...}}``) are searched too.
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
        Missing, unreadable or damaged file, no (or more than one) candidate
        weight entry, a transposed matrix (with a hint), a bias whose length is
        not the weight's row count, NaN or infinity in the weights.
    """
    p = existing_file(path)
    fmt = format_of(p)
    if fmt.write_weights is None:
        raise InputError(f"{p}: a classifier must be .npz, .npy, .pt/.pth or .safetensors")
    entries = _npy_weights(p, dim) if fmt.entries is None else read_entries(p)
    wkey = "" if fmt.entries is None else _find_weight(entries, p, weight_key, dim)
    W = to_numpy(entries[wkey])
    if W.dtype == np.float16:
        W = W.astype(np.float32)
    W = np.ascontiguousarray(W)
    if not np.isfinite(W).all():
        row = int(np.flatnonzero(~np.isfinite(W).all(axis=1))[0])
        raise InputError(f"{p} [{wkey}]: row {row} contains NaN or infinity")
    bkey = next((k for k in _bias_names(wkey) if k in entries), None) if wkey else None
    b = None if bkey is None else _checked_bias(p, bkey, entries[bkey], W)
    data = tuple(k for k in entries if k in DATA_ENTRY_NAMES and k not in (wkey, bkey))
    return Classifier(
        W=W, b=b, path=p, format=fmt.name, weight_key=wkey or None, bias_key=bkey,
        data_entries=data,
    )  # fmt: skip


def save_classifier(
    classifier: Classifier, W: Any, path: str | os.PathLike[str], b: Any = None
) -> Path:
    """Write new weights (and biases) in ``classifier``'s file format, keeping its other entries.

    The source file is read again and only the weight entry (and, with ``b``,
    the bias entry) is replaced, keeping its dtype; every other entry stays
    as it was (torch checkpoints keep their nesting, safetensors files their
    metadata, ``.npz`` files their compression), except data: the entries of
    ``classifier.data_entries`` (features and labels bundled in the same
    file) are left out, so the classifier is not a copy of the data set.

    Parameters
    ----------
    classifier : Classifier
        What :func:`load_classifier` returned for the source file.
    W : array_like, shape (C, d)
        The new weights.
    path : path-like
        Where to write; its suffix must suit the format (``.npz``, ``.npy``,
        ``.pt``/``.pth``, ``.safetensors``).
    b : array_like, shape (C,), optional
        New biases. Without them the file's biases stay as they are (AlphaNet
        never changes them). A file without a bias entry gets one beside the
        weights (``bias``, ``b``, ``intercept_`` after the weights' name) unless
        ``b`` is all zeros; a ``.npy`` file, which holds the weights only,
        cannot store non-zero biases.

    Returns
    -------
    Path

    Raises
    ------
    InputError
        A suffix that does not match the format, ``path`` equal to the source
        file, ``W`` or ``b`` of another shape than the source's, non-zero
        biases for a ``.npy`` classifier.
    """
    out = Path(path)
    W = np.asarray(W)
    if W.shape != classifier.W.shape:
        raise InputError(
            f"W: expected shape {classifier.W.shape} (as {classifier.describe()}), found {W.shape}"
        )
    fmt = _output_format(classifier, out)
    key = classifier.weight_key or ""
    updates = {key: W}
    bias_key = _bias_entry(classifier, b)
    if bias_key is not None:
        updates[bias_key] = np.asarray(b)
    assert fmt.write_weights is not None  # every classifier format can be written
    with atomic_write(out) as tmp:
        fmt.write_weights(classifier.path, updates, classifier.data_entries, tmp)
    return out


def _output_format(classifier: Classifier, out: Path) -> Any:
    try:
        fmt = format_of(out)
    except InputError:
        fmt = None
    if fmt is None or fmt.name != classifier.format:
        raise InputError(
            f"{out}: the corrected classifier is written in its input's format; use a "
            f"{classifier.suffix} name"
        )
    if same_file(out, classifier.path):
        raise InputError(f"{out}: would overwrite the input classifier; choose another output name")
    return fmt


def _bias_entry(classifier: Classifier, b: Any) -> str | None:
    """The entry new biases ``b`` go to (None: nothing to write)."""
    if b is None:
        return None
    b = np.asarray(b)
    if b.shape != (classifier.n_classes,):
        raise InputError(f"b: expected shape ({classifier.n_classes},), found {b.shape}")
    if classifier.bias_key is not None:
        return classifier.bias_key
    if not np.any(b):
        return None  # zeros: the file's absent biases already are
    names = _bias_names(classifier.weight_key or "") if classifier.weight_key else []
    if not names:
        raise InputError(
            f"{classifier.path}: holds the weights only, and the new biases are not all zero; "
            "give the classifier as .npz with W and b (or weight and bias) to write them"
        )
    return names[0]
