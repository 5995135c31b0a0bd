"""The AlphaNet network and the corrected few-class scores it induces (ARCHITECTURE.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["AlphaNetwork", "build_network", "few_scores", "init_layers"]

LEAKY_SLOPE = 0.01


class AlphaNetwork(nn.Module):
    """One shared network mapping a few class's source stack to its neighbour coefficients.

    ``Linear((k+1)d -> h1) -> act -> ... -> Linear(h_last -> k)`` with leaky ReLU
    (slope 0.01) between layers and PyTorch's default initialisation; the ``k``
    outputs are L1-normalised. All few classes run through it in one batched
    pass: the input is the ``(F, (k+1) d)`` matrix of flattened source stacks
    ``[W_f; W_n1; ...; W_nk]``.

    Parameters
    ----------
    in_features : int
        ``(k + 1) * d``.
    k : int
        Number of neighbours, the output width.
    hidden : sequence of int
        Hidden layer widths (the paper: three layers of 32). May be empty, which
        leaves one linear layer.

    Examples
    --------
    >>> import torch
    >>> net = AlphaNetwork(3 * 4, 2, hidden=(8,))
    >>> a = net(torch.randn(5, 12))
    >>> a.shape, bool(torch.allclose(a.abs().sum(1), torch.ones(5)))
    (torch.Size([5, 2]), True)
    """

    def __init__(self, in_features: int, k: int, hidden: Sequence[int] = (32, 32, 32)):
        super().__init__()
        widths = [in_features, *hidden, k]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, stacks: torch.Tensor) -> torch.Tensor:
        """L1-normalised coefficients ``ã``, shape ``(F, k)``, from stacks ``(F, (k+1)d)``."""
        return self.head(self.layers[0](stacks))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """The network after its first linear layer, from that layer's output ``h``."""
        for layer in self.layers[1:]:
            h = layer(F.leaky_relu(h, LEAKY_SLOPE))
        # F.normalize divides by max(||a||_1, 1e-12): the paper's a / ||a||_1 except at a == 0.
        return F.normalize(h, p=1.0, dim=1)


def init_layers(widths: Sequence[int], seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """PyTorch's default ``nn.Linear`` initialisation of every layer, drawn on the CPU
    from a generator of the call's own seeded with ``seed``.

    ``(weight, bias)`` per layer, ``widths[i] -> widths[i + 1]``, drawn in
    ``nn.Linear``'s order (Kaiming-uniform weight, then the bias uniform in
    ``+-1/sqrt(fan_in)``), so the values are those ``torch.manual_seed(seed)``
    followed by building the layers would give, without touching torch's
    process-wide generator: concurrent calls each get their own seed's weights.
    """
    gen = torch.Generator().manual_seed(seed)
    layers = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        weight = torch.empty(fan_out, fan_in)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=gen)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        bias = torch.empty(fan_out).uniform_(-bound, bound, generator=gen)
        layers.append((weight, bias))
    return layers


def build_network(
    in_features: int, k: int, hidden: Sequence[int], *, seed: int, device: torch.device
) -> AlphaNetwork:
    """An :class:`AlphaNetwork` with PyTorch's default initialisation drawn from ``seed``
    (:func:`init_layers`): torch's global generator is neither read nor changed, and
    every device starts from the same weights."""
    with torch.device("meta"):
        net = AlphaNetwork(in_features, k, hidden)
    net = net.to_empty(device="cpu")
    with torch.no_grad():
        for layer, (weight, bias) in zip(net.layers, init_layers([in_features, *hidden, k], seed)):
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
    return net.to(device)


def few_scores(
    own_scores: torch.Tensor,
    neighbor_scores: torch.Tensor,
    alphas: torch.Tensor,
    few_bias: torch.Tensor,
    score_scale: float,
) -> torch.Tensor:
    """Corrected few-class scores from frozen source scores (the exact shortcut).

    ``x · w'_f + b_f = x · W_f + sum_i ã_f,i (x · W_ni) + b_f``, times the score
    scale: linear in ``ã``, so no corrected weight vector is ever formed and a
    batch costs ``O(B F k)``.

    Parameters
    ----------
    own_scores : Tensor, shape (B, F)
        ``x · W_f`` of each sample against each few class's original row.
    neighbor_scores : Tensor, shape (B, F, k)
        ``x · W_ni`` against each few class's neighbours.
    alphas : Tensor, shape (F, k)
        The normalised coefficients ``ã``.
    few_bias : Tensor, shape (F,)
        The few classes' biases.
    score_scale : float

    Returns
    -------
    Tensor, shape (B, F)

    Examples
    --------
    >>> import torch
    >>> own, nb = torch.tensor([[1.0]]), torch.tensor([[[2.0, 4.0]]])
    >>> few_scores(own, nb, torch.tensor([[0.5, -0.5]]), torch.tensor([0.25]), 2.0)
    tensor([[0.5000]])
    """
    mixed = (neighbor_scores * alphas).sum(dim=2)
    return (own_scores + mixed + few_bias) * score_scale
