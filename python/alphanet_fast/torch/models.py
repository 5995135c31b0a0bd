"""A model whose head is replaced: write a classifier back, correct with AlphaNet."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from alphanet_fast._errors import fail
from alphanet_fast._torch_loop import finite_array
from alphanet_fast.torch.features import Inputs, extract_named
from alphanet_fast.torch.heads import HeadLike, name_of, resolve_head

__all__ = ["CorrectedModel", "apply_to", "correct_model", "head_arrays", "training_device"]


class CorrectedModel(NamedTuple):
    """What :func:`correct_model` returns: the corrected ``model`` and correct()'s ``result``."""

    model: nn.Module
    result: Any


def apply_to(model: nn.Module, result: Any, head: HeadLike = None) -> nn.Module:
    """Write a result's ``W`` and ``b`` into the model's head, in place.

    The head's parameters keep their dtype, device and identity (an optimizer
    holding them still works).

    Parameters
    ----------
    model : torch.nn.Module
    result : AlphaNetResult or any object with ``W`` (C, d) and ``b`` (C,)
    head : str or torch.nn.Module, optional
        As in :func:`extract`.

    Returns
    -------
    torch.nn.Module
        ``model`` itself.

    Raises
    ------
    ArgumentTypeError
        ``result`` has no ``W``/``b``.
    ArgumentError
        Shapes that differ from the head's, a head without bias given
        non-zero biases, NaN or infinity.

    Examples
    --------
    >>> import numpy as np, torch, alphanet_fast.torch as aft
    >>> from types import SimpleNamespace
    >>> model = torch.nn.Linear(2, 2)
    >>> _ = aft.apply_to(model, SimpleNamespace(W=np.eye(2), b=np.zeros(2)))
    >>> model.weight.tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    lin = resolve_head(model, head)
    if not (hasattr(result, "W") and hasattr(result, "b")):
        raise fail(
            "result",
            f"expected an object with W and b, found {type(result).__name__}",
            type_error=True,
        )
    W = finite_array(result.W, "result.W", tuple(lin.weight.shape))
    b = None if result.b is None else finite_array(result.b, "result.b", (lin.out_features,))
    if lin.bias is None and b is not None and np.any(b != 0):
        raise fail("result.b", "the head has no bias, but the result's biases are not all zero")
    _require_in_range(W, "result.W", lin.weight.dtype)
    if b is not None and lin.bias is not None:
        _require_in_range(b, "result.b", lin.bias.dtype)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(W))
        if lin.bias is not None:
            lin.bias.copy_(torch.from_numpy(b) if b is not None else torch.zeros(()))
    return model


def correct_model(
    model: nn.Module,
    train_loader: Any,
    *,
    val_loader: Any = None,
    head: HeadLike = None,
    inplace: bool = False,
    device: str | torch.device = "auto",
    progress: bool | None = None,
    batch_to_inputs: Callable[[Any], tuple[Inputs, Any]] | None = None,
    **correct_kwargs: Any,
) -> CorrectedModel:
    """Extract, correct with AlphaNet, and write the corrected head back.

    Parameters
    ----------
    model : torch.nn.Module
        A trained classifier.
    train_loader : iterable of batches
        The training data (long-tailed; its counts decide the few classes).
        Use evaluation transforms, not augmentation.
    val_loader : iterable of batches, optional
        Validation data for choosing the epoch (``correct(val=...)``).
    head : str or torch.nn.Module, optional
        As in :func:`extract`.
    inplace : bool, default False
        Write into ``model`` itself instead of a deep copy.
    device, progress, batch_to_inputs
        Passed to :func:`extract`; ``device`` and ``progress`` also to
        :func:`alphanet_fast.correct`.
    **correct_kwargs
        Any keyword of :func:`alphanet_fast.correct` (``k``, ``rho``, ``epochs``, ...).

    Returns
    -------
    CorrectedModel
        ``(model, result)``: the corrected model and the :class:`AlphaNetResult`.

    Raises
    ------
    TypeError, ValueError
        As :func:`extract` and :func:`alphanet_fast.correct`; ``val`` given
        in ``correct_kwargs`` (use ``val_loader``).

    Examples
    --------
    >>> import torch, alphanet_fast.torch as aft
    >>> torch.manual_seed(0) and None
    >>> counts = [60] * 6 + [5] * 2                       # classes 6 and 7 are rare
    >>> y = torch.repeat_interleave(torch.arange(8), torch.tensor(counts))
    >>> x = torch.nn.functional.one_hot(y, 8).float() + 0.3 * torch.randn(len(y), 8)
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
    >>> loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    >>> fixed, res = aft.correct_model(model, loader, epochs=2, progress=False)
    >>> res.splits.few.tolist(), fixed is model
    ([6, 7], False)
    """
    if "val" in correct_kwargs:
        raise fail("val", "pass val_loader= to correct_model, not val=", type_error=True)
    if not isinstance(inplace, (bool, np.bool_)):
        raise fail("inplace", f"expected True or False, found {inplace!r}", type_error=True)
    from alphanet_fast.training import correct

    lin = resolve_head(model, head)
    head_name = name_of(model, lin)
    kw: dict[str, Any] = {
        "device": device,
        "progress": progress,
        "batch_to_inputs": batch_to_inputs,
    }
    train = extract_named(model, train_loader, "train_loader", head=lin, **kw)
    val = None
    if val_loader is not None:
        val_feats = extract_named(model, val_loader, "val_loader", head=lin, **kw)
        val = (val_feats.features, val_feats.labels)
    W, b = head_arrays(lin)
    result = correct(
        train.features,
        train.labels,
        W,
        b,
        val=val,
        device=training_device(device, lin),
        progress=progress,
        **correct_kwargs,
    )
    target = model if inplace else copy.deepcopy(model)
    apply_to(target, result, head=head_name)
    return CorrectedModel(target, result)


def head_arrays(lin: nn.Linear) -> tuple[np.ndarray, np.ndarray | None]:
    """The head's weights and biases (None without bias) as numpy arrays: float64 for a
    float64 head (a float32 round trip would change the last bits of rows that must stay
    as they are), else float32."""
    wide = torch.float64 if lin.weight.dtype == torch.float64 else torch.float32
    W = lin.weight.detach().to("cpu", wide).numpy()
    b = None if lin.bias is None else lin.bias.detach().to("cpu", wide).numpy()
    return W, b


def _require_in_range(arr: np.ndarray, name: str, dtype: torch.dtype) -> None:
    """Values the head's dtype cannot hold would become infinity in ``copy_``."""
    if not dtype.is_floating_point or arr.size == 0:
        return
    top = torch.finfo(dtype).max
    over = np.abs(arr.astype(np.float64, copy=False)) > top  # float64: no overflow in compare
    beyond = np.flatnonzero(over.any(axis=-1) if arr.ndim == 2 else over)
    if beyond.size:
        row = int(beyond[0])
        raise fail(name, f"row {row} holds a value beyond the head's {dtype} range", row=row)


def training_device(device: Any, lin: nn.Linear) -> Any:
    # "auto" for correct() means CUDA when present; here it follows the model.
    if isinstance(device, str) and device == "auto":
        return "cuda" if lin.weight.device.type == "cuda" else "cpu"
    return device
