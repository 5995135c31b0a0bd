"""From a PyTorch model and its DataLoader to a corrected model.

Three steps, each usable alone: :func:`extract` runs the model once over a
loader and keeps what enters its last linear layer (the features AlphaNet
needs) with the labels; :func:`alphanet_fast.correct` corrects that layer's
weights; :func:`apply_to` writes them back. :func:`correct_model` does all
three::

    import alphanet_fast.torch as aft

    model, res = aft.correct_model(model, train_loader, val_loader=val_loader)

The order of the rows is whatever the loader yields; features and labels are
taken from the same batch, so they stay aligned even with a shuffling loader.
Augmentations in the loader's transforms are the caller's business: extract
with the transforms used for evaluation.

Examples
--------
>>> import torch
>>> from torch import nn
>>> import alphanet_fast.torch as aft
>>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
>>> aft.find_head(model)
Linear(in_features=8, out_features=3, bias=True)
>>> data = torch.utils.data.TensorDataset(torch.randn(10, 4), torch.arange(10) % 3)
>>> feats = aft.extract(model, torch.utils.data.DataLoader(data, batch_size=4))
>>> feats.features.shape, feats.labels.tolist()
((10, 8), [0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from alphanet_fast._errors import fail
from alphanet_fast._torch_loop import (
    Sink,
    autocast_context,
    call_model,
    enter_eval,
    features_of,
    finite_array,
    labels_of,
    progress_bar,
    target_device,
    to_device,
)
from alphanet_fast.typing import PathLike

HEAD_NAMES = ("fc", "head", "heads", "classifier", "last_linear")
LABEL_KEYS = ("labels", "label", "targets", "target", "y")

HeadLike = str | nn.Module | None
Inputs = torch.Tensor | tuple | list | Mapping


class Extracted(NamedTuple):
    """What :func:`extract` returns: ``features`` (n, d) and ``labels`` (n,), aligned row by row."""

    features: np.ndarray
    labels: np.ndarray


class CorrectedModel(NamedTuple):
    """What :func:`correct_model` returns: the corrected ``model`` and correct()'s ``result``."""

    model: nn.Module
    result: Any


def find_head(model: nn.Module, name: str | None = None) -> nn.Linear:
    """The model's final ``nn.Linear``: the layer whose input is the feature vector.

    Without ``name``: the model itself if it is a Linear; else the last Linear
    inside a child named ``fc`` (ResNet), ``head`` (ViT, timm), ``heads``
    (torchvision ViT), ``classifier`` (VGG, EfficientNet, ConvNeXt, Hugging
    Face) or ``last_linear``; else, for an ``nn.Sequential``, its last Linear;
    else the model's only Linear.

    Parameters
    ----------
    model : torch.nn.Module
    name : str, optional
        Dotted path of the head (``"fc"``, ``"heads.head"``, ``"classifier.1"``);
        a module that is not a Linear itself must hold exactly one.

    Returns
    -------
    torch.nn.Linear

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``; ``name`` is not a string.
    ValueError
        No such submodule, no Linear, or several candidates (they are named).

    Examples
    --------
    >>> from torch import nn
    >>> import alphanet_fast.torch as aft
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 6))
    >>> net.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(6, 2))
    >>> aft.find_head(net)
    Linear(in_features=6, out_features=2, bias=True)
    """
    _check_model(model)
    if name is not None:
        return _named_head(model, name)
    if isinstance(model, nn.Linear):
        return model
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return find_head(model.module)
    found = []
    for child_name in HEAD_NAMES:
        child = getattr(model, child_name, None)
        if isinstance(child, nn.Module):
            linears = _linears(child, child_name)
            if linears:
                found.append(linears[-1])
    if len(found) == 1:
        return found[0][1]
    if len(found) > 1:
        names = ", ".join(repr(n) for n, _ in found)
        raise ValueError(f"head: several candidate heads ({names}); pass head='name' to pick one")
    linears = _linears(model, "")
    if not linears:
        raise ValueError(f"head: {type(model).__name__} contains no nn.Linear")
    if isinstance(model, nn.Sequential) or len(linears) == 1:
        return linears[-1][1]
    names = ", ".join(repr(n) for n, _ in linears)
    raise ValueError(
        f"head: cannot tell which nn.Linear is the last layer of {type(model).__name__} "
        f"(candidates: {names}); pass head='name'"
    )


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
    TypeError
        A batch of another kind, or a dict without a label key.

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
            raise TypeError(
                f"batch: expected (inputs, labels), found a {type(batch).__name__} of "
                f"{len(batch)} item(s); pass batch_to_inputs= for other batches"
            )
        return batch[0], batch[1]
    if isinstance(batch, Mapping):
        key = next((k for k in LABEL_KEYS if k in batch), None)
        if key is None:
            raise TypeError(
                f"batch: a dict batch needs its labels under one of {list(LABEL_KEYS)}, "
                f"found keys {list(batch)}; pass batch_to_inputs= for other batches"
            )
        rest = {k: v for k, v in batch.items() if k != key}
        if len(rest) == 1:
            return next(iter(rest.values())), batch[key]
        return rest, batch[key]
    raise TypeError(
        f"batch: expected a tuple, list or dict, found {type(batch).__name__}; "
        "pass batch_to_inputs= to read it"
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
    TypeError
        Wrong argument types, a batch that cannot be read, non-integer labels.
    ValueError
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
    lin = _resolve_head(model, head)
    np_dtype = np.dtype(dtype)
    if np_dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype: expected numpy.float32 or numpy.float64, found {dtype!r}")
    to_inputs = split_batch if batch_to_inputs is None else batch_to_inputs
    if not callable(to_inputs):
        raise TypeError(f"batch_to_inputs: expected a callable, found {batch_to_inputs!r}")
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
    TypeError
        ``result`` has no ``W``/``b``.
    ValueError
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
    lin = _resolve_head(model, head)
    if not (hasattr(result, "W") and hasattr(result, "b")):
        raise TypeError(f"result: expected an object with W and b, found {type(result).__name__}")
    W = finite_array(result.W, "result.W", tuple(lin.weight.shape))
    b = None if result.b is None else finite_array(result.b, "result.b", (lin.out_features,))
    if lin.bias is None and b is not None and np.any(b != 0):
        raise ValueError("result.b: the head has no bias, but the result's biases are not all zero")
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
        raise TypeError("val: pass val_loader= to correct_model, not val=")
    if not isinstance(inplace, (bool, np.bool_)):
        raise TypeError(f"inplace: expected True or False, found {inplace!r}")
    from alphanet_fast.training import correct

    lin = _resolve_head(model, head)
    head_name = _name_of(model, lin)
    kw: dict[str, Any] = {
        "device": device,
        "progress": progress,
        "batch_to_inputs": batch_to_inputs,
    }
    train = extract(model, train_loader, head=lin, **kw)
    val = None
    if val_loader is not None:
        val_feats = extract(model, val_loader, head=lin, **kw)
        val = (val_feats.features, val_feats.labels)
    # A float64 head is corrected in float64: a float32 round trip would change the
    # last bits of rows that must stay as they are.
    wide = torch.float64 if lin.weight.dtype == torch.float64 else torch.float32
    W = lin.weight.detach().to("cpu", wide).numpy()
    b = None if lin.bias is None else lin.bias.detach().to("cpu", wide).numpy()
    result = correct(
        train.features,
        train.labels,
        W,
        b,
        val=val,
        device=_correct_device(device, lin),
        progress=progress,
        **correct_kwargs,
    )
    target = model if inplace else copy.deepcopy(model)
    apply_to(target, result, head=head_name)
    return CorrectedModel(target, result)


# ---------------------------------------------------------------- helpers


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


def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, found {type(model).__name__}")


def _linears(module: nn.Module, prefix: str) -> list[tuple[str, nn.Linear]]:
    out = []
    for name, sub in module.named_modules(prefix=prefix):
        if isinstance(sub, nn.Linear):
            out.append((name, sub))
    return out


def _named_head(model: nn.Module, name: Any) -> nn.Linear:
    if not isinstance(name, str):
        raise TypeError(f"head: expected a dotted module name or a module, found {name!r}")
    try:
        sub = model.get_submodule(name)
    except AttributeError as exc:
        children = [n for n, _ in model.named_children()]
        raise ValueError(
            f"head: {type(model).__name__} has no submodule {name!r} (its children: {children})"
        ) from exc
    linears = _linears(sub, name)
    if isinstance(sub, nn.Linear):
        return sub
    if len(linears) != 1:
        found = [n for n, _ in linears] or "none"
        raise ValueError(
            f"head: {name!r} is a {type(sub).__name__}, not an nn.Linear, and holds "
            f"{len(linears)} Linear layers ({found}); name the Linear itself"
        )
    return linears[0][1]


def _resolve_head(model: nn.Module, head: HeadLike) -> nn.Linear:
    _check_model(model)
    if head is None or isinstance(head, str):
        return find_head(model, head)
    if not isinstance(head, nn.Linear):
        raise TypeError(f"head: expected None, a name or an nn.Linear, found {type(head).__name__}")
    if not any(m is head for m in model.modules()):
        raise ValueError("head: the given nn.Linear is not a submodule of model")
    return head


def _name_of(model: nn.Module, lin: nn.Linear) -> str:
    return next(n for n, m in model.named_modules() if m is lin)


def _correct_device(device: Any, lin: nn.Linear) -> Any:
    # "auto" for correct() means CUDA when present; here it follows the model.
    if isinstance(device, str) and device == "auto":
        return "cuda" if lin.weight.device.type == "cuda" else "cpu"
    return device
