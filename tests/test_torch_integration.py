"""alphanet_fast.torch: from a model and a DataLoader to a corrected model."""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import alphanet_fast as af
import alphanet_fast.torch as aft
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torch_toys import COUNTS, TinyCNN, long_tail, mlp

ROOT = Path(__file__).resolve().parents[1]


def test_find_head_common_layouts():
    class ResNetLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(4, 4)
            self.fc = nn.Linear(4, 3)

    class EfficientNetLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(4, 4)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(4, 3))

    class TimmLike(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
            self.head = nn.Linear(4, 3)

    for model, expected in [
        (ResNetLike(), "fc"),
        (EfficientNetLike(), "classifier.1"),
        (TimmLike(), "head"),
        (mlp(), "2"),
    ]:
        found = aft.find_head(model)
        assert found is model.get_submodule(expected)
        assert aft.find_head(model, expected) is found
    lone = nn.Linear(2, 2)
    assert aft.find_head(lone) is lone


def test_find_head_errors_name_the_candidates():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.classifier = nn.Linear(4, 3)

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 3)
            self.b = nn.Linear(4, 3)

    with pytest.raises(ValueError, match="'fc', 'classifier'"):
        aft.find_head(TwoHeads())
    with pytest.raises(ValueError, match="candidates: 'a', 'b'"):
        aft.find_head(Branchy())
    with pytest.raises(ValueError, match="no nn.Linear"):
        aft.find_head(nn.Sequential(nn.Conv2d(1, 1, 1), nn.ReLU()))
    with pytest.raises(ValueError, match="no submodule 'nope'"):
        aft.find_head(Branchy(), "nope")
    with pytest.raises(ValueError, match="holds 2 Linear"):
        aft.find_head(nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))), "0")
    with pytest.raises(TypeError, match="model"):
        aft.find_head("resnet")
    with pytest.raises(ValueError, match="not a submodule"):
        aft.extract(mlp(), [], head=nn.Linear(12, 8))


def test_extract_equals_a_manual_forward_and_restores_training_flags():
    torch.manual_seed(0)
    model = TinyCNN()
    x, y = long_tail(image=True)
    model.features[1].eval()  # a frozen BatchNorm inside a training model stays frozen
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    feats, labels = aft.extract(model, loader)
    assert model.training and not model.features[1].training and model.drop.training
    model.eval()
    with torch.no_grad():
        manual = model.penultimate(x).numpy()
    # Shuffled rows: match each extracted row to its sample through the labels' order.
    assert feats.dtype == np.float32 and labels.dtype == np.int64
    assert sorted(labels.tolist()) == sorted(y.tolist())
    order = np.lexsort(np.round(feats, 4).T[::-1])
    ref_order = np.lexsort(np.round(manual, 4).T[::-1])
    np.testing.assert_allclose(feats[order], manual[ref_order], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels[order], y.numpy()[ref_order])


def test_extract_float64_and_dict_batches():
    torch.manual_seed(1)
    model = mlp().double()
    x, y = long_tail()
    batches = [
        {"inputs": x[i : i + 50].double(), "labels": y[i : i + 50]} for i in range(0, 319, 50)
    ]
    feats, labels = aft.extract(model, batches, dtype=np.float64)
    with torch.no_grad():
        manual = model[1](model[0](x.double())).numpy()
    np.testing.assert_array_equal(feats, manual)
    np.testing.assert_array_equal(labels, y.numpy())

    def own(batch):
        return batch["inputs"], batch["labels"]

    renamed = [{"inputs": b["inputs"], "labels": b["labels"], "id": 0} for b in batches]
    with pytest.raises(TypeError, match="missing 1 required positional|unexpected keyword"):
        aft.extract(model, renamed)  # two input entries go as keywords
    again = aft.extract(model, renamed, batch_to_inputs=own, dtype=np.float64)
    np.testing.assert_array_equal(again.features, feats)


def test_extract_half_precision_is_cast():
    model = mlp().to(torch.bfloat16)
    x, y = long_tail()
    feats, _ = aft.extract(model, DataLoader(TensorDataset(x.bfloat16(), y), batch_size=64))
    assert feats.dtype == np.float32
    with torch.no_grad():
        manual = model[1](model[0](x.bfloat16())).float().numpy()
    np.testing.assert_array_equal(feats, manual)
    # Autocast on a float32 model: bfloat16 inside, float32 rows out, close to the exact ones.
    model = mlp()
    exact, _ = aft.extract(model, [(x, y)])
    mixed, _ = aft.extract(model, [(x, y)], autocast=torch.bfloat16)
    assert mixed.dtype == np.float32 and not np.array_equal(mixed, exact)
    np.testing.assert_allclose(mixed, exact, rtol=0.05, atol=0.05)


def test_extract_bad_batches_and_heads():
    model = mlp()
    x, y = long_tail()
    with pytest.raises(TypeError, match="batch: expected"):
        aft.extract(model, [x[:4]])
    with pytest.raises(TypeError, match="labels under one of"):
        aft.extract(model, [{"x": x[:4]}])
    with pytest.raises(TypeError, match="labels: expected integer"):
        aft.extract(model, [(x[:4], torch.rand(4))])
    with pytest.raises(ValueError, match="one label per sample"):
        aft.extract(model, [(x[:4], nn.functional.one_hot(y[:4], 8))])
    with pytest.raises(ValueError, match="3 labels for a batch of 4"):
        aft.extract(model, [(x[:4], y[:3])])
    with pytest.raises(ValueError, match="yielded no samples"):
        aft.extract(model, [])
    with pytest.raises(TypeError, match="dtype"):
        aft.extract(model, [(x, y)], dtype=np.float16)
    per_token = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 3))
    with pytest.raises(ValueError, match=r"expected its input to be \(batch, d\)"):
        aft.extract(per_token, [(torch.zeros(2, 5, 6), torch.zeros(2, dtype=torch.long))])
    unused = TinyCNN()
    unused.spare = nn.Linear(16, 8)  # registered, never called
    with pytest.raises(ValueError, match="was not called"):
        aft.extract(unused, [(torch.zeros(2, 1, 6, 6), y[:2])], head="spare")


def test_streamed_features_are_written_atomically(tmp_path):
    torch.manual_seed(2)
    model = mlp()
    x, y = long_tail()
    loader = DataLoader(TensorDataset(x, y), batch_size=40)
    in_memory = aft.extract(model, loader)
    streamed = aft.extract(model, loader, out=tmp_path / "train")
    assert isinstance(streamed.features, np.memmap)
    np.testing.assert_array_equal(np.load(tmp_path / "train.npy"), in_memory.features)
    np.testing.assert_array_equal(np.load(tmp_path / "train.labels.npy"), in_memory.labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.labels.npy", "train.npy"]

    def failing():
        yield x[:10], y[:10]
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        aft.extract(model, failing(), out=tmp_path / "train.npy")
    # The earlier files are untouched and no temporary file is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.labels.npy", "train.npy"]
    assert np.load(tmp_path / "train.npy").shape == (len(y), 12)


MEMORY_SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    import alphanet_fast.torch as aft

    def batches(n=32768, size=1024):
        # Inputs are made on the fly; only the features (n x 1024 float32) are large.
        for lo in range(0, n, size):
            ids = torch.arange(lo, lo + size)
            yield (ids % 7).float()[:, None].expand(size, 8), ids % 5

    def peak_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    model = torch.nn.Sequential(torch.nn.Linear(8, 1024), torch.nn.Linear(1024, 5))
    aft.extract(model, batches(1024))  # warm up torch's allocator
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak
    before = peak_mib()
    out = sys.argv[1] if sys.argv[1] != "-" else None
    feats, labels = aft.extract(model, batches(), out=out)
    assert feats.shape == (32768, 1024) and labels.shape == (32768,)
    print(peak_mib() - before)
    """
)


def _peak_growth_mib(out: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, out], capture_output=True, text=True, check=True
    )
    return float(done.stdout.split()[-1])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_streaming_to_disk_keeps_memory_below_the_data(tmp_path):
    features_mib = 32768 * 1024 * 4 / 2**20  # 128 MiB
    streamed = _peak_growth_mib(str(tmp_path / "big.npy"))
    # Control: the same extraction held in memory does exceed the bound.
    held = _peak_growth_mib("-")
    bound = features_mib / 3
    assert held > features_mib > bound
    print(f"peak growth: streamed {streamed:.0f} MiB, held {held:.0f} MiB")
    assert streamed < bound, f"streamed extraction grew the peak by {streamed:.0f} MiB"
    assert np.load(tmp_path / "big.npy", mmap_mode="r").shape == (32768, 1024)


class MeansInWorkers(Dataset):
    """Each item calls a Rust kernel, so the forked workers use the thread pool."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        row = self.x[i].numpy()[None, :]
        means, counts = af.class_means(np.repeat(row, 3, axis=0), np.zeros(3, np.int64))
        assert counts[0] == 3
        return torch.from_numpy(means[0].astype(np.float32)), self.y[i]


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_dataloader_fork_workers_with_the_kernels():
    x, y = long_tail()
    af.class_means(x.numpy(), y.numpy())  # the parent's pool exists before the fork
    model = mlp()
    loader = DataLoader(
        MeansInWorkers(x, y), batch_size=32, num_workers=2, multiprocessing_context="fork"
    )
    feats, labels = aft.extract(model, loader)
    with torch.no_grad():
        manual = model[1](model[0](x)).numpy()
    np.testing.assert_allclose(feats, manual, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(labels, y.numpy())
    means, counts = af.class_means(feats, labels)
    ref = np.stack([feats[labels == c].astype(np.float64).mean(0) for c in range(8)])
    np.testing.assert_allclose(means, ref, rtol=1e-6)
    np.testing.assert_array_equal(counts, COUNTS)


def test_correct_model_logits_match_the_result():
    torch.manual_seed(3)
    model = TinyCNN()
    x, y = long_tail(image=True)
    train = DataLoader(TensorDataset(x, y), batch_size=64)
    val = DataLoader(TensorDataset(*long_tail(seed=1, image=True)), batch_size=64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fixed, res = aft.correct_model(model, train, val_loader=val, epochs=3, progress=False)
    assert fixed is not model
    for k, v in model.state_dict().items():  # the original is untouched
        assert torch.equal(v, before[k])
    assert res.splits.few.tolist() == [5, 6, 7]
    assert not np.array_equal(res.W, before["fc.weight"].numpy())
    feats, _ = aft.extract(model, train)
    fixed.eval()
    with torch.no_grad():
        logits = fixed(x).numpy()
    np.testing.assert_allclose(logits, feats @ res.W.T + res.b, rtol=1e-5, atol=1e-5)
    # In place: the model itself, same parameter objects.
    weight = model.fc.weight
    same, _ = aft.correct_model(model, train, epochs=3, progress=False, inplace=True)
    assert same is model and model.fc.weight is weight
    with pytest.raises(TypeError, match="val_loader"):
        aft.correct_model(model, train, val=(feats, y.numpy()))


def test_apply_to_checks_shapes_and_keeps_dtype():
    model = mlp().double()
    W = np.arange(96, dtype=np.float32).reshape(8, 12)
    aft.apply_to(model, SimpleNamespace(W=W, b=np.ones(8)))
    assert model[2].weight.dtype == torch.float64
    np.testing.assert_array_equal(model[2].weight.detach().numpy(), W)
    np.testing.assert_array_equal(model[2].bias.detach().numpy(), np.ones(8))
    with pytest.raises(ValueError, match=r"result.W: expected shape \(8, 12\)"):
        aft.apply_to(model, SimpleNamespace(W=W.T, b=np.ones(8)))
    with pytest.raises(ValueError, match=r"result.b: expected shape \(8,\)"):
        aft.apply_to(model, SimpleNamespace(W=W, b=np.ones(7)))
    with pytest.raises(ValueError, match="NaN"):
        aft.apply_to(model, SimpleNamespace(W=W * np.nan, b=np.ones(8)))
    with pytest.raises(TypeError, match="W and b"):
        aft.apply_to(model, W)
    no_bias = nn.Linear(12, 8, bias=False)
    with pytest.raises(ValueError, match="no bias"):
        aft.apply_to(no_bias, SimpleNamespace(W=W, b=np.ones(8)))
    aft.apply_to(no_bias, SimpleNamespace(W=W, b=np.zeros(8)))
    np.testing.assert_array_equal(no_bias.weight.detach().numpy(), W)


def test_docstring_examples():
    names = (
        "alphanet_fast.torch.heads",
        "alphanet_fast.torch.features",
        "alphanet_fast.torch.models",
        "alphanet_fast.torch.shipping",
    )
    for module in (aft, *(sys.modules[n] for n in names), sys.modules["alphanet_fast.typing"]):
        flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        result = doctest.testmod(module, optionflags=flags)
        assert result.attempted > 0 and result.failed == 0


def test_package_import_stays_light_and_lists_lazy_names():
    code = (
        "import sys, alphanet_fast as af\n"
        "names = dir(af)\n"
        "print('torch' in sys.modules, all(n in names for n in ('correct', 'datasets', 'torch')))\n"
        "af.torch\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True"]


def test_example_script_runs_quickly(tmp_path):
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "long_tail_cnn.py"), "--quick"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "baseline" in done.stdout and "AlphaNet" in done.stdout


def _doc_blocks(page: str, section: str) -> list[str]:
    """The Python blocks of the section headed ``section`` of the Markdown file ``page``."""
    text = (ROOT / page).read_text()
    body = re.split(rf"\n#+ {re.escape(section)}\n", text, maxsplit=1)[1]
    body = re.split(r"\n#+ ", body, maxsplit=1)[0]
    return [block.split("```", 1)[0] for block in body.split("```python\n")[1:]]


def test_docs_three_steps_and_splits_sections_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(4)
    x, y = long_tail()
    namespace = {
        "aft": aft,
        "np": np,
        "model": mlp(),
        "train_loader": DataLoader(TensorDataset(x, y), batch_size=64),
    }
    (block,) = _doc_blocks("docs/pytorch.md", "The three steps, for data larger than memory")
    exec(block, namespace)
    assert namespace["res"].splits.few.tolist() == [5, 6, 7]
    assert (tmp_path / "train.labels.npy").exists()
    np.testing.assert_array_equal(namespace["model"][2].weight.detach().numpy(), namespace["res"].W)
    (block,) = _doc_blocks("docs/python-api.md", "Synthetic data, and splits without `correct()`")
    exec(block, namespace)
    assert namespace["splits"].n_classes == len(namespace["data"].W)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_extract_on_cuda_moves_the_model_back():
    torch.manual_seed(6)
    model = mlp()
    x, y = long_tail()
    on_cpu = aft.extract(model, [(x, y)])
    on_gpu = aft.extract(model, [(x, y)], device="cuda")
    assert model[0].weight.device.type == "cpu"
    np.testing.assert_allclose(on_gpu.features, on_cpu.features, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(on_gpu.labels, on_cpu.labels)
