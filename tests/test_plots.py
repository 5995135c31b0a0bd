"""PNG plots: written atomically, non-empty, of the requested pixel size."""

from __future__ import annotations

import math
import os

import alphanet_fast as af
import matplotlib.image as mpimg
import numpy as np
import pytest
from alphanet_fast import plots


@pytest.fixture(scope="module")
def reports():
    rng = np.random.default_rng(0)
    C, d, n = 30, 8, 500
    X, W, b = rng.normal(size=(n, d)), rng.normal(size=(C, d)), rng.normal(size=C)
    y = rng.integers(0, C, size=n)
    splits = af.splits_from_counts(rng.integers(1, 200, size=C))
    nb = (splits.few, np.stack([rng.choice(splits.base, 3, replace=False) for _ in splits.few]))
    before = af.evaluate(X, y, W, b, splits=splits, neighbors=nb)
    after = af.evaluate(X, y, W + 0.5 * rng.normal(size=W.shape), b, splits=splits, neighbors=nb)
    return before, after, splits


def check_png(path, size, dpi, folder):
    assert path.exists() and path.stat().st_size > 0
    img = mpimg.imread(path)
    assert img.shape[:2] == (round(size[1] * dpi), round(size[0] * dpi))
    assert img[..., :3].std() > 0.01  # something was drawn
    assert not [p for p in os.listdir(folder) if p.endswith(".tmp")]


@pytest.mark.parametrize(("size", "dpi"), [((10.0, 4.0), 100), ((6.0, 3.0), 50)])
def test_split_accuracies(reports, tmp_path, size, dpi):
    before, after, _ = reports
    out = plots.plot_split_accuracies(
        {"baseline": before, "AlphaNet": after}, tmp_path / "a.png", size=size, dpi=dpi
    )
    assert out == tmp_path / "a.png"
    check_png(out, size, dpi, tmp_path)


def test_gain_vs_distance(reports, tmp_path):
    before, after, splits = reports
    few = splits.few
    gain = after.per_class[1][few] - before.per_class[1][few]
    dist = np.random.default_rng(1).uniform(1, 3, size=(few.size, 3))
    out = plots.plot_gain_vs_distance(dist, gain, tmp_path / "g.png", size=(5, 4), dpi=80)
    check_png(out, (5, 4), 80, tmp_path)
    with pytest.raises(ValueError, match="distance: expected one value"):
        plots.plot_gain_vs_distance(dist[:-1], gain, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_pearson_r_matches_numpy_and_skips_nan():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=50), rng.normal(size=50)
    assert plots.pearson_r(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    x2, y2 = np.append(x, np.nan), np.append(y, 1.0)
    assert plots.pearson_r(x2, y2) == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert math.isnan(plots.pearson_r([1.0, 1.0], [2.0, 3.0]))


def test_rho_sweep(reports, tmp_path):
    before, after, _ = reports
    out = plots.plot_rho_sweep(
        {0.5: [before, after], 1.0: [after], 1.5: [after, before, after]},
        tmp_path / "s.png",
        baseline=before,
        dpi=60,
    )
    check_png(out, (6.5, 4.5), 60, tmp_path)
    with pytest.raises(ValueError, match="sweep"):
        plots.plot_rho_sweep({1.0: []}, tmp_path / "e.png")


def test_error_breakdown(reports, tmp_path):
    before, after, splits = reports
    out = plots.plot_error_breakdown({"baseline": before, "AlphaNet": after}, tmp_path / "e.png")
    check_png(out, (6.0, 4.5), 100, tmp_path)
    rng = np.random.default_rng(3)
    plain = af.evaluate(rng.normal(size=(5, 8)), [0] * 5, rng.normal(size=(30, 8)), splits=splits)
    with pytest.raises(ValueError, match="no few-split breakdown"):
        plots.plot_error_breakdown({"plain": plain}, tmp_path / "x.png")
    with pytest.raises(TypeError, match="EvaluationReport"):
        plots.plot_error_breakdown({"bad": {"few": 1}}, tmp_path / "x.png")


def test_overwrites_existing_file(reports, tmp_path):
    before, after, _ = reports
    target = tmp_path / "a.png"
    target.write_bytes(b"old")
    plots.plot_split_accuracies({"baseline": before}, target, dpi=40)
    check_png(target, (10.0, 4.0), 40, tmp_path)
