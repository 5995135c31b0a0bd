"""The re-trained baselines: learnable weight scaling (LWS) and classifier re-training (cRT).

Both follow Kang et al. 2020's second stage on frozen features: rows drawn
class-balanced (by ``training.sampling.ClassBalancedSampler``, the draw behind
AlphaNet's base samples), softmax cross-entropy, SGD with momentum 0.9 and a
cosine learning-rate schedule over all steps. Each batch's
rows are gathered from the features (a memory map is read row by row, never
copied whole), scored once, and dropped. Gradients are written out by hand
(the models are linear), and the optimiser is a few tensor ops, so
``torch.optim`` and autograd are not needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from alphanet_fast import _core
from alphanet_fast._errors import fail
from alphanet_fast._torch_env import loop_settings, parse_device
from alphanet_fast._validation import positive_int
from alphanet_fast.baselines._common import BaselineResult, Inputs, check_inputs, check_val
from alphanet_fast.training.sampling import ClassBalancedSampler

__all__ = ["crt", "lws"]


class _Scorer:
    """``b + x @ W.T`` for a batch, and the weights' gradient, with the weights held
    in the layout the device's products read fastest.

    On the CPU the weights are held transposed, ``(d, C)`` in C order, and both
    products are the Rust kernels of AlphaNet's first layer
    (:func:`alphanet_fast._core.thin_t_dot`, :func:`~alphanet_fast._core.thin_dot`)
    on the kernels' pool: ``d`` is cut into pieces fixed by the shape, so the
    result is the same on any number of threads. At cRT's shapes they run at
    1.5-2x torch's one-thread products (``benches/product_shapes.py``).
    On CUDA, torch's products on ``(C, d)``.
    """

    def __init__(self, dev: torch.device) -> None:
        self._cpu = dev.type == "cpu"

    def held(self, W: torch.Tensor) -> torch.Tensor:
        """``W`` (``C x d``) in the layout the products read (a new tensor on the CPU)."""
        return W.T.contiguous() if self._cpu else W

    def plain(self, held: torch.Tensor) -> torch.Tensor:
        """Held weights as ``C x d`` again (a view)."""
        return held.T if self._cpu else held

    def __call__(self, x: torch.Tensor, held: torch.Tensor, bt: torch.Tensor) -> torch.Tensor:
        if not self._cpu:
            return torch.addmm(bt, x, held.T)
        out = torch.empty(x.shape[0], held.shape[1], dtype=x.dtype)
        _core.thin_t_dot(x.numpy().T, held.numpy(), out.numpy(), True)
        return out.add_(bt)

    def grad_weights(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``g.T @ x``, each class summed over the whole batch, in the held layout."""
        if not self._cpu:
            return g.T @ x
        out = torch.empty(x.shape[1], g.shape[1], dtype=x.dtype)
        _core.thin_dot(x.numpy().T, g.numpy(), out.numpy(), True)
        return out


@contextmanager
def _loop(dev: torch.device) -> Iterator[_Scorer]:
    """The training loop's torch settings (:func:`~alphanet_fast._torch_env.loop_settings`)
    and a :class:`_Scorer` for ``dev``."""
    with loop_settings(dev):
        yield _Scorer(dev)


def _positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        found = f"{type(value).__name__} {value!r}"
        raise fail(name, f"expected a real number, found {found}", value=value, type_error=True)
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        relation = ">= 0" if allow_zero else "> 0"
        raise fail(name, f"expected a finite number {relation}, found {value!r}", value=value)
    return value


def _learning_rate(lr: Any) -> float:
    lr = _positive(lr, "lr")
    # The update runs in float32: a larger rate would not even convert.
    if lr > float(np.finfo(np.float32).max):
        raise fail("lr", f"expected at most float32's largest value, found {lr!r}", value=lr)
    return lr


def _seed(seed: Any) -> int:
    # torch's generators take seeds below 2**64, numpy's any size: [0, 2**63) suits both.
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise fail("seed", f"expected an integer, found {seed!r}", value=seed, type_error=True)
    if not 0 <= seed < 2**63:
        raise fail("seed", f"expected an integer in [0, 2**63), found {seed!r}", value=seed)
    return int(seed)


def _recipe(inp: Inputs, **kw: Any) -> dict[str, Any]:
    """The checked training settings, as reported in ``result.settings``."""
    spe = kw["samples_per_epoch"]
    return {
        "epochs": positive_int(kw["epochs"], "epochs"),
        "batch_size": positive_int(kw["batch_size"], "batch_size"),
        "samples_per_epoch": inp.y.shape[0]
        if spe is None
        else positive_int(spe, "samples_per_epoch"),
        "lr": _learning_rate(kw["lr"]),
        "momentum": 0.9,
        "weight_decay": _positive(kw["weight_decay"], "weight_decay", allow_zero=True),
        "schedule": "cosine over steps",
        "sampling": "class-balanced",
        "seed": _seed(kw["seed"]),
    }


def _fit(
    inp: Inputs,
    recipe: dict[str, Any],
    dev: torch.device,
    params: list[torch.Tensor],
    grads: Callable[[torch.Tensor, torch.Tensor], tuple[float, list[torch.Tensor]]],
    decay: list[bool],
) -> list[float]:
    """SGD with momentum and a cosine schedule over class-balanced batches.

    ``grads(x_batch, y_batch)`` returns the batch's mean loss and the gradient of
    every parameter; ``decay`` says which parameters get weight decay. The update
    is torch's SGD (momentum buffer starts at the first gradient, no dampening).
    Returns each epoch's mean batch loss.
    """
    rng = np.random.default_rng(recipe["seed"])
    # A class uniformly among those with rows, then one of its rows uniformly.
    sampler = ClassBalancedSampler(inp.y, np.flatnonzero(np.bincount(inp.y)))
    epochs, spe, bs = recipe["epochs"], recipe["samples_per_epoch"], recipe["batch_size"]
    steps_per_epoch = -(-spe // bs)
    total = epochs * steps_per_epoch
    bufs: list[torch.Tensor | None] = [None] * len(params)
    losses = []
    step = 0
    for _ in range(epochs):
        rows = sampler.draw(spe, rng)
        epoch_loss = 0.0
        for start in range(0, spe, bs):
            # Sorted within the batch: a memory map is then read front to back.
            idx = np.sort(rows[start : start + bs])
            xb = torch.from_numpy(np.asarray(inp.x[idx], dtype=np.float32)).to(dev)
            yb = torch.from_numpy(inp.y[idx]).to(dev)
            loss, gs = grads(xb, yb)
            lr = recipe["lr"] * 0.5 * (1.0 + math.cos(math.pi * step / total))
            for i, (p, g) in enumerate(zip(params, gs)):
                if decay[i] and recipe["weight_decay"]:
                    g.add_(p, alpha=recipe["weight_decay"])  # g is this step's own tensor
                bufs[i] = g if bufs[i] is None else bufs[i].mul_(0.9).add_(g)
                p.sub_(bufs[i], alpha=lr)
            epoch_loss += loss
            step += 1
        losses.append(epoch_loss / steps_per_epoch)
        _check_finite(params, len(losses), recipe["lr"])
    return losses


def _check_finite(params: list[torch.Tensor], epoch: int, lr: float) -> None:
    """Refuse weights that training made infinite or NaN (a learning rate too large)."""
    if not all(bool(torch.isfinite(p).all()) for p in params):
        raise fail(
            "lr",
            f"training diverged: the weights are not finite after epoch {epoch}; "
            f"lower lr (now {lr:g})",
            value=lr,
        )


def _softmax_minus_onehot(logits: torch.Tensor, yb: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Mean cross-entropy and its gradient with respect to the logits."""
    logp = torch.log_softmax(logits, dim=1)
    loss = -logp.gather(1, yb[:, None]).mean()
    g = logp.exp_()
    g[torch.arange(yb.shape[0], device=yb.device), yb] -= 1.0
    return float(loss), g.div_(yb.shape[0])


def _prepare(features: Any, labels: Any, W: Any, b: Any, val: Any) -> Inputs:
    inp = check_inputs(features, labels, W, b)
    _require_float32_range(inp.W, "W")
    _require_float32_range(inp.b, "b")
    if val is not None:
        check_val(val, inp.W.shape[1], inp.W.shape[0])
    return inp


def _require_float32_range(arr: np.ndarray, name: str) -> None:
    """LWS and cRT train in float32: a float64 value beyond its range would turn
    into infinity there and come back as non-finite weights."""
    if arr.dtype != np.float64:
        return
    big = np.abs(arr).reshape(arr.shape[0], -1).max(axis=1) > float(np.finfo(np.float32).max)
    rows = np.flatnonzero(big)
    if rows.size:
        row = int(rows[0])
        raise fail(
            name, f"row {row} has values beyond float32's range (lws and crt train in float32)", row
        )


def lws(
    features: Any,
    labels: Any,
    W: Any,
    b: Any = None,
    *,
    epochs: int = 10,
    batch_size: int = 512,
    samples_per_epoch: int | None = None,
    lr: float = 0.1,
    weight_decay: float = 0.0,
    val: tuple[Any, Any] | None = None,
    device: Any = "auto",
    seed: int = 0,
) -> BaselineResult:
    """Learnable weight scaling (Kang et al. 2020): one learned scale per class.

    The logits become ``s_c * (x . w_c + b_c)``; ``W``, ``b`` and the features
    are frozen, the scales start at 1 and are learned with class-balanced
    sampling. Each drawn row's scores against ``W`` are computed once (per
    draw), in its batch; only ``C`` numbers are trained. The result is
    ``W_c s_c`` and ``b_c s_c``.

    Parameters
    ----------
    features : array_like or path, shape (n, d)
        Training features; a memory map is read one batch of rows at a time.
    labels : array_like of int, shape (n,)
    W, b : the classifier
    epochs : int, default 10
    batch_size : int, default 512
    samples_per_epoch : int, optional
        Rows drawn per epoch; default the number of training rows.
    lr : float, default 0.1
        Peak learning rate of SGD (momentum 0.9), cosine-annealed to 0 over all steps.
    weight_decay : float, default 0
    val : (features, labels), optional
        Checked, not used: the recipe chooses nothing on validation and
        returns the last epoch's scales.
    device : str, default "auto"
        CUDA when torch sees one.
    seed : int, default 0
        Seeds the draws. Same seed and device: same result (torch runs on one
        CPU thread for the call, restored afterwards).

    Returns
    -------
    BaselineResult
        ``settings``: the recipe, ``scale_min``/``scale_max``; ``history``:
        ``{"loss": [...]}`` per epoch.

    Raises
    ------
    ValueError, TypeError
        Bad shapes, dtypes or values (the argument is named), or training that
        diverged (weights not finite: ``.argument`` is ``"lr"``).

    Examples
    --------
    >>> import alphanet_fast as af
    >>> from alphanet_fast.baselines import lws
    >>> data = af.datasets.make_long_tail("small", seed=0)
    >>> res = lws(data.train_features, data.train_labels, data.W, data.b, epochs=1)
    >>> res.W.shape == data.W.shape
    True
    """
    inp = _prepare(features, labels, W, b, val)
    recipe = _recipe(
        inp, epochs=epochs, batch_size=batch_size, samples_per_epoch=samples_per_epoch,
        lr=lr, weight_decay=weight_decay, seed=seed,
    )  # fmt: skip
    dev = parse_device(device)
    Wt = torch.tensor(inp.W, dtype=torch.float32, device=dev)
    bt = torch.tensor(inp.b, dtype=torch.float32, device=dev)
    scales = torch.ones(inp.W.shape[0], dtype=torch.float32, device=dev)

    with _loop(dev) as score:
        Wh = score.held(Wt)

        def grads(xb: torch.Tensor, yb: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
            z = score(xb, Wh, bt)  # this row's scores, computed once
            loss, g = _softmax_minus_onehot(z * scales, yb)
            return loss, [(g * z).sum(0)]

        losses = _fit(inp, recipe, dev, [scales], grads, [True])
    s = scales.cpu().double().numpy()
    dtype = inp.W.dtype
    with np.errstate(over="ignore"):
        W_new = np.ascontiguousarray(inp.W * s[:, None], dtype=dtype)
        b_new = (inp.b * s).astype(dtype)
    _check_finite(
        [torch.from_numpy(W_new), torch.from_numpy(b_new)], recipe["epochs"], recipe["lr"]
    )
    return BaselineResult(
        method="lws",
        W=W_new,
        b=b_new,
        settings={
            **recipe,
            "device": str(dev),
            "scale_min": float(s.min()),
            "scale_max": float(s.max()),
        },
        history={"loss": losses},
    )


def crt(
    features: Any,
    labels: Any,
    W: Any,
    b: Any = None,
    *,
    epochs: int = 10,
    batch_size: int = 512,
    samples_per_epoch: int | None = None,
    lr: float = 0.2,
    weight_decay: float = 5e-4,
    init: str = "random",
    val: tuple[Any, Any] | None = None,
    device: Any = "auto",
    seed: int = 0,
) -> BaselineResult:
    """Classifier re-training (Kang et al. 2020): a new linear layer on frozen features.

    The recipe, as the paper's second stage: a freshly initialised
    ``Linear(d, C)`` (torch's default initialisation, uniform in
    ``+-1/sqrt(d)``, from ``seed``), trained with softmax cross-entropy on
    class-balanced draws, SGD with momentum 0.9, weight decay on the weights,
    a cosine schedule, 10 epochs of ``n`` draws in batches of 512. With
    ``init="given"`` the layer starts from ``W`` and ``b`` instead (class-balanced
    fine-tuning), which needs far fewer steps on high-dimensional features.

    Parameters
    ----------
    features : array_like or path, shape (n, d)
        Training features; a memory map is read one batch of rows at a time,
        never copied whole.
    labels : array_like of int, shape (n,)
    W, b : the classifier (shape and dtype of the result)
    epochs : int, default 10
    batch_size : int, default 512
    samples_per_epoch : int, optional
        Rows drawn per epoch; default the number of training rows.
    lr : float, default 0.2
        Peak learning rate, cosine-annealed to 0 over all steps.
    weight_decay : float, default 5e-4
    init : {"random", "given"}, default "random"
        Start from torch's default initialisation (the paper's recipe) or from
        the given ``W`` and ``b``.
    val : (features, labels), optional
        Checked, not used (the last epoch is returned).
    device : str, default "auto"
    seed : int, default 0
        Seeds the initialisation and the draws.

    Returns
    -------
    BaselineResult
        ``settings``: the recipe; ``history``: ``{"loss": [...]}`` per epoch.

    Raises
    ------
    ValueError, TypeError
        Bad shapes, dtypes or values (the argument is named), or training that
        diverged (weights not finite: ``.argument`` is ``"lr"``).

    Examples
    --------
    >>> import alphanet_fast as af
    >>> from alphanet_fast.baselines import crt
    >>> data = af.datasets.make_long_tail("small", seed=0)
    >>> res = crt(data.train_features, data.train_labels, data.W, data.b, epochs=1)
    >>> res.W.dtype == data.W.dtype
    True
    """
    if init not in ("random", "given"):
        raise fail("init", f"expected 'random' or 'given', found {init!r}", value=init)
    inp = _prepare(features, labels, W, b, val)
    recipe = _recipe(
        inp, epochs=epochs, batch_size=batch_size, samples_per_epoch=samples_per_epoch,
        lr=lr, weight_decay=weight_decay, seed=seed,
    )  # fmt: skip
    dev = parse_device(device)
    n_classes, d = inp.W.shape
    if init == "random":
        Wn, bn = init_linear(n_classes, d, recipe["seed"])
    else:
        Wn = torch.tensor(inp.W, dtype=torch.float32)
        bn = torch.tensor(inp.b, dtype=torch.float32)
    Wn, bn = Wn.to(dev), bn.to(dev)

    with _loop(dev) as score:
        Wh = score.held(Wn)  # trained in this layout: the update is elementwise

        def grads(xb: torch.Tensor, yb: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
            loss, g = _softmax_minus_onehot(score(xb, Wh, bn), yb)
            return loss, [score.grad_weights(g, xb), g.sum(0)]

        losses = _fit(inp, recipe, dev, [Wh, bn], grads, [True, False])
        Wn = score.plain(Wh)
    dtype = inp.W.dtype
    return BaselineResult(
        method="crt",
        W=np.ascontiguousarray(Wn.cpu().numpy(), dtype=dtype),
        b=bn.cpu().numpy().astype(dtype),
        settings={**recipe, "device": str(dev), "init": init},
        history={"loss": losses},
    )


def init_linear(n_classes: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``Linear(d, n_classes)``'s default initialisation, drawn on the CPU from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    bound = 1.0 / math.sqrt(d)
    W = torch.empty(n_classes, d).uniform_(-bound, bound, generator=g)
    b = torch.empty(n_classes).uniform_(-bound, bound, generator=g)
    return W, b
