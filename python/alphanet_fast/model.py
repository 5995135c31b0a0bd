"""The AlphaNet network and the corrected few-class scores it induces (ARCHITECTURE.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["AlphaNetwork", "ChunkedLinear", "build_network", "few_scores", "linear_pieces"]

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


def build_network(
    in_features: int, k: int, hidden: Sequence[int], *, seed: int, device: torch.device
) -> AlphaNetwork:
    """An :class:`AlphaNetwork` with PyTorch's default initialisation drawn from ``seed``.

    The parameters are drawn on the CPU from a forked generator, so the caller's
    global RNG is left as it was and every device starts from the same weights.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = AlphaNetwork(in_features, k, hidden)
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


# The first layer is cut into pieces on the CPU whose number depends on the size
# of its input only, never on the workers: every piece is the same single-threaded
# product whatever runs it, so the result does not depend on the thread count.
# About PIECE_BYTES of input per piece, at least 2 and at most MAX_LINEAR_PIECES
# (benches/README.md has the measurements).
PIECE_BYTES = 4 << 20
MAX_LINEAR_PIECES = 8


def linear_pieces(n_bytes: int) -> int:
    """Pieces ``ChunkedLinear`` cuts an input of ``n_bytes`` bytes into."""
    return max(2, min(MAX_LINEAR_PIECES, n_bytes // PIECE_BYTES))


def _pieces(n: int, count: int) -> list[tuple[int, int]]:
    step = -(-n // count)
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


class ChunkedLinear(torch.autograd.Function):
    """``x @ weight.T + bias`` for a constant ``x``, forward and backward cut into
    fixed pieces that ``run_all`` may run on several threads.

    The network's first layer reads the whole ``(F, (k+1)d)`` stack twice a step
    (forward, and the weight's gradient); at thousands of few classes that is
    hundreds of megabytes, bound by memory bandwidth, which one thread does not
    saturate. Forward pieces are row blocks of ``x``; backward pieces are column
    blocks of ``x``, each giving those columns of the weight's gradient with the
    full sum over rows, so no piece's sum is split.

    ``run_all(fn, items)`` calls ``fn`` on every item (in any order, on any
    threads) and returns when all are done. ``pieces`` is the number of pieces
    (:func:`linear_pieces` of the input's size). ``x`` gets no gradient.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        run_all: Callable[[Callable[[Any], None], Iterable[Any]], None],
        pieces: int,
    ) -> torch.Tensor:
        out = torch.empty((x.shape[0], weight.shape[0]), dtype=x.dtype, device=x.device)
        weight_t, bias = weight.detach().T, bias.detach()

        # Grad mode is per thread: the pieces may run on threads where it is on.
        @torch.no_grad()
        def rows(piece: tuple[int, int]) -> None:
            lo, hi = piece
            torch.addmm(bias, x[lo:hi], weight_t, out=out[lo:hi])

        run_all(rows, _pieces(x.shape[0], pieces))
        ctx.x, ctx.run_all, ctx.pieces = x, run_all, pieces
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        x = ctx.x
        grad_weight = torch.empty((grad_out.shape[1], x.shape[1]), dtype=x.dtype, device=x.device)
        grad_t = grad_out.T

        @torch.no_grad()
        def columns(piece: tuple[int, int]) -> None:
            lo, hi = piece
            torch.mm(grad_t, x[:, lo:hi], out=grad_weight[:, lo:hi])

        ctx.run_all(columns, _pieces(x.shape[1], ctx.pieces))
        return None, grad_weight, grad_out.sum(dim=0), None, None
