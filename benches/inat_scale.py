"""iNaturalist-2018-shaped correct(): time and peak RSS, features in memory or memory-mapped.

    python benches/inat_scale.py write 0 [DIR]       # writes DIR/inat_features.npy (3.6 GB)
    python benches/inat_scale.py memory EPOCHS [DIR] [val]
    python benches/inat_scale.py memmap EPOCHS [DIR] [val]

Synthetic data with the iNaturalist-2018 shape (437,513 x 2,048 float32,
8,142 classes, 3,224 of them few); with ``val``, a validation set of 3 rows a
class (24,426 x 2,048, in memory) as iNaturalist's. Prints one JSON line: seconds, peak RSS of
the call (Linux VmHWM, reset just before it), stage timings. Run by
``benches/test_bench_large.py`` when ``ALPHANET_FAST_INAT_BENCH=1``.

Exits non-zero when the peak breaks the bound docs/large-data.md claims: at most 1.3x
the features (and validation features) held in memory, at most 2 GiB with the
features memory-mapped.
"""

import json
import os
import sys
import tempfile
import time

import numpy as np

mode, epochs = sys.argv[1], int(sys.argv[2])
folder = sys.argv[3] if len(sys.argv) > 3 else tempfile.gettempdir()
path = os.path.join(folder, "inat_features.npy")
n, d, C = 437_513, 2048, 8142
rng = np.random.default_rng(0)
counts = np.concatenate(
    [rng.integers(2, 20, 3224), rng.integers(20, 101, 4076), np.zeros(842, int)]
)
rest = n - counts.sum()
many = rng.exponential(1.0, 842)
many = 101 + many / many.sum() * (rest - 101 * 842)
many = np.floor(many).astype(int)
many[: rest - many.sum()] += 1
counts[-842:] = many
labels = rng.permutation(np.repeat(np.arange(C), counts))
centres = rng.standard_normal((C, d), dtype=np.float32)
W = centres + rng.standard_normal((C, d), dtype=np.float32)
if mode == "write":
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for s in range(0, n, 50_000):
        e = min(n, s + 50_000)
        x[s:e] = centres[labels[s:e]] * 0.5 + rng.standard_normal((e - s, d), dtype=np.float32)
    x.flush()
    sys.exit()
val = None
if len(sys.argv) > 4 and sys.argv[4] == "val":
    val_labels = np.repeat(np.arange(C), 3)
    noise = rng.standard_normal((val_labels.size, d), dtype=np.float32)
    val = (centres[val_labels] * 0.5 + noise, val_labels)
    del noise
del centres  # only the data writer needs them

import alphanet_fast as af  # noqa: E402 - after the data writer, which needs only numpy


def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024


x = np.load(path, mmap_mode="r")
if mode == "memory":
    x = np.array(x)  # the features in memory
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
t = time.perf_counter()
res = af.correct(x, labels, W, epochs=epochs, progress=False, val=val)
figures = {
    "mode": mode,
    "epochs": epochs,
    "seconds": time.perf_counter() - t,
    "peak_rss_mb": status("VmHWM") / 2**20,
    "rss_before_mb": before / 2**20,
    "features_mb": n * d * 4 / 2**20,
    "val_mb": 0 if val is None else val[0].nbytes / 2**20,
    "few": int(res.splits.few.size),
    "timings": res.timings,
}
if mode == "memory":
    figures["bound_mb"] = 1.3 * (figures["features_mb"] + figures["val_mb"])
else:
    figures["bound_mb"] = 2048.0
print(json.dumps(figures))
if figures["peak_rss_mb"] > figures["bound_mb"]:
    sys.exit(
        f"peak RSS {figures['peak_rss_mb']:.0f} MiB above the claimed bound "
        f"{figures['bound_mb']:.0f} MiB ({mode})"
    )
