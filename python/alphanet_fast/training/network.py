"""The network's training step written out by hand: forward, loss and backward, no autograd.

A step of ``correct()`` is one large product (the first layer over every few
class's flattened source stack, forward and weight gradient) and a few dozen
tiny ones. Autograd's bookkeeping (graph nodes, saved tensors, gradient
accumulation) costs more than the tiny ones themselves, so the step here is
the chain rule written out (tested against autograd in float64), on
preallocated buffers.

The first layer's input is kept transposed, ``(K, F)`` for ``K = (k+1) d``
inputs and ``F`` few classes, and its weight as ``(K, h)`` (the transpose of
``nn.Linear``'s, the same values). On the CPU its two products, the forward
``stacksᵀ W1`` and the weight gradient ``stacks g``, are the Rust kernels'
(``_core.thin_t_dot`` and ``_core.thin_dot``): they cut ``K`` into pieces
fixed by the shape, read the input in place instead of packing it (the weight
gradient from a second, ``(F, K)`` copy, the layout it reads fastest, up to
:data:`ROWS_COPY_BYTES`), and add the forward's partial sums in piece order,
so the result never depends on the thread count. Each call runs on the
kernels' pool or on the calling thread alone, whichever
:class:`~.pieces.PieceRunner` has lately timed faster (on a shared machine, a
pool thread may wait for a core). The loss over the few classes and its
gradient in the coefficients are one Rust pass too (``_core.few_loss``). On
CUDA all of it is torch's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from alphanet_fast import _core
from alphanet_fast._errors import fail
from alphanet_fast._memory import memory_limit
from alphanet_fast.model import LEAKY_SLOPE, few_scores, init_layers
from alphanet_fast.training.pieces import PieceRunner

__all__ = ["FewNetwork", "check_network_size", "stacks_transposed"]

# Up to this size of input the weight gradient reads it from a second, (F, K) copy,
# the layout it reads fastest (ImageNet-LT: 6.7 MB); above it (iNaturalist-2018:
# 151 MiB) from the input itself, whose extra copy would cost more memory than
# the peak's bound (docs/large-data.md) allows.
ROWS_COPY_BYTES = 64 << 20

# F.normalize's floor under the L1 norm (the paper's a / ||a||_1 except at a == 0).
NORM_EPS = 1e-12


class _CpuBuffers(NamedTuple):
    """numpy views of the network's own tensors, which the Rust products read and
    write in place (a view keeps its tensor alive)."""

    stacks_t: np.ndarray  # (K, F): the forward reads it
    rows: np.ndarray  # (K, F), column-major where the (F, K) copy was made: the gradient's
    w1t: np.ndarray  # (K, h1): the first layer's weight
    grad_w1t: np.ndarray  # (K, h1): its gradient
    first: torch.Tensor  # (F, h1): the forward's product, before the bias


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


class FewNetwork:
    """The AlphaNet network over the few classes, with a hand-written training step.

    ``Linear(K -> h1) -> leaky ReLU -> ... -> Linear(h_last -> k)``, L1-normalised
    (:class:`~alphanet_fast.model.AlphaNetwork`'s function and initialisation,
    drawn from ``seed`` by a generator of the call's own). ``workers`` threads
    share the validation's coarse work (:meth:`share`); with more than one, the
    first layer's products may run on the kernels' pool. Use as a context
    manager: it owns those threads.

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
        self._runner = PieceRunner(workers if dev.type == "cpu" else 1)
        self._native: _CpuBuffers | None = None
        if dev.type == "cpu":
            n_bytes = stacks_t.numel() * stacks_t.element_size()
            rows = stacks_t.T.contiguous().T if n_bytes <= ROWS_COPY_BYTES else stacks_t
            self._native = _CpuBuffers(
                stacks_t.numpy(),
                rows.numpy(),
                self.params[0].numpy(),
                self.grads[0].numpy(),
                torch.empty((self.n_few, hidden_first(hidden, k)), dtype=stacks_t.dtype),
            )

    def __enter__(self) -> FewNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self._runner.__exit__(*exc)

    def share(self, fn: Callable[[Any], None], items: Iterable[Any]) -> None:
        """``fn(item)`` for every item, on this thread and the helpers (coarse work)."""
        self._runner.share(fn, items)

    def _first(self) -> torch.Tensor:
        """``stacks @ W1.T + b1``, ``(F, h1)``."""
        W1t, b1 = self.params[0], self.params[1]
        if self._native is None:
            return torch.addmm(b1, self.stacks_t.T, W1t)
        cpu = self._native
        _core.thin_t_dot(cpu.stacks_t, cpu.w1t, cpu.first.numpy(), self._runner.next_way())
        return cpu.first + b1

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
        """The batch's mean loss (a 0-d tensor, float64 on the CPU); the gradients are
        left in :attr:`grads`. On the CPU the loss and its gradient in the
        coefficients are one Rust pass (``_core.few_loss``), on CUDA tensor operations.

        ``steps`` are the batch's own scores (B, F), neighbour scores (B, F, k), base
        log-sum-exp, target score and target few index (-1: a base target), as
        :meth:`~.scoring.Feed.each_chunk` gives them.
        """
        own, nbs, lse, logit, target_few = steps
        zs, acts, norm, alphas = self._forward()
        if self._native is not None:
            # The loss and its gradient in the coefficients in one Rust pass (rust/few_loss.rs).
            g_alphas = torch.empty_like(alphas)
            loss = _core.few_loss(
                own.numpy(),
                nbs.reshape(nbs.shape[0], -1).numpy(),
                lse.numpy(),
                logit.numpy(),
                target_few.numpy(),
                alphas.numpy(),
                few_bias_t.numpy(),
                float(score_scale),
                g_alphas.numpy(),
            )
            self._backward(zs, acts, norm, alphas, g_alphas)
            return torch.tensor(loss, dtype=torch.float64)
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
        if self._native is None:
            torch.mm(self.stacks_t, g, out=self.grads[0])
            return
        cpu = self._native
        _core.thin_dot(cpu.rows, g.contiguous().numpy(), cpu.grad_w1t, self._runner.next_way())

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
    copies), with the second copy of its input that the CPU's weight gradient
    reads, could not fit in the memory this process may have, before torch tries."""
    widths = [(k + 1) * d, *hidden, k]
    params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    widest = max(widths[1:])
    copy = n_few * widths[0] if 4 * n_few * widths[0] <= ROWS_COPY_BYTES else 0
    need = 4 * (4 * params + 4 * n_few * widest * len(widths) + copy)
    limit, what = memory_limit()
    if need > limit:
        raise fail(
            "hidden",
            f"a network of widths {tuple(hidden)} on {widths[0]:,} inputs "
            f"would need {need / 2**30:,.1f} GiB for its parameters, gradients, "
            f"optimizer state and input, more than the {limit / 2**30:,.1f} GiB of {what}",
            value=hidden,
        )
