"""Memory-mapped features stream through the kernels without becoming resident."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import alphanet_fast as af
import numpy as np
import pytest

ROWS, DIM, CLASSES = 200_000, 512, 50  # 400 MB of float32

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import alphanet_fast as af
    import alphanet_fast._memory as memory
    memory.CHUNK_BYTES = 16 << 20
    path, labels_path, mode = sys.argv[1:4]
    x = np.load(path, mmap_mode="r")
    y = np.load(labels_path)
    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    # Reset the high-water mark so that the import's own peak does not hide ours.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status("VmRSS")
    if mode == "means":
        means, _ = af.class_means(x, y, {classes})
        np.save(sys.argv[4], means)
    elif mode == "path":
        means, _ = af.class_means(path, y, {classes})
        np.save(sys.argv[4], means)
    elif mode == "topk":
        af.topk_scores(x, np.eye({classes}, x.shape[1], dtype=x.dtype), k=3)
    else:  # plain numpy read of the same map: the control
        float(np.asarray(x).sum(dtype=np.float64))
    print(status("VmHWM") - before)
    """
).format(classes=CLASSES)


@pytest.fixture(scope="module")
def big_memmap(tmp_path_factory):
    root = tmp_path_factory.mktemp("mm")
    path = root / "features.npy"
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(ROWS, DIM))
    rng = np.random.default_rng(0)
    labels = rng.integers(0, CLASSES, ROWS)
    for start in range(0, ROWS, 20_000):
        block = rng.standard_normal((20_000, DIM), dtype=np.float32)
        block += labels[start : start + 20_000, None].astype(np.float32)
        x[start : start + 20_000] = block
    x.flush()
    del x
    np.save(root / "labels.npy", labels)
    return path, root / "labels.npy"


def extra_rss(path, labels_path, mode, out=None):
    args = [sys.executable, "-c", SCRIPT, str(path), str(labels_path), mode]
    if out is not None:
        args.append(str(out))
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_memmap_means_stay_small_and_match(big_memmap, tmp_path):
    path, labels_path = big_memmap
    size = ROWS * DIM * 4
    control = extra_rss(path, labels_path, "plain")
    # The control shows the measurement can see a resident map.
    assert control > 0.8 * size
    for mode in ("means", "path"):
        grew = extra_rss(path, labels_path, mode, tmp_path / f"{mode}.npy")
        assert grew < 0.25 * size, f"{mode}: RSS grew {grew / 2**20:.0f} MiB"
    in_memory, _ = af.class_means(np.load(path), np.load(labels_path), CLASSES)
    for mode in ("means", "path"):
        np.testing.assert_allclose(np.load(tmp_path / f"{mode}.npy"), in_memory, rtol=1e-6)


def test_memmap_topk_stays_small(big_memmap):
    path, labels_path = big_memmap
    assert extra_rss(path, labels_path, "topk") < 0.25 * ROWS * DIM * 4


def test_memmap_error_names_the_global_row(tmp_path):
    x = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=(5000, 64))
    x[:] = 1.0
    x[4321, 3] = np.inf
    x.flush()
    import alphanet_fast._memory as memory

    old = memory.CHUNK_BYTES
    memory.CHUNK_BYTES = 64 * 4 * 1000  # 1000 rows per chunk
    try:
        with pytest.raises(ValueError, match="row 4321"):
            af.class_means(np.load(tmp_path / "x.npy", mmap_mode="r"), np.zeros(5000, int))
    finally:
        memory.CHUNK_BYTES = old
