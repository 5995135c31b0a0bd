"""AdamW and a step learning-rate schedule over a fixed list of tensors.

The update is ``torch.optim.AdamW``'s (decoupled weight decay, no AMSGrad):
torch's fused AdamW kernel where the device has one (what
``torch.optim.AdamW(fused=True)`` runs), else the same multi-tensor ``_foreach``
ops as its ``foreach`` path. Why not the class itself:
the first ``torch.optim`` optimizer a process builds imports ``torch._dynamo``
(about 900 modules: 150 MB of resident memory and a second or two), which a
training run of a few thousand small steps does not need.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["AdamW"]


class AdamW:
    """AdamW on ``params``; the learning rate drops by ``gamma`` every ``step_size`` epochs.

    Parameters
    ----------
    params : list of Tensor
        The tensors updated in place; :meth:`step` reads their gradients from its
        argument or, without one, from their ``.grad``.
    lr, weight_decay : float
    step_size : int
        Epochs between learning-rate drops (``torch.optim.lr_scheduler.StepLR``).
    gamma : float
        Factor of each drop.
    betas, eps : as ``torch.optim.AdamW``.

    Examples
    --------
    >>> import torch
    >>> p = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = AdamW([p], lr=0.1, weight_decay=0.0, step_size=1, gamma=0.5)
    >>> p.grad = torch.tensor([2.0])
    >>> opt.step()
    >>> round(p.item(), 4), opt.lr
    (0.9, 0.1)
    >>> opt.end_epoch(); opt.lr
    0.05
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float,
        weight_decay: float,
        step_size: int,
        gamma: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.params = list(params)
        self.lr, self.weight_decay = lr, weight_decay
        self.step_size, self.gamma = step_size, gamma
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = 0
        self.epochs = 0
        self.fused = bool(self.params) and _has_fused_adamw(self.params[0].device)
        # The fused kernel counts steps in a float32 tensor per parameter, as torch's does.
        self._step_tensors = [
            torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params
        ]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor] | None = None) -> None:
        """One AdamW update from ``grads`` (one per parameter, in order), by default
        the parameters' ``.grad``."""
        if grads is None:
            grads = [p.grad for p in self.params]
        self.steps += 1
        if self.fused:
            torch._foreach_add_(self._step_tensors, 1)
            torch._fused_adamw_(
                self.params,
                grads,
                self.exp_avg,
                self.exp_avg_sq,
                [],
                self._step_tensors,
                amsgrad=False,
                lr=self.lr,
                beta1=self.beta1,
                beta2=self.beta2,
                weight_decay=self.weight_decay,
                eps=self.eps,
                maximize=False,
                grad_scale=None,
                found_inf=None,
            )
            return
        # Same operations, in the same order, as torch.optim.AdamW's multi-tensor path.
        torch._foreach_mul_(self.params, 1.0 - self.lr * self.weight_decay)
        torch._foreach_lerp_(self.exp_avg, grads, 1.0 - self.beta1)
        torch._foreach_mul_(self.exp_avg_sq, self.beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1.0 - self.beta2)
        bias_correction1 = 1.0 - self.beta1**self.steps
        bias_correction2 = 1.0 - self.beta2**self.steps
        step_size = self.lr / bias_correction1
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, bias_correction2**0.5)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.exp_avg, denom, -step_size)

    def end_epoch(self) -> None:
        """Count an epoch; every ``step_size`` epochs the learning rate is multiplied by
        ``gamma`` (repeatedly, as StepLR does, not ``lr0 * gamma ** n``)."""
        self.epochs += 1
        if self.epochs % self.step_size == 0:
            self.lr *= self.gamma


@functools.cache
def _has_fused_adamw(device: torch.device) -> bool:
    """Whether torch has a fused AdamW kernel for ``device`` (CPU: torch >= 2.4)."""
    try:
        p, g = torch.zeros(1, device=device), torch.ones(1, device=device)
        steps = [torch.ones((), dtype=torch.float32, device=device)]
        torch._fused_adamw_(
            [p],
            [g],
            [torch.zeros_like(p)],
            [torch.zeros_like(p)],
            [],
            steps,
            amsgrad=False,
            lr=0.1,
            beta1=0.9,
            beta2=0.999,
            weight_decay=0.0,
            eps=1e-8,
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )
    except (AttributeError, NotImplementedError, RuntimeError, TypeError):
        return False
    return True
