"""From a PyTorch model and its DataLoader to a corrected model.

Three steps, each usable alone (in :mod:`.heads`, :mod:`.features` and
:mod:`.models`): :func:`extract` runs the model once over a
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

from alphanet_fast.torch.features import LABEL_KEYS, Extracted, Inputs, extract, split_batch
from alphanet_fast.torch.heads import HEAD_NAMES, HeadLike, find_head
from alphanet_fast.torch.models import CorrectedModel, apply_to, correct_model

__all__ = [
    "HEAD_NAMES",
    "LABEL_KEYS",
    "CorrectedModel",
    "Extracted",
    "HeadLike",
    "Inputs",
    "apply_to",
    "correct_model",
    "extract",
    "find_head",
    "split_batch",
]
