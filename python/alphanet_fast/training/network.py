"""The network's training step written out by hand: forward, loss and backward, no autograd.

A step of ``correct()`` is one large product (the first layer over every few
class's flattened source stack, forward and weight gradient) and a few dozen
tiny ones. Autograd's bookkeeping (graph nodes, saved tensors, gradient
accumulation) costs more than the tiny ones themselves, so the step here is
the chain rule written out (tested against autograd in float64), on
preallocated buffers.

The first layer's input is kept transposed, ``(K, F)`` for ``K = (k+1) d``
inputs and ``F`` few classes, and its weight as ``(K, h)`` (the transpose of
``nn.Linear``'s, the same values): both products then read the input by
contiguous row blocks, which is where the matrix kernels run fastest for this
long, thin shape. Those row blocks are the layer's fixed pieces: their number
depends on the input's size only (:func:`~alphanet_fast.model.linear_pieces`),
each is one single-threaded product on whichever thread runs it
(:class:`~.pieces.PieceRunner`), and the forward's partial sums are added in
piece order, so the result never depends on the thread count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from alphanet_fast._errors import fail
from alphanet_fast._memory import memory_limit
from alphanet_fast.model import LEAKY_SLOPE, few_scores, init_layers, linear_pieces
from alphanet_fast.training.pieces import PieceRunner
from alphanet_fast.training.sampling import Budgets

__all__ = ["FewNetwork", "check_network_size", "stacks_transposed"]

# F.normalize's floor under the L1 norm (the paper's a / ||a||_1 except at a == 0).
NORM_EPS = 1e-12
# Row blocks of the first layer's input start on multiples of this many rows.
PIECE_ALIGN = 16


def stacks_transposed(W_t: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """``(K, F)``: column ``f`` is few class ``f``'s flattened ``[W_f; W_n1..W_nk]``.

    ``sources`` is ``(F, k+1)`` class ids. Built one source at a time, so no
    ``(F, K)`` copy is ever held beside it.
    """
    n_few, parts = sources.shape
    d = W_t.shape[1]
    out = torch.empty((parts * d, n_few), dtype=torch.float32, device=W_t.device)
    for j in range(parts):
        out[j * d : (j + 1) * d].copy_(W_t.index_select(0, sources[:, j]).T)
    return out


def _blocks(n: int, count: int) -> list[tuple[int, int]]:
    step = -(-n // count)
    step = -(-step // PIECE_ALIGN) * PIECE_ALIGN
    return [(lo, min(n, lo + step)) for lo in range(0, n, step)]


class FewNetwork:
    """The AlphaNet network over the few classes, with a hand-written training step.

    ``Linear(K -> h1) -> leaky ReLU -> ... -> Linear(h_last -> k)``, L1-normalised
    (:class:`~alphanet_fast.model.AlphaNetwork`'s function and initialisation,
    drawn from ``seed`` by a generator of the call's own). On the CPU, from
    ``budgets.chunked_layer`` bytes of input, the first layer runs in fixed
    pieces that ``workers`` threads share. Use as a context manager: it owns
    those threads.

    Attributes
    ----------
    params : list of Tensor
        ``[W1t, b1, W2, b2, ...]`` (``W1t`` is ``(K, h1)``); :attr:`grads` holds
        their gradients after :meth:`step_loss`, in the same order.
    """

    def __init__(
        self,
        stacks_t: torch.Tensor,
        k: int,
        hidden: Sequence[int],
        *,
        seed: int,
        workers: int,
        budgets: Budgets,
    ):
        self.stacks_t, self.k = stacks_t, k
        n_in, self.n_few = stacks_t.shape
        dev = stacks_t.device
        layers = init_layers([n_in, *hidden, k], seed)
        self.params: list[torch.Tensor] = []
        for i, (W, b) in enumerate(layers):
            W = W.T if i == 0 else W
            self.params += [W.to(dev, stacks_t.dtype).contiguous(), b.to(dev, stacks_t.dtype)]
        self.grads = [torch.empty_like(p) for p in self.params]
        n_bytes = stacks_t.numel() * stacks_t.element_size()
        chunked = dev.type == "cpu" and n_bytes >= budgets.chunked_layer
        self.blocks = _blocks(n_in, linear_pieces(n_bytes) if chunked else 1)
        self._partial = torch.empty(
            (len(self.blocks), self.n_few, hidden_first(hidden, k)),
            dtype=stacks_t.dtype,
            device=dev,
        )
        self._runner = PieceRunner(workers if dev.type == "cpu" else 1)

    def __enter__(self) -> FewNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self._runner.__exit__(*exc)

    def share(self, fn: Callable[[Any], None], items: Iterable[Any]) -> None:
        """``fn(item)`` for every item, on this thread and the helpers (coarse work)."""
        self._runner.share(fn, items)

    def _first(self) -> torch.Tensor:
        """``stacks @ W1.T + b1``, ``(F, h1)``: the blocks' partial products summed in order."""
        W1t, b1 = self.params[0], self.params[1]
        partial, st = self._partial, self.stacks_t

        def piece(i: int) -> None:
            lo, hi = self.blocks[i]
            torch.mm(st[lo:hi].T, W1t[lo:hi], out=partial[i])

        if len(self.blocks) == 1:
            return torch.addmm(b1, st.T, W1t)
        self._runner(piece, range(len(self.blocks)))
        out = partial[0] + b1
        for i in range(1, len(self.blocks)):
            out += partial[i]
        return out

    def _forward(self) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Pre-activations and activations of every layer, the raw outputs' L1 norms and ``ã``."""
        zs, acts = [self._first()], []
        for i in range(2, len(self.params), 2):
            acts.append(torch.nn.functional.leaky_relu(zs[-1], LEAKY_SLOPE))
            zs.append(torch.addmm(self.params[i + 1], acts[-1], self.params[i].T))
        out = zs[-1]
        norm = out.abs().sum(dim=1, keepdim=True)
        return zs, acts, norm, out / norm.clamp_min(NORM_EPS)

    @torch.no_grad()
    def alphas(self) -> torch.Tensor:
        """The network's coefficients ``ã`` for every few class, (F, k)."""
        return self._forward()[3]

    @torch.no_grad()
    def step_loss(
        self,
        steps: tuple[torch.Tensor, ...],
        few_bias_t: torch.Tensor,
        score_scale: float,
    ) -> torch.Tensor:
        """The batch's mean loss (a 0-d tensor); the gradients are left in :attr:`grads`.

        ``steps`` are the batch's own scores (B, F), neighbour scores (B, F, k), base
        log-sum-exp, target score and target few index (-1: a base target), as
        :meth:`~.scoring.Feed.each_chunk` gives them.
        """
        own, nbs, lse, logit, target_few = steps
        zs, acts, norm, alphas = self._forward()
        scores = few_scores(own, nbs, alphas, few_bias_t, score_scale)
        n = scores.shape[0]
        all_lse = torch.logsumexp(torch.cat([lse[:, None], scores], dim=1), dim=1)
        is_few = target_few >= 0
        column = target_few.clamp_min(0)[:, None]
        target = torch.where(is_few, scores.gather(1, column)[:, 0], logit)
        loss = (all_lse - target).mean()
        # d loss / d scores: softmax over all classes' few columns, less the target's
        # one (a single element per row, so the scatter is exact in any order).
        g_scores = torch.exp(scores - all_lse[:, None])
        g_scores.scatter_add_(1, column, is_few.to(scores.dtype).neg_()[:, None])
        g_scores.mul_(score_scale / n)
        g_alphas = (g_scores[:, :, None] * nbs).sum(dim=0)
        self._backward(zs, acts, norm, alphas, g_alphas)
        return loss

    def _backward(
        self,
        zs: list[torch.Tensor],
        acts: list[torch.Tensor],
        norm: torch.Tensor,
        alphas: torch.Tensor,
        g: torch.Tensor,
    ) -> None:
        # ã = o / max(||o||_1, eps): the quotient's and the norm's terms (the norm's
        # only where it is above the floor, as clamp_min passes its gradient).
        clamped = norm.clamp_min(NORM_EPS)
        g_norm = (g * alphas).sum(dim=1, keepdim=True).div_(clamped).mul_(norm >= NORM_EPS)
        g = g / clamped - zs[-1].sign() * g_norm
        for i in range(len(zs) - 1, 0, -1):
            torch.mm(g.T, acts[i - 1], out=self.grads[2 * i])
            torch.sum(g, dim=0, out=self.grads[2 * i + 1])
            g = g @ self.params[2 * i]
            g = torch.where(zs[i - 1] > 0, g, g * LEAKY_SLOPE)
        torch.sum(g, dim=0, out=self.grads[1])
        st, gW1t = self.stacks_t, self.grads[0]

        def piece(i: int) -> None:
            lo, hi = self.blocks[i]
            torch.mm(st[lo:hi], g, out=gW1t[lo:hi])

        if len(self.blocks) == 1:
            torch.mm(st, g, out=gW1t)
        else:
            self._runner(piece, range(len(self.blocks)))

    def corrected_few_rows(self, alphas_t: torch.Tensor) -> torch.Tensor:
        """``w'_f = W_f + sum_i ã_f,i W_ni`` for every few class, (F, d)."""
        parts = self.stacks_t.view(self.k + 1, -1, self.n_few)
        out = parts[0].clone()
        for j in range(self.k):
            out.addcmul_(parts[j + 1], alphas_t[:, j][None, :])
        return out.T


def hidden_first(hidden: Sequence[int], k: int) -> int:
    """Width of the first layer's output: the first hidden width, or ``k`` without one."""
    return hidden[0] if len(hidden) else k


def step_flops(n_few: int, n_in: int, hidden: Sequence[int], k: int) -> int:
    """Multiply-adds times two of one step's first layer (forward and weight gradient)."""
    return 4 * n_few * n_in * hidden_first(hidden, k)


def check_network_size(n_few: int, d: int, k: int, hidden: Sequence[int]) -> None:
    """Refuse a network whose parameters, gradients and optimizer state (4 float32
    copies) could not fit in the memory this process may have, before torch tries."""
    widths = [(k + 1) * d, *hidden, k]
    params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    widest = max(widths[1:])
    need = 4 * (4 * params + 4 * n_few * widest * len(widths))
    limit, what = memory_limit()
    if need > limit:
        raise fail(
            "hidden",
            f"a network of widths {tuple(hidden)} on {widths[0]:,} inputs "
            f"would need {need / 2**30:,.1f} GiB for its parameters, gradients and "
            f"optimizer state, more than the {limit / 2**30:,.1f} GiB of {what}",
            value=hidden,
        )
