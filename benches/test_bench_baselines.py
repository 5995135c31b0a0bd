"""The baselines beside their peers, same data, same run.

* ``ncm`` beside ``class_means`` alone (the one pass it cannot avoid);
* ``tau_norm`` / ``logit_adjust`` choosing tau over a 21-value grid on the
  validation set, beside one ``topk_scores`` pass over it (the product they need);
* ``lws`` / ``crt``, one epoch, beside a plain torch loop a user would write
  (``nn.Linear``, autograd, ``torch.optim.SGD``, torch's default threads) doing
  the same epoch on the same draws; with the peak memory each adds.

By default small shapes, so the file runs as a quick test
(``pytest benches --benchmark-disable``). With ``ALPHANET_FAST_FULL_BENCH=1``
the ImageNet-LT shape: 115,846 x 2,048 training rows, 1,000 classes, 20,000
validation rows::

    ALPHANET_FAST_FULL_BENCH=1 pytest benches/test_bench_baselines.py -s
"""

from __future__ import annotations

import math
import os

import alphanet_fast as af
import numpy as np
import pytest
from alphanet_fast.baselines import crt, logit_adjust, lws, ncm, tau_norm
from alphanet_fast.training import class_balanced_rows

FULL = os.environ.get("ALPHANET_FAST_FULL_BENCH") == "1"
SHAPE = (115_846, 2048, 1000, 20_000) if FULL else (6_000, 64, 100, 2_000)


@pytest.fixture(scope="module")
def problem():
    n, d, C, n_val = SHAPE
    rng = np.random.default_rng(0)
    counts = np.maximum(5, (1280 * np.arange(1, C + 1, dtype=float) ** -1.1)).astype(int)
    y = rng.choice(C, size=n, p=counts / counts.sum())
    y[:C] = np.arange(C)  # every class present
    x = rng.standard_normal((n, d), dtype=np.float32)
    W = rng.standard_normal((C, d), dtype=np.float32) * 0.05
    b = rng.standard_normal(C, dtype=np.float32) * 0.1
    vx = rng.standard_normal((n_val, d), dtype=np.float32)
    vy = rng.integers(0, C, size=n_val)
    return x, y, W, b, (vx, vy)


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _peak_extra_mb(fn):
    """Run ``fn`` once; the peak resident memory it added beyond what was there (MiB)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        return fn(), math.nan
    before = _status_kb("VmRSS")
    out = fn()
    return out, (_status_kb("VmHWM") - before) / 1024


@pytest.mark.parametrize("impl", ["ncm cosine cl2n", "ncm euclidean", "class_means"])
def test_bench_ncm(benchmark, problem, impl):
    x, y, W, b, _ = problem
    benchmark.group = f"ncm, {x.shape[0]} x {x.shape[1]}, C={W.shape[0]}"
    calls = {
        "ncm cosine cl2n": lambda: ncm(x, y, W, b),
        "ncm euclidean": lambda: ncm(x, y, W, b, metric="euclidean", cl2n=False),
        "class_means": lambda: af.class_means(x, y, W.shape[0]),
    }
    benchmark.pedantic(calls[impl], rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("impl", ["tau_norm grid", "logit_adjust grid", "topk_scores"])
def test_bench_tau_selection(benchmark, problem, impl):
    x, y, W, b, val = problem
    benchmark.group = f"tau over 21 values on {val[0].shape[0]} validation rows"
    calls = {
        "tau_norm grid": lambda: tau_norm(x, y, W, b, val=val),
        "logit_adjust grid": lambda: logit_adjust(x, y, W, b, val=val),
        "topk_scores": lambda: af.topk_scores(val[0], W, b, k=1),
    }
    benchmark.pedantic(calls[impl], rounds=3, warmup_rounds=1)


def _plain_torch_epoch(method, x, y, W, b, batch_size=512, seed=0):
    """What a user would write: nn.Linear, autograd, torch.optim.SGD, default threads."""
    import torch

    classes = np.flatnonzero(np.bincount(y))
    rows = class_balanced_rows(y, classes, y.shape[0], np.random.default_rng(seed))
    layer = torch.nn.Linear(W.shape[1], W.shape[0])
    if method == "lws":
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(W))
            layer.bias.copy_(torch.from_numpy(b))
        layer.requires_grad_(False)
        scales = torch.ones(W.shape[0], requires_grad=True)
        params, lr = [scales], 0.1
    else:
        params, lr = list(layer.parameters()), 0.2
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, -(-y.shape[0] // batch_size))
    for start in range(0, rows.size, batch_size):
        idx = np.sort(rows[start : start + batch_size])
        logits = layer(torch.from_numpy(x[idx]))
        if method == "lws":
            logits = logits * scales
        torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[idx])).backward()
        opt.step()
        opt.zero_grad()
        sched.step()


@pytest.mark.parametrize("impl", ["lws", "lws plain torch", "crt", "crt plain torch"])
def test_bench_trained_epoch(benchmark, problem, impl):
    x, y, W, b, _ = problem
    method = impl.split()[0]
    benchmark.group = f"{method}, one epoch of {x.shape[0]} draws, d={x.shape[1]}, C={W.shape[0]}"
    ours = {"lws": lws, "crt": crt}[method]

    def run():
        if impl.endswith("plain torch"):
            return _plain_torch_epoch(method, x, y, W, b)
        return ours(x, y, W, b, epochs=1, device="cpu")

    _, extra = _peak_extra_mb(run)
    benchmark.extra_info["peak_extra_mb"] = round(extra, 1)
    print(f"\n[{impl}] peak memory beyond the inputs: {extra:.0f} MiB")
    benchmark.pedantic(run, rounds=1 if FULL else 2)
