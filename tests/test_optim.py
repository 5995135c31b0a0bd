"""The training's own AdamW against torch.optim.AdamW and StepLR."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from alphanet_fast import _optim
from alphanet_fast._optim import AdamW, _has_fused_adamw


@pytest.mark.parametrize("path", ["fused", "foreach"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adamw_is_torch_adamw_with_step_lr_bitwise(weight_decay, path, monkeypatch):
    fused = path == "fused"
    if fused and not _has_fused_adamw(torch.device("cpu")):
        pytest.skip("this torch has no fused AdamW for the CPU")
    if not fused:
        monkeypatch.setattr(_optim, "_has_fused_adamw", lambda device: False)
    gen = torch.Generator().manual_seed(0)
    shapes = [(7, 5), (7,), (3, 7), (3,)]
    ours = [torch.randn(s, generator=gen, dtype=torch.float32) for s in shapes]
    theirs = [p.clone().requires_grad_() for p in ours]
    ours = [p.requires_grad_() for p in ours]
    opt = AdamW(ours, lr=0.05, weight_decay=weight_decay, step_size=2, gamma=0.3)
    assert opt.fused is fused
    kind = {"fused": True} if fused else {"foreach": True}
    ref = torch.optim.AdamW(theirs, lr=0.05, weight_decay=weight_decay, **kind)
    sched = torch.optim.lr_scheduler.StepLR(ref, step_size=2, gamma=0.3)
    for _epoch in range(5):
        for _ in range(4):
            grads = [torch.randn(s, generator=gen) * 3 for s in shapes]
            for p, q, g in zip(ours, theirs, grads):
                p.grad, q.grad = g.clone(), g.clone()
            opt.step()
            ref.step()
            for p, q in zip(ours, theirs):
                assert torch.equal(p, q)
        assert opt.lr == ref.param_groups[0]["lr"]
        opt.end_epoch()
        sched.step()
    assert opt.lr != 0.05  # the schedule did drop the rate
    opt.zero_grad()
    assert all(p.grad is None for p in ours)


def test_correct_does_not_import_torch_dynamo():
    # torch.optim's optimizers import torch._dynamo (about 150 MB resident) on first use.
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import alphanet_fast as af
        rng = np.random.default_rng(0)
        y = np.repeat(np.arange(6), [5, 6, 40, 40, 40, 40])
        x = rng.standard_normal((y.size, 4)).astype(np.float32)
        W = rng.standard_normal((6, 4)).astype(np.float32)
        af.correct(x, y, W, epochs=2, min_epochs=1, k=2, progress=False, device="cpu")
        assert "torch" in sys.modules
        print("torch._dynamo" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
