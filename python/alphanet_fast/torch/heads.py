"""The model's head: the final ``nn.Linear``, whose input is the feature vector."""

from __future__ import annotations

from typing import Any

from torch import nn

from alphanet_fast._errors import fail

__all__ = ["HEAD_NAMES", "HeadLike", "find_head", "name_of", "resolve_head"]

HEAD_NAMES = ("fc", "head", "heads", "classifier", "last_linear")

HeadLike = str | nn.Module | None


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
    ArgumentTypeError
        ``model`` is not an ``nn.Module``; ``name`` is not a string.
    ArgumentError
        No such submodule, no Linear, or several candidates (they are named);
        ``.argument`` is ``"head"``.

    Examples
    --------
    >>> from torch import nn
    >>> import alphanet_fast.torch as aft
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 6))
    >>> net.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(6, 2))
    >>> aft.find_head(net)
    Linear(in_features=6, out_features=2, bias=True)
    """
    check_model(model)
    if name is not None:
        return _named_head(model, name, "name")
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
        raise fail("head", f"several candidate heads ({names}); pass head='name' to pick one")
    linears = _linears(model, "")
    if not linears:
        raise fail("head", f"{type(model).__name__} contains no nn.Linear")
    if isinstance(model, nn.Sequential) or len(linears) == 1:
        return linears[-1][1]
    names = ", ".join(repr(n) for n, _ in linears)
    raise fail(
        "head",
        f"cannot tell which nn.Linear is the last layer of {type(model).__name__} "
        f"(candidates: {names}); pass head='name'",
    )


def check_model(model: Any) -> None:
    """``model`` is an ``nn.Module`` (else an error naming ``model``)."""
    if not isinstance(model, nn.Module):
        raise fail(
            "model", f"expected a torch.nn.Module, found {type(model).__name__}", type_error=True
        )


def _linears(module: nn.Module, prefix: str) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in module.named_modules(prefix=prefix) if isinstance(m, nn.Linear)]


def _named_head(model: nn.Module, name: Any, argument: str = "head") -> nn.Linear:
    if not isinstance(name, str):
        raise fail(
            argument, f"expected a dotted module name or a module, found {name!r}", type_error=True
        )
    try:
        sub = model.get_submodule(name)
    except AttributeError as exc:
        children = [n for n, _ in model.named_children()]
        raise fail(
            argument, f"{type(model).__name__} has no submodule {name!r} (its children: {children})"
        ) from exc
    if isinstance(sub, nn.Linear):
        return sub
    linears = _linears(sub, name)
    if len(linears) != 1:
        found = [n for n, _ in linears] or "none"
        raise fail(
            argument,
            f"{name!r} is a {type(sub).__name__}, not an nn.Linear, and holds "
            f"{len(linears)} Linear layers ({found}); name the Linear itself",
        )
    return linears[0][1]


def resolve_head(model: nn.Module, head: HeadLike) -> nn.Linear:
    """The head given as None (found), a dotted name, or the ``nn.Linear`` itself."""
    check_model(model)
    if head is None:
        return find_head(model)
    if isinstance(head, str):
        return _named_head(model, head)
    if not isinstance(head, nn.Linear):
        raise fail(
            "head",
            f"expected None, a name or an nn.Linear, found {type(head).__name__}",
            type_error=True,
        )
    if not any(m is head for m in model.modules()):
        raise fail("head", "the given nn.Linear is not a submodule of model")
    return head


def name_of(model: nn.Module, lin: nn.Module) -> str:
    """The dotted name of submodule ``lin`` in ``model`` (``""`` for the model itself)."""
    return next(n for n, m in model.named_modules() if m is lin)
