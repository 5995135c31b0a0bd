"""Which fix to ship, for a PyTorch model: compare them all on its features, evaluate a model.

:func:`compare_model` runs :func:`alphanet_fast.compare` on the features that
enter the model's head and returns the model with the recommended head;
:func:`evaluate_model` is :func:`alphanet_fast.evaluate` of a model's own
predictions over a loader.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from alphanet_fast._errors import fail
from alphanet_fast.torch.features import Inputs, extract, extract_named
from alphanet_fast.torch.heads import HeadLike, name_of, resolve_head
from alphanet_fast.torch.models import apply_to, head_arrays, training_device

__all__ = ["CL2N", "ComparedModel", "compare_model", "evaluate_model"]

# compare()'s data arguments: compare_model builds them from its loaders.
_DATA_KEYWORDS = ("train", "W", "b", "val", "test")


class ComparedModel(NamedTuple):
    """What :func:`compare_model` returns: the ``model`` with the shipped head, and ``report``."""

    model: nn.Module
    report: Any


class CL2N(nn.Module):
    """``x -> (x - center) / ||x - center||`` per row (rows equal to ``center`` stay zero).

    The "cl2n" feature transform of nearest-class-mean classifiers
    (:class:`alphanet_fast.baselines.FeatureTransform`) as a layer, so that a
    model can carry a classifier of transformed features: :func:`compare_model`
    puts it in front of the head when it ships such a row.

    Parameters
    ----------
    center : array_like, shape (d,)
        The mean training feature; kept as a buffer (it moves with the model
        and is saved in its state dict as ``center``).
    """

    def __init__(self, center: Any) -> None:
        super().__init__()
        self.register_buffer("center", torch.as_tensor(np.asarray(center, dtype=np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x - self.center.to(x.dtype)
        norms = torch.linalg.vector_norm(z, dim=1, keepdim=True)
        return z / torch.where(norms > 0, norms, torch.ones_like(norms))


def evaluate_model(
    model: nn.Module,
    loader: Any,
    *,
    splits: Any,
    k: int | Sequence[int] = (1, 5),
    neighbors: Any = None,
    groups: Any = None,
    head: HeadLike = None,
    device: str | torch.device = "auto",
    progress: bool | None = None,
    batch_to_inputs: Callable[[Any], tuple[Inputs, Any]] | None = None,
) -> Any:
    """The :class:`~alphanet_fast.EvaluationReport` of a model's own predictions over a loader.

    The model runs once over ``loader`` as in :func:`extract`; its predictions
    are its head applied to what enters the head, scored by the same kernel
    as :func:`alphanet_fast.evaluate`, so the report equals
    ``af.evaluate(features, labels, head.weight, head.bias, splits=...)`` on
    the extracted features exactly. They are the model's output classes when
    the model returns its head's logits (any later layer that keeps the
    order of the scores, such as a temperature, changes nothing).

    Parameters
    ----------
    model : torch.nn.Module
    loader : iterable of batches
        See :func:`split_batch`.
    splits : Splits, AlphaNetResult, EvaluationReport, ComparisonReport or its run
        Few, medium and many classes by *training* count
        (:func:`alphanet_fast.splits_from_counts`), as :func:`alphanet_fast.evaluate`;
        or taken from a report (``splits=report`` after :func:`compare_model`).
    k, neighbors, groups
        As :func:`alphanet_fast.evaluate`.
    head, device, progress, batch_to_inputs
        As :func:`extract`.

    Returns
    -------
    EvaluationReport

    Raises
    ------
    ArgumentError, ArgumentTypeError
        As :func:`extract` and :func:`alphanet_fast.evaluate`.

    Examples
    --------
    >>> import torch, alphanet_fast as af, alphanet_fast.torch as aft
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    >>> batches = [(torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 0, 1]))]
    >>> splits = af.splits_from_counts([30, 5])
    >>> rep = aft.evaluate_model(model, batches, splits=splits, k=1, progress=False)
    >>> sorted(rep.accuracy[1])
    ['few', 'many', 'medium', 'overall']
    """
    from alphanet_fast.evaluation import evaluate

    lin = resolve_head(model, head)
    dtype = np.float64 if lin.weight.dtype == torch.float64 else np.float32
    feats = extract(
        model, loader, head=lin, device=device, dtype=dtype, progress=progress,
        batch_to_inputs=batch_to_inputs,
    )  # fmt: skip
    W = lin.weight.detach().to("cpu", torch.float64 if dtype == np.float64 else torch.float32)
    b = None if lin.bias is None else lin.bias.detach().to("cpu", W.dtype).numpy()
    return evaluate(
        feats.features, feats.labels, W.numpy(), b,
        splits=splits_of(splits), k=k, neighbors=neighbors, groups=groups,
    )  # fmt: skip


def splits_of(source: Any) -> Any:
    """The splits of ``source``: itself when it has them, else read from a report's classes.

    A :class:`~alphanet_fast.Splits` or :class:`~alphanet_fast.AlphaNetResult`
    is returned as it is; an :class:`~alphanet_fast.EvaluationReport` gives its
    ``split_of``; a comparison report (or one of its runs) that of its
    validation report.
    """
    from alphanet_fast.splits import Splits

    if hasattr(source, "few") or hasattr(source, "splits"):  # Splits, AlphaNetResult
        return source
    if hasattr(source, "rows"):  # ComparisonReport
        source = source.rows[0]
    if hasattr(source, "val") and not hasattr(source, "split_of"):  # a row or a run
        source = source.val[0] if isinstance(source.val, list) else source.val
    split_of = getattr(source, "split_of", None)
    if split_of is None:
        return source
    parts = {name: np.flatnonzero(split_of == name) for name in ("few", "medium", "many")}
    return Splits(**parts, n_classes=len(split_of))


def compare_model(
    model: nn.Module,
    train_loader: Any,
    val_loader: Any,
    test_loader: Any = None,
    *,
    head: HeadLike = None,
    inplace: bool = False,
    ship: str | None = None,
    device: str | torch.device = "auto",
    progress: bool | None = None,
    batch_to_inputs: Callable[[Any], tuple[Inputs, Any]] | None = None,
    **compare_keywords: Any,
) -> ComparedModel:
    """Compare every post-hoc fix on the model's features and ship the recommended one.

    The model runs once over each loader (as :func:`extract`, eval mode, no
    gradients); :func:`alphanet_fast.compare` runs the baselines and AlphaNet
    on the features entering the head, recommends a row on the validation
    set, and its classifier (``report.best``: the run of the recommended row
    with the best validation criterion) is written into the head of a copy
    of the model.

    A row that scores transformed features (nearest class mean with
    ``metric="euclidean", cl2n=True``, whose ``transform`` is not None) is
    not a linear map of the head's input: it is shipped with the transform
    as a layer, the head becoming ``nn.Sequential(CL2N(center), head)``
    (state-dict entries ``<head>.0.center``, ``<head>.1.weight``,
    ``<head>.1.bias``). Every other row keeps the model's architecture and
    state-dict names. Pass ``ship=`` another row's name to keep the
    architecture in that case.

    Parameters
    ----------
    model : torch.nn.Module
        A trained classifier.
    train_loader, val_loader : iterables of batches
        Training data (its counts decide the few classes) and validation data
        (every choice and the recommendation). Evaluation transforms, not
        augmentation.
    test_loader : iterable of batches, optional
        Reported only (``report.table()``, ``report.best.test``).
    head : str or torch.nn.Module, optional
        As in :func:`extract`.
    inplace : bool, default False
        Write into ``model`` itself instead of a deep copy.
    ship : str, optional
        The name of the row to ship (as ``report.table()`` shows it, e.g.
        ``"tau-norm"``) instead of the recommended one; its run with the best
        validation criterion.
    device, progress, batch_to_inputs
        Passed to :func:`extract`; ``device`` also to :func:`alphanet_fast.compare`.
    **compare_keywords
        Any other keyword of :func:`alphanet_fast.compare` (``methods``,
        ``rhos``, ``seeds``, ``criterion``, ``options``, ...).

    Returns
    -------
    ComparedModel
        ``(model, report)``: the model with the shipped head, and the
        :class:`~alphanet_fast.ComparisonReport`.

    Raises
    ------
    ArgumentError, ArgumentTypeError
        As :func:`extract` and :func:`alphanet_fast.compare`; no
        ``val_loader``; ``train``, ``val``, ``test``, ``W`` or ``b`` among the
        keywords (the loaders give them); an unknown ``ship`` name.

    Examples
    --------
    >>> import torch, alphanet_fast.torch as aft
    >>> _ = torch.manual_seed(0)
    >>> counts = [60] * 6 + [5] * 2                       # classes 6 and 7 are rare
    >>> y = torch.repeat_interleave(torch.arange(8), torch.tensor(counts))
    >>> x = torch.nn.functional.one_hot(y, 8).float() + 0.3 * torch.randn(len(y), 8)
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
    >>> loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    >>> fixed, report = aft.compare_model(model, loader, loader, methods=("tau_norm",),
    ...                                   alphanet_on=(), seeds=1, progress=False)
    >>> report.best.name in ("plain (given)", "tau-norm"), fixed is model
    (True, False)
    """
    from alphanet_fast.comparison import compare

    for key in _DATA_KEYWORDS:
        if key in compare_keywords:
            raise fail(key, "compare_model takes the data from its loaders", type_error=True)
    if val_loader is None:
        raise fail("val_loader", "compare_model chooses on validation data; give val_loader")
    if not isinstance(inplace, (bool, np.bool_)):
        raise fail("inplace", f"expected True or False, found {inplace!r}", type_error=True)
    if ship is not None and not isinstance(ship, str):
        raise fail("ship", f"expected a row name, found {ship!r}", type_error=True)
    lin = resolve_head(model, head)
    kw: dict[str, Any] = {
        "device": device, "progress": progress, "batch_to_inputs": batch_to_inputs
    }  # fmt: skip
    sets = [
        None if loader is None else tuple(extract_named(model, loader, argument, head=lin, **kw))
        for loader, argument in (
            (train_loader, "train_loader"),
            (val_loader, "val_loader"),
            (test_loader, "test_loader"),
        )
    ]
    W, b = head_arrays(lin)
    report = compare(
        sets[0], W, b, val=sets[1], test=sets[2], device=training_device(device, lin),
        **compare_keywords,
    )  # fmt: skip
    run = report.best if ship is None else _named_run(report, ship)
    target = model if inplace else copy.deepcopy(model)
    _ship(target, name_of(model, lin), run)
    return ComparedModel(target, report)


def _named_run(report: Any, name: str) -> Any:
    try:
        return report.run(name)
    except (KeyError, ValueError):
        names = [r.name for r in report.rows]
        raise fail("ship", f"no row {name!r}; rows are {names}", value=name) from None


def _ship(model: nn.Module, head_name: str, run: Any) -> None:
    """Write ``run``'s classifier into the head named ``head_name`` (with its transform)."""
    if run.transform is not None and head_name == "":
        raise fail(
            "ship", f"{run.name} scores transformed features, and the model is its head: "
            "there is no place for the transform; ship another row", value=run.name,
        )  # fmt: skip
    apply_to(model, run, head=head_name)
    if run.transform is None:
        return
    lin = model.get_submodule(head_name)
    wrapped = nn.Sequential(CL2N(run.transform.center).to(lin.weight.device), lin)
    parent_name, _, child = head_name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, wrapped)
