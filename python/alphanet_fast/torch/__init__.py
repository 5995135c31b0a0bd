"""From a PyTorch model and its DataLoader to a corrected model.

Three steps, each usable alone (in :mod:`.heads`, :mod:`.features` and
:mod:`.models`): :func:`extract` runs the model once over a
loader and keeps what enters its last linear layer (the features AlphaNet
needs) with the labels; :func:`alphanet_fast.correct` corrects that layer's
weights; :func:`apply_to` writes them back. :func:`correct_model` does all
three::

    import alphanet_fast.torch as aft

    model, res = aft.correct_model(model, train_loader, val_loader=val_loader)

:func:`compare_model` runs every post-hoc fix (:func:`alphanet_fast.compare`)
on the model's features and returns the model with the recommended head;
:func:`evaluate_model` evaluates a model over a loader (:mod:`.shipping`)::

    model, report = aft.compare_model(model, train_loader, val_loader, test_loader)
    print(report.table())
    print(aft.evaluate_model(model, test_loader, splits=report).table())

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

from alphanet_fast.torch.features import LABEL_KEYS, Extracted, Inputs, extract, split_batch
from alphanet_fast.torch.heads import HEAD_NAMES, HeadLike, find_head
from alphanet_fast.torch.models import CorrectedModel, apply_to, correct_model
from alphanet_fast.torch.shipping import CL2N, ComparedModel, compare_model, evaluate_model

__all__ = [
    "CL2N",
    "HEAD_NAMES",
    "LABEL_KEYS",
    "ComparedModel",
    "CorrectedModel",
    "Extracted",
    "HeadLike",
    "Inputs",
    "apply_to",
    "compare_model",
    "correct_model",
    "evaluate_model",
    "extract",
    "find_head",
    "split_batch",
]
