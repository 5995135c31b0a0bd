"""Speed and peak memory of ``correct()``, paired with the plain implementation of the method.

By default the "small" profile, so the file also runs as a quick plain test
(``pytest benches --benchmark-disable``). With ``ALPHANET_FAST_FULL_BENCH=1``:
the ImageNet-LT profile at d = 2048 (115,846 train rows, 20,000 validation
rows), default hyperparameters (25 epochs, validation every epoch), which is
the issue's target: under 10 s on 2 cores, peak RSS within the inputs plus 600 MB.

    ALPHANET_FAST_FULL_BENCH=1 pytest benches/test_bench_correct.py -s

The peer, "naive", is the same method with no shortcut (W' formed and the
batch scored against every class at each step, every validation row scored
against all of W' each epoch): the independent reference of
``tests/test_reference_alphanet.py``, with torch's own AdamW and StepLR. It draws
the same samples and starts from the same weights, so both learn the same alphas
(checked: ``test_the_pair_learns_the_same_alphas``). Both run as a user runs
them: at torch's default thread count, which correct() itself lowers to one for
its training loop and spreads over its scoring workers. "naive_one_thread" is the
peer with torch on one thread, as correct()'s training loop: on a shared machine
torch's multi-threaded small ops stall whenever another process holds a core, so
this pair isolates what the shortcuts save from what the threading costs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import alphanet_fast as af
import numpy as np
import pytest
from alphanet_fast.datasets import make_long_tail

FULL = os.environ.get("ALPHANET_FAST_FULL_BENCH") == "1"
PROFILE = "imagenet_lt" if FULL else "small"
MEMORY_HEADROOM_MB = 600
ARRAYS = ("train_features", "train_labels", "val_features", "val_labels", "W", "b")


def _naive_correct():
    path = Path(__file__).resolve().parents[1] / "tests" / "test_reference_alphanet.py"
    spec = importlib.util.spec_from_file_location("alphanet_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_alphanet


# Alphas learned by each implementation in this session, for the pair's comparison.
_ALPHAS: dict[str, np.ndarray] = {}


def _run(impl, data):
    args = (data.train_features, data.train_labels, data.W, data.b)
    val = (data.val_features, data.val_labels)
    if impl == "alphanet_fast":
        return af.correct(*args, val=val, progress=False)
    if impl == "naive_one_thread":
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return _naive_correct()(*args, val=val)
        finally:
            torch.set_num_threads(previous)
    return _naive_correct()(*args, val=val)


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    data = make_long_tail(PROFILE, seed=0, n_test_per_class=0)
    folder = tmp_path_factory.mktemp("bench_correct")
    for name in ARRAYS:
        np.save(folder / f"{name}.npy", getattr(data, name))
    return data, folder


def _mb(n_bytes: float) -> float:
    return n_bytes / 2**20


@pytest.mark.parametrize("impl", ["alphanet_fast", "naive", "naive_one_thread"])
def test_bench_correct(benchmark, problem, impl):
    data, _ = problem
    benchmark.group = f"correct, {PROFILE} profile, d={data.W.shape[1]}"
    rounds = 3 if FULL and impl == "alphanet_fast" else 1
    result = benchmark.pedantic(lambda: _run(impl, data), rounds=rounds)
    if impl == "alphanet_fast":
        benchmark.extra_info["stages_s"] = {k: round(v, 3) for k, v in result.timings.items()}
        benchmark.extra_info["best_epoch"] = result.best_epoch
        print(f"\n[{impl}] stages (s):", json.dumps(benchmark.extra_info["stages_s"]))
        _ALPHAS[impl] = result.alphas
    else:
        _ALPHAS[impl] = result["alphas"]


def test_the_pair_learns_the_same_alphas(problem):
    """Same method, same draws: otherwise the timings above compare different work."""
    data, _ = problem
    for impl in ("alphanet_fast", "naive"):
        if impl not in _ALPHAS:  # its benchmark was deselected
            result = _run(impl, data)
            _ALPHAS[impl] = result.alphas if impl == "alphanet_fast" else result["alphas"]
    assert _ALPHAS["alphanet_fast"].shape == _ALPHAS["naive"].shape
    np.testing.assert_allclose(_ALPHAS["alphanet_fast"], _ALPHAS["naive"], rtol=1e-3, atol=1e-3)


MEASURE = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    import alphanet_fast as af
    from alphanet_fast.datasets import make_long_tail

    def status_bytes(field):
        # Linux: this process's own figures. ru_maxrss is not: a child started by a
        # big process (pytest holding the data) inherits the parent's peak through exec.
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024

    # Warm up: torch loads code lazily on first use; that is not our working memory.
    tiny = make_long_tail("small", n_classes=30, dim=8, seed=0, n_test_per_class=0)
    af.correct(tiny.train_features, tiny.train_labels, tiny.W, tiny.b,
               val=(tiny.val_features, tiny.val_labels), epochs=2, progress=False)
    before_inputs = status_bytes("VmRSS")
    a = {name: np.load(f"{sys.argv[1]}/{name}.npy") for name in sys.argv[2:]}
    inputs = sum(arr.nbytes for arr in a.values())
    start = time.perf_counter()
    res = af.correct(a["train_features"], a["train_labels"], a["W"], a["b"],
                     val=(a["val_features"], a["val_labels"]), progress=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"before_inputs": before_inputs, "inputs": inputs,
                      "peak": status_bytes("VmHWM"),
                      "seconds": seconds, "timings": res.timings}))
    """
)


def test_peak_memory(problem):
    """Peak RSS of a fresh process running correct() once, beyond the interpreter and torch.

    Read from /proc/self/status (VmHWM) on Linux: ``ru_maxrss`` of a child includes
    the peak of the process that started it (kept across exec), here pytest's.
    """
    _, folder = problem
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(folder), *ARRAYS],
        capture_output=True,
        text=True,
        check=True,
    )
    m = json.loads(out.stdout.strip().splitlines()[-1])
    used = m["peak"] - m["before_inputs"]
    limit = m["inputs"] + MEMORY_HEADROOM_MB * 2**20
    print(
        f"\n[{PROFILE}] correct() in a fresh process: {m['seconds']:.2f} s; inputs "
        f"{_mb(m['inputs']):.0f} MB; peak RSS {_mb(m['peak']):.0f} MB, of which "
        f"{_mb(m['before_inputs']):.0f} MB interpreter+torch before the inputs, so "
        f"{_mb(used):.0f} MB for inputs + work (limit {_mb(limit):.0f} MB); "
        f"stages {json.dumps({k: round(v, 3) for k, v in m['timings'].items()})}"
    )
    assert used <= limit, f"peak {_mb(used):.0f} MB above inputs + {MEMORY_HEADROOM_MB} MB"


# One training step (the network's forward, the loss over all classes from the frozen
# scores, and every gradient): autograd over torch's nn.Linear layers at torch's
# default thread count, as a user would write it, against correct()'s hand-written
# step (training.network.FewNetwork: torch on one thread for the small layers, the
# first layer's two products and the loss in the Rust kernels, on their pool).
# Shapes: the iNaturalist-2018 few classes (3,224 x (5 + 1) x 2,048) and
# ImageNet-LT's (136 x (5 + 1) x 2,048), a batch of 64.
LAYER_SHAPES = [(3224, 6 * 2048), (136, 6 * 2048)] if FULL else [(400, 6 * 256)]


def _step_batch(n_few, k, gen):
    import torch

    own, nbs = torch.randn((64, n_few), generator=gen), torch.randn((64, n_few, k), generator=gen)
    lse, logit = torch.randn(64, generator=gen) + 3, torch.randn(64, generator=gen)
    return own, nbs, lse, logit, torch.randint(-1, n_few, (64,), generator=gen)


@pytest.mark.parametrize("shape", LAYER_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("impl", ["autograd_default_threads", "hand_written_rust"])
def test_bench_step(benchmark, impl, shape):
    import torch
    from alphanet_fast._torch_env import loop_settings
    from alphanet_fast.model import build_network, few_scores
    from alphanet_fast.training.network import FewNetwork
    from alphanet_fast.training.trainer import sample_losses

    gen = torch.Generator().manual_seed(0)
    k, n_few = 5, shape[0]
    stacks = torch.randn(shape, generator=gen)
    batch, bias = _step_batch(n_few, k, gen), torch.zeros(n_few)
    benchmark.group = f"training step, {shape[0]} x {shape[1]}"
    if impl == "autograd_default_threads":
        net = build_network(shape[1], k, (32, 32, 32), seed=0, device=torch.device("cpu"))

        def step():
            net.zero_grad()
            scores = few_scores(batch[0], batch[1], net(stacks), bias, 1.0)
            sample_losses(scores, *batch[2:]).mean().backward()

        benchmark.pedantic(step, rounds=200, iterations=1, warmup_rounds=2)
        return
    workers = torch.get_num_threads()
    stacks_t = stacks.T.contiguous()
    with loop_settings(torch.device("cpu")):
        with FewNetwork(stacks_t, k, (32, 32, 32), seed=0, workers=workers) as fn:
            benchmark.pedantic(
                lambda: fn.step_loss(batch, bias, 1.0), rounds=200, iterations=1, warmup_rounds=2
            )
