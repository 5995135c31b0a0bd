"""Features entering a model's head, and the labels, over a DataLoader."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from alphanet_fast._errors import ArgumentError, fail
from alphanet_fast._torch_loop import (
    Sink,
    autocast_context,
    call_model,
    enter_eval,
    features_of,
    labels_of,
    progress_bar,
    target_device,
    to_device,
)
from alphanet_fast.torch.heads import HeadLike, resolve_head
from alphanet_fast.typing import PathLike

__all__ = ["LABEL_KEYS", "Extracted", "Inputs", "extract", "split_batch"]

LABEL_KEYS = ("labels", "label", "targets", "target", "y")

Inputs = torch.Tensor | tuple | list | Mapping


class Extracted(NamedTuple):
    """What :func:`extract` returns: ``features`` (n, d) and ``labels`` (n,), aligned row by row."""

    features: np.ndarray
    labels: np.ndarray


def split_batch(batch: Any) -> tuple[Inputs, Any]:
    """The default way :func:`extract` reads a batch: ``(inputs, labels)``.

    - a tuple or list ``(inputs, labels, ...)``: the first two items;
    - a dict: the labels under ``"labels"``, ``"label"``, ``"targets"``,
      ``"target"`` or ``"y"``; the remaining entries are the inputs (one entry
      is passed positionally, several as keyword arguments, so
      ``{"pixel_values": x, "labels": y}`` calls ``model(x)`` and
      ``{"input_ids": i, "attention_mask": m, "labels": y}`` calls
      ``model(input_ids=i, attention_mask=m)``).

    Write your own for other batches and pass it as ``batch_to_inputs``: it
    returns ``(inputs, labels)``, where inputs is a tensor (``model(x)``), a
    tuple (``model(*x)``) or a dict (``model(**x)``).

    Parameters
    ----------
    batch : tuple, list or dict
        One batch as the loader yields it.

    Returns
    -------
    (inputs, labels)

    Raises
    ------
    ArgumentTypeError
        A batch of another kind, or a dict without a label key (``.argument``
        is ``"batch"``).

    Examples
    --------
    >>> import torch
    >>> from alphanet_fast.torch import split_batch
    >>> inputs, labels = split_batch({"pixel_values": torch.zeros(2, 3), "labels": torch.ones(2)})
    >>> inputs.shape, labels.tolist()
    (torch.Size([2, 3]), [1.0, 1.0])
    """
    if isinstance(batch, (tuple, list)):
        if len(batch) < 2:
            raise fail(
                "batch",
                f"expected (inputs, labels), found a {type(batch).__name__} of "
                f"{len(batch)} item(s); pass batch_to_inputs= for other batches",
                type_error=True,
            )
        return batch[0], batch[1]
    if isinstance(batch, Mapping):
        key = next((k for k in LABEL_KEYS if k in batch), None)
        if key is None:
            raise fail(
                "batch",
                f"a dict batch needs its labels under one of {list(LABEL_KEYS)}, "
                f"found keys {list(batch)}; pass batch_to_inputs= for other batches",
                type_error=True,
            )
        rest = {k: v for k, v in batch.items() if k != key}
        if len(rest) == 1:
            return next(iter(rest.values())), batch[key]
        return rest, batch[key]
    raise fail(
        "batch",
        f"expected a tuple, list or dict, found {type(batch).__name__}; "
        "pass batch_to_inputs= to read it",
        type_error=True,
    )


def extract(
    model: nn.Module,
    loader: Any,
    *,
    head: HeadLike = None,
    out: PathLike | None = None,
    device: str | torch.device = "auto",
    dtype: Any = np.float32,
    progress: bool | None = None,
    batch_to_inputs: Callable[[Any], tuple[Inputs, Any]] | None = None,
    autocast: torch.dtype | bool = False,
) -> Extracted:
    """The features entering the model's head, and the labels, over a loader.

    The model runs in eval mode (each module's training flag is restored
    afterwards) under ``torch.inference_mode()``; a forward pre-hook on the
    head keeps its input. Rows come in the order the loader yields them.

    Parameters
    ----------
    model : torch.nn.Module
    loader : iterable of batches
        A ``DataLoader`` or any iterable; see :func:`split_batch`.
    head : str or torch.nn.Module, optional
        The last linear layer, or its dotted name; :func:`find_head` by default.
    out : str or path, optional
        Write the features to this ``.npy`` file (suffix added if missing) and
        the labels beside it (``feats.npy`` -> ``feats.labels.npy``), batch by
        batch, so the data need not fit in memory; both are written to
        temporary names, created exclusively (never through a link), and
        renamed together when complete: after an error neither file is left.
        The returned features are then a read-only memory map of the file.
    device : str or torch.device, default "auto"
        ``"auto"``: where the model's parameters are (nothing is moved).
        Otherwise the model is moved there for the call and moved back.
    dtype : {numpy.float32, numpy.float64}
        dtype of the returned features (float16/bfloat16 heads are cast).
    progress : bool, optional
        A tqdm bar over batches; ``None``: only when stderr is a terminal.
    batch_to_inputs : callable, optional
        ``batch -> (inputs, labels)``; :func:`split_batch` by default.
    autocast : bool or torch.dtype, default False
        Run the forward under ``torch.autocast`` (``True``: the device's default
        dtype, or a dtype such as ``torch.bfloat16``).

    Returns
    -------
    Extracted
        ``(features, labels)``: float ``(n, d)`` and int64 ``(n,)``.

    Raises
    ------
    ArgumentTypeError
        Wrong argument types, a batch that cannot be read, non-integer labels.
    ArgumentError
        No head found (see :func:`find_head`), a head not in ``model``, a head
        input that is not ``(batch, d)``, labels that do not match the batch,
        an empty loader.

    Examples
    --------
    >>> import torch, alphanet_fast.torch as aft
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 2))
    >>> batches = [{"x": torch.ones(4, 3), "labels": torch.tensor([0, 1, 1, 0])}]
    >>> aft.extract(model, batches).features.shape
    (4, 5)
    """
    lin = resolve_head(model, head)
    np_dtype = np.dtype(dtype)
    if np_dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise fail(
            "dtype", f"expected numpy.float32 or numpy.float64, found {dtype!r}", type_error=True
        )
    to_inputs = split_batch if batch_to_inputs is None else batch_to_inputs
    if not callable(to_inputs):
        raise fail(
            "batch_to_inputs", f"expected a callable, found {batch_to_inputs!r}", type_error=True
        )
    dev = target_device(model, device)
    sink = Sink(out, np_dtype)
    captured: list[Any] = []

    torch_dtype = torch.float32 if np_dtype == np.float32 else torch.float64

    def keep_input(module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else kwargs.get("input")
        # Copied now: the model may reuse or change the tensor after the head.
        if isinstance(x, torch.Tensor):
            x = x.detach().to("cpu", torch_dtype, copy=True)
        captured.append(x)

    restore = enter_eval(model, dev)
    handle = lin.register_forward_pre_hook(keep_input, with_kwargs=True)
    try:
        with torch.inference_mode(), autocast_context(autocast, dev):
            for i, batch in enumerate(progress_bar(loader, progress)):
                inputs, labels = to_inputs(batch)
                captured.clear()
                call_model(model, to_device(inputs, dev))
                sink.add(features_of(captured, i), labels_of(labels, i), i)
        return Extracted(*sink.finish())
    except BaseException:
        sink.abort()
        raise
    finally:
        handle.remove()
        restore()


def extract_named(model: nn.Module, loader: Any, argument: str, **keywords: Any) -> Extracted:
    """:func:`extract` for a caller whose loader argument has another name
    (``train_loader``, ``val_loader``, ...): an error about ``loader`` names it."""
    try:
        return extract(model, loader, **keywords)
    except ArgumentError as exc:
        if exc.argument != "loader":
            raise
        raise fail(
            argument, exc.detail, exc.row, value=exc.value, type_error=isinstance(exc, TypeError)
        ) from None
