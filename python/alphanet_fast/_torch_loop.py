"""The loop behind :func:`alphanet_fast.torch.extract`: batches in, feature rows out.

Moving batches to the model's device, eval mode and its undoing, the checks on
what the head receives and on the labels, and where the rows go (memory, or a
``.npy`` file written batch by batch).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alphanet_fast._errors import fail
from alphanet_fast._torch_env import parse_device
from alphanet_fast.files._npy_stream import NpyWriter, commit_together, labels_path_for


def target_device(model: nn.Module, device: Any) -> torch.device:
    """``device`` parsed; ``"auto"`` is where the model's parameters are (else the CPU)."""
    param = next(model.parameters(), None)
    home = param.device if param is not None else torch.device("cpu")
    return parse_device(device, auto=home, any_kind=True)


def enter_eval(model: nn.Module, dev: torch.device) -> Callable[[], None]:
    """Eval mode (and ``dev``) for the call; returns what puts everything back."""
    flags = [(m, m.training) for m in model.modules()]
    param = next(model.parameters(), None)
    home = param.device if param is not None else dev
    model.eval()
    if home != dev:
        model.to(dev)

    def restore() -> None:
        if home != dev:
            model.to(home)
        for m, flag in flags:
            m.training = flag

    return restore


def autocast_context(autocast: Any, dev: torch.device) -> Any:
    if autocast is False or autocast is None:
        return contextlib.nullcontext()
    if autocast is True:
        return torch.autocast(device_type=dev.type)
    if isinstance(autocast, torch.dtype):
        return torch.autocast(device_type=dev.type, dtype=autocast)
    raise fail(
        "autocast", f"expected True, False or a torch.dtype, found {autocast!r}", type_error=True
    )


def to_device(x: Any, dev: torch.device) -> Any:
    """Tensors, also inside dicts, tuples and lists, moved to ``dev``."""
    if isinstance(x, torch.Tensor):
        return x.to(dev, non_blocking=True)
    if isinstance(x, Mapping):
        return {k: to_device(v, dev) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        moved = [to_device(v, dev) for v in x]
        return type(x)(*moved) if hasattr(x, "_fields") else type(x)(moved)
    return x


def call_model(model: nn.Module, inputs: Any) -> None:
    if isinstance(inputs, Mapping):
        model(**inputs)
    elif isinstance(inputs, (tuple, list)):
        model(*inputs)
    else:
        model(inputs)


def features_of(captured: list[Any], i: int) -> np.ndarray:
    """The one (batch, d) CPU tensor the head's hook kept for batch ``i``, as numpy."""
    if len(captured) != 1:
        what = "was not called" if not captured else f"was called {len(captured)} times"
        raise fail(
            "head",
            f"the head {what} in the forward pass of batch {i}; "
            "pass head= naming the layer applied once to each sample",
        )
    x = captured[0]
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise fail(
            "head",
            f"expected its input to be (batch, d), found {shape} in batch {i} "
            "(a head applied per token or per pixel has no single feature row per sample)",
        )
    return x.numpy()


def labels_of(labels: Any, i: int) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
        raise fail(
            "labels", f"expected integer class ids, found dtype {arr.dtype} in batch {i}",
            type_error=True,
        )  # fmt: skip
    if arr.ndim != 1:
        raise fail(
            "labels",
            f"expected one label per sample, found shape {arr.shape} "
            f"in batch {i} (one-hot or soft labels are not class ids)",
        )
    # Floats at or beyond 2**63 (or infinite) would wrap to the smallest int64.
    beyond = np.flatnonzero(np.abs(arr) >= 2**63) if arr.dtype.kind in "uf" else ()
    if len(beyond):
        j = int(beyond[0])
        raise fail("labels", f"label {arr[j].item()!r} of batch {i} is not a class id", row=j)
    return arr.astype(np.int64)


def progress_bar(loader: Any, progress: Any) -> Any:
    if progress is None:
        show = bool(sys.stderr is not None and sys.stderr.isatty())
    elif isinstance(progress, (bool, np.bool_)):
        show = bool(progress)
    else:
        raise fail("progress", f"expected None, True or False, found {progress!r}", type_error=True)
    if not show:
        return loader
    from tqdm import tqdm

    total = len(loader) if hasattr(loader, "__len__") else None
    return tqdm(loader, total=total, desc="features", unit="batch", file=sys.stderr)


class Sink:
    """Collects batches in memory, or streams them to ``out`` (and its labels file)."""

    def __init__(self, out: str | os.PathLike[str] | None, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.rows = 0
        self.chunks: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.writers: tuple[NpyWriter, NpyWriter] | None = None
        if out is not None:
            if not isinstance(out, (str, os.PathLike)):
                raise fail("out", f"expected a path, found {type(out).__name__}", type_error=True)
            path = Path(out)
            path = path if path.suffix == ".npy" else path.with_name(path.name + ".npy")
            self.writers = (
                NpyWriter(path, dtype),
                NpyWriter(labels_path_for(path), np.dtype(np.int64)),
            )

    def add(self, features: np.ndarray, labels: np.ndarray, i: int) -> None:
        if labels.shape[0] != features.shape[0]:
            raise fail(
                "labels",
                f"{labels.shape[0]} labels for a batch of {features.shape[0]} samples (batch {i})",
            )
        if self.writers is None:
            self.chunks.append(features)
            self.labels.append(labels)
        else:
            self.writers[0].write(features)
            self.writers[1].write(labels)
        self.rows += features.shape[0]

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        if self.rows == 0:
            raise fail("loader", "yielded no samples")
        if self.writers is None:
            return np.concatenate(self.chunks), np.concatenate(self.labels)
        feats, labels = self.writers
        commit_together(self.writers)
        return np.load(feats.path, mmap_mode="r"), np.load(labels.path)

    def abort(self) -> None:
        if self.writers is not None:
            for w in self.writers:
                w.discard()


def finite_array(x: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise fail(name, f"expected a numeric array, found dtype {arr.dtype}", type_error=True)
    if arr.shape != shape:
        raise fail(name, f"expected shape {shape} (the head's), found {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1))[0])
        raise fail(name, f"contains NaN or infinity (row {bad})", row=bad)
    return np.ascontiguousarray(arr)
