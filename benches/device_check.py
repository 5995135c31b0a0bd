"""One command for a GPU host: correct() on CPU beside CUDA, and the kernels beside torch.

    python benches/device_check.py --out result.json             # the full check
    python benches/device_check.py --quick --out result.json     # the small shape only
    python benches/device_check.py --shapes imagenet_lt,inat --out result.json

For every shape (``small``: the test profile; ``imagenet_lt``: 115,846 x 2,048,
1,000 classes; ``inat``: 437,513 x 2,048, 8,142 classes, 3,224 few, as
iNaturalist-2018), with validation and default settings:

* runs: ``correct()`` on the CPU cores and on CUDA (matmul precision "highest",
  then "high" for TF32), wall seconds, ``result.timings`` per stage and peak GPU
  memory. At ``inat`` the CPU run is shortened to ``--cpu-epochs-inat`` epochs
  (a full one takes minutes even on 16 cores); CUDA runs that many epochs too,
  for the agreement, besides the full run for the timings.
* agreement: each CUDA run against the CPU run with the same epochs: same
  splits, neighbours and chosen epoch, accuracy per split within 0.2 points,
  and the largest alpha difference beside the spread of alphas between two
  CPU seeds (the scale of differences that training itself makes).
* kernels: ``class_means``, ``nearest_neighbors`` and ``topk_scores`` on the CPU
  cores beside torch on the GPU doing the same job (float32, data already on
  the GPU; the host-to-device copy is timed apart), with how far apart the
  answers are.

Without CUDA the CUDA sections say ``"skipped"`` and the CPU sections still run;
``--device cpu`` runs the "device" side on the CPU too (what the test suite
does, where both sides must agree bitwise). The JSON is rewritten after every
shape, so a run cut short keeps what it finished; after ``--budget-s`` seconds no
further run starts (what is left says "skipped").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu_info import describe_cpu  # noqa: E402 - the benches folder, for a plain script run

SHAPES = ("small", "imagenet_lt", "inat")
PRECISIONS = ("highest", "high")
ACCURACY_POINTS = 0.2  # largest accepted test-accuracy difference per split, in points


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="device_check.json", help="JSON file to write")
    p.add_argument("--shapes", default=",".join(SHAPES), help=f"comma list of {SHAPES}")
    p.add_argument("--quick", action="store_true", help="small shape, 3 epochs, one repeat")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--cpu-epochs-inat", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="kernel timings: median of this many")
    p.add_argument("--device", default="cuda", help="the device to check against the CPU")
    p.add_argument("--alpha-tol", type=float, default=2e-3, help="largest alpha difference")
    p.add_argument(
        "--budget-s", type=float, default=330, help="start no further run after this many seconds"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.shapes, args.epochs, args.repeats = "small", 3, 1
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = sorted(set(args.shapes) - set(SHAPES))
    if unknown:
        p.error(f"--shapes: unknown {unknown}; expected some of {SHAPES}")
    return args


# ---------------------------------------------------------------- data


def inat_data(seed: int = 0) -> dict:
    """iNaturalist-2018-shaped synthetic data: 3,224 few (2..19 rows), 4,076 medium, 842 many.

    As ``make_long_tail``: class centres plus unit Gaussian noise, but without a
    trained baseline (``W`` is the centres plus noise) and filled by several
    threads, so that 3.6 GB take seconds.
    """
    n, d, c = 437_513, 2048, 8142
    rng = np.random.default_rng(seed)
    counts = np.concatenate([rng.integers(2, 20, 3224), rng.integers(20, 101, 4076)])
    many = rng.exponential(1.0, 842)
    rest = n - counts.sum()
    many = np.floor(101 + many / many.sum() * (rest - 101 * 842)).astype(np.int64)
    many[: rest - many.sum()] += 1
    counts = np.concatenate([counts, many])
    labels = rng.permutation(np.repeat(np.arange(c), counts))
    centres = rng.standard_normal((c, d), dtype=np.float32)
    W = centres + rng.standard_normal((c, d), dtype=np.float32)
    val_labels = np.repeat(np.arange(c), 3)
    return {
        "train": (_noisy(centres, labels, 0.5, seed + 1), labels),
        "val": (_noisy(centres, val_labels, 0.5, seed + 2), val_labels),
        "test": None,
        "W": W,
        "b": np.zeros(c, np.float32),
    }


def _noisy(centres: np.ndarray, labels: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """``scale * centres[labels]`` plus unit noise, filled in parallel blocks."""
    out = np.empty((labels.size, centres.shape[1]), np.float32)
    block = 16_384
    starts = range(0, labels.size, block)
    seeds = np.random.SeedSequence(seed).spawn(len(starts))

    def fill(i: int, lo: int) -> None:
        sl = slice(lo, lo + block)
        np.random.default_rng(seeds[i]).standard_normal(out=out[sl], dtype=np.float32)
        out[sl] += scale * centres[labels[sl]]

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(fill, range(len(starts)), starts))
    return out


def make_data(shape: str) -> dict:
    if shape == "inat":
        return inat_data()
    from alphanet_fast.datasets import make_long_tail

    data = make_long_tail(shape, seed=0)
    return {
        "train": (data.train_features, data.train_labels),
        "val": (data.val_features, data.val_labels),
        "test": (data.test_features, data.test_labels),
        "W": data.W,
        "b": data.b,
    }


# ---------------------------------------------------------------- correct() runs


def run_correct(data: dict, device: str, epochs: int, precision: str, seed: int = 0):
    """One correct() call: its result and a summary (wall, stages, peak GPU memory)."""
    import alphanet_fast as af
    import torch

    torch.set_float32_matmul_precision(precision)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    x, y = data["train"]
    res = af.correct(
        x, y, data["W"], data["b"], val=data["val"], epochs=epochs,
        min_epochs=min(5, epochs), device=device, seed=seed, progress=False,
    )  # fmt: skip
    wall = time.perf_counter() - t
    torch.set_float32_matmul_precision("highest")
    held = data["test"] or data["val"]
    report = af.evaluate(held[0], held[1], res.W, res.b, splits=res, k=1)
    summary = {
        "device": device, "precision": precision, "epochs": epochs, "seed": seed,
        "wall_s": round(wall, 3), "timings_s": {k: round(v, 4) for k, v in res.timings.items()},
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
        "best_epoch": res.best_epoch,
        "accuracy_points": {k: round(100 * v, 3) for k, v in report.accuracy[1].items()},
        "accuracy_on": "test" if data["test"] else "val",
    }  # fmt: skip
    return res, summary


def agreement(cpu, dev, cpu_sum: dict, dev_sum: dict, spread: float | None, tol: float) -> dict:
    """How far a device run is from the CPU run with the same epochs."""
    same_splits = all(
        np.array_equal(getattr(cpu.splits, s), getattr(dev.splits, s))
        for s in ("few", "medium", "many")
    )
    acc = {
        s: round(abs(cpu_sum["accuracy_points"][s] - dev_sum["accuracy_points"][s]), 3)
        for s in cpu_sum["accuracy_points"]
    }
    alpha_diff = float(np.max(np.abs(cpu.alphas - dev.alphas))) if cpu.alphas.size else 0.0
    out = {
        "same_splits": same_splits,
        "same_neighbors": bool(np.array_equal(cpu.neighbors, dev.neighbors)),
        "same_best_epoch": cpu.best_epoch == dev.best_epoch,
        "accuracy_diff_points": acc,
        "accuracy_ok": all(v <= ACCURACY_POINTS for v in acc.values() if not math.isnan(v)),
        "alphas_max_abs_diff": alpha_diff,
        "alphas_seed_spread": spread,
        "alphas_ok": alpha_diff <= tol,
    }
    keys = ("same_splits", "same_neighbors", "same_best_epoch", "accuracy_ok", "alphas_ok")
    out["ok"] = all(out[k] for k in keys)
    return out


def check_shape(shape: str, data: dict, args, device: str | None) -> dict:
    """CPU and device runs of one shape and their agreement."""
    full = args.epochs
    cpu_epochs = min(args.cpu_epochs_inat, full) if shape == "inat" else full
    out: dict = {"runs": {}, "agreement": {}}
    cpu_res, out["runs"]["cpu"] = run_correct(data, "cpu", cpu_epochs, "highest")
    _show(shape, "cpu", out["runs"]["cpu"])
    spread = None
    if shape != "inat":  # a second seed costs a whole CPU run
        other, out["runs"]["cpu_seed1"] = run_correct(data, "cpu", cpu_epochs, "highest", seed=1)
        spread = float(np.max(np.abs(cpu_res.alphas - other.alphas)))
    if device is None:
        out["runs"]["device"] = out["agreement"] = "skipped: torch sees no CUDA device"
        return out
    for precision in PRECISIONS:
        name = f"{device}_{precision}"
        if time.perf_counter() > args.deadline:
            out["runs"][name] = "skipped: over --budget-s"
            print(f"[{shape}] {name}: skipped, over --budget-s", flush=True)
            continue
        res, out["runs"][name] = run_correct(data, device, full, precision)
        _show(shape, name, out["runs"][name])
        if cpu_epochs != full:
            name += f"_{cpu_epochs}_epochs"
            res, out["runs"][name] = run_correct(data, device, cpu_epochs, precision)
        out["agreement"][name] = agreement(
            cpu_res, res, out["runs"]["cpu"], out["runs"][name], spread, args.alpha_tol
        )
        print(f"  agreement {name}: {json.dumps(out['agreement'][name])}", flush=True)
    return out


def _show(shape: str, name: str, s: dict) -> None:
    print(
        f"[{shape}] {name}: {s['wall_s']:.2f} s, {s['epochs']} epochs, best {s['best_epoch']}, "
        f"peak GPU {s['peak_gpu_mb']} MB, stages {s['timings_s']}",
        flush=True,
    )


# ---------------------------------------------------------------- kernels


def timed(fn, repeats: int, sync=None) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls (after one warm-up) and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        if sync:
            sync()
        t = time.perf_counter()
        result = fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), result


def kernels(data: dict, device: str, repeats: int) -> dict:
    """Our CPU kernels beside torch on ``device`` doing the same job."""
    import alphanet_fast as af
    import torch

    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    x, y = data["train"]
    c = data["W"].shape[0]
    out = {"peer_device": device}

    ours_s, (means, counts) = timed(lambda: af.class_means(x, y, c), repeats)
    t = time.perf_counter()
    xt, yt = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
    if sync:
        sync()
    h2d = time.perf_counter() - t

    def peer_means():
        sums = torch.zeros((c, x.shape[1]), dtype=torch.float32, device=dev)
        sums.index_add_(0, yt, xt)
        return sums / torch.bincount(yt, minlength=c).clamp_min(1)[:, None]

    peer_s, peer = timed(peer_means, repeats, sync)
    out["class_means"] = {
        "shape": [*x.shape, c], "ours_s": ours_s, "peer_s": peer_s, "h2d_copy_s": h2d,
        "max_abs_diff": float(np.max(np.abs(peer.cpu().numpy() - means))),
    }  # fmt: skip

    few = np.flatnonzero(counts < 20)
    base = np.flatnonzero(counts >= 20)
    q, p = np.ascontiguousarray(means[few]), np.ascontiguousarray(means[base])
    ours_s, (nb, _) = timed(lambda: af.nearest_neighbors(q, p, k=5), repeats)
    qt, pt = torch.from_numpy(q).to(dev), torch.from_numpy(p).to(dev)

    def peer_nn():
        d2 = (qt * qt).sum(1)[:, None] - 2 * qt @ pt.T + (pt * pt).sum(1)[None]
        return torch.topk(d2, 5, largest=False).indices

    peer_s, peer_nb = timed(peer_nn, repeats, sync)
    out["nearest_neighbors"] = {
        "shape": [len(few), len(base), x.shape[1]], "ours_s": ours_s, "peer_s": peer_s,
        "rows_with_same_neighbours": float(np.mean(np.all(peer_nb.cpu().numpy() == nb, axis=1))),
    }  # fmt: skip

    held = data["test"] or data["val"]
    W, b = data["W"], data["b"]
    ours_s, (idx, _) = timed(lambda: af.topk_scores(held[0], W, b, k=5), repeats)
    ht, Wt, bt = (torch.from_numpy(a).to(dev) for a in (held[0], W, b))
    peer_s, peer_idx = timed(
        lambda: torch.topk(torch.addmm(bt, ht, Wt.T), 5).indices, repeats, sync
    )
    out["topk_scores"] = {
        "shape": [*held[0].shape, c], "ours_s": ours_s, "peer_s": peer_s,
        "rows_with_same_top1": float(np.mean(peer_idx[:, 0].cpu().numpy() == idx[:, 0])),
    }  # fmt: skip
    for name in ("class_means", "nearest_neighbors", "topk_scores"):
        print(f"  kernel {name}: {json.dumps(out[name])}", flush=True)
    return out


# ---------------------------------------------------------------- main


def environment(device: str | None) -> dict:
    import alphanet_fast as af
    import torch

    env = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "alphanet_fast": getattr(af, "__version__", "?"),
        "cpu": describe_cpu(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device and device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
        t = time.perf_counter()
        # The CUDA context and cuBLAS handle, timed apart from every run.
        ones = torch.ones((64, 64), device=device)
        (ones @ ones).sum().item()
        env["cuda_init_s"] = round(time.perf_counter() - t, 3)
    return env


def check_all(shape: str, args, device: str | None) -> dict:
    """Data, correct() runs, agreement and kernels of one shape."""
    t = time.perf_counter()
    data = make_data(shape)
    entry = {"data_s": round(time.perf_counter() - t, 2)}
    entry.update(check_shape(shape, data, args, device))
    entry["kernels"] = kernels(data, device or "cpu", args.repeats)
    if device is None:
        entry["kernels"]["note"] = "no CUDA: the peer is torch on the CPU"
    return entry


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    t0 = time.perf_counter()
    args.deadline = t0 + args.budget_s
    device: str | None = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        device = None
    result = {"environment": environment(device), "args": vars(args), "shapes": {}}
    print(json.dumps(result["environment"]), flush=True)
    if device is None:
        print("CUDA: skipped (torch sees no CUDA device); CPU sections only", flush=True)
    for shape in args.shapes:
        if time.perf_counter() > args.deadline:
            result["shapes"][shape] = "skipped: over --budget-s"
        else:
            result["shapes"][shape] = check_all(shape, args, device)
        result["elapsed_s"] = round(time.perf_counter() - t0, 1)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    print(f"wrote {args.out} after {result['elapsed_s']} s", flush=True)
    return result


if __name__ == "__main__":
    main()
