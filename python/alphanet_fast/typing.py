"""Type aliases for the arrays the public functions accept.

``import alphanet_fast.typing`` never imports torch: the torch tensor type is
named as a string, which type checkers resolve and the interpreter leaves alone.

Examples
--------
>>> from alphanet_fast.typing import FeaturesLike
>>> import numpy as np
>>> def rows(x: FeaturesLike) -> int:
...     return len(np.asarray(x))
>>> rows([[1.0, 2.0], [3.0, 4.0]])
2
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Union

from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    import torch

PathLike = Union[str, "os.PathLike[str]"]
"""A path to a ``.npy`` file, read as a memory map (never whole)."""

FeaturesLike = Union[ArrayLike, "torch.Tensor", PathLike]
"""Feature rows ``(n, d)``: an array (memory maps included), a torch tensor or a ``.npy`` path."""

LabelsLike = Union[ArrayLike, "torch.Tensor", PathLike]
"""Integer class labels ``(n,)``: an array, a torch tensor or a ``.npy`` path."""

WeightsLike = Union[ArrayLike, "torch.Tensor"]
"""A classifier's weights ``(C, d)`` or biases ``(C,)``: an array or a torch tensor."""

__all__ = ["ArrayLike", "FeaturesLike", "LabelsLike", "NDArray", "PathLike", "WeightsLike"]
