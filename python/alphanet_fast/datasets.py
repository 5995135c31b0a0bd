"""Synthetic long-tailed classification data that behaves like the real thing.

:func:`make_long_tail` builds features in groups of similar classes (so a rare
class has close frequent neighbours, as a rare dog breed has common ones), a
long-tailed training split with the paper's split definitions, balanced
validation and test splits, and a baseline linear classifier trained with plain
softmax cross-entropy on the long-tailed split, whose rare classes are weak, as
a cRT model's are. It runs in seconds, so tests, demos and benchmarks need no
downloads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from alphanet_fast._errors import fail
from alphanet_fast._validation import positive_int
from alphanet_fast.settings import FEW_BELOW, MANY_ABOVE

__all__ = ["LongTailData", "PROFILES", "make_long_tail", "long_tail_counts"]

# Per profile: class counts per split, count range, geometry and baseline training.
# Distances are in units of the per-dimension noise standard deviation (1).
PROFILES: dict[str, dict] = {
    "small": {
        "n_classes": 200,
        "split_fractions": (0.35, 0.45, 0.20),  # many, medium, few
        "max_count": 400,
        "min_count": 4,
        "total": None,
        "dim": 64,
        "latent_dim": 64,
        "group_size": 10,
        "between_group": 12.0,
        "within_group": (1.0, 10.0),
        "n_val_per_class": 20,
        "n_test_per_class": 50,
        "baseline_epochs": 2,
        "baseline_lr": 0.02,
        "baseline_batch": 256,
    },
    "imagenet_lt": {
        "n_classes": 1000,
        "split_fractions": (0.385, 0.479, 0.136),  # ImageNet-LT: 385 / 479 / 136
        "max_count": 1280,
        "min_count": 5,
        "total": 115_846,
        "dim": 2048,
        "latent_dim": 128,
        "group_size": 10,
        "between_group": 12.0,
        "within_group": (1.0, 10.0),
        "n_val_per_class": 20,
        "n_test_per_class": 50,
        "baseline_epochs": 2,
        "baseline_lr": 0.02,
        "baseline_batch": 512,
    },
}


@dataclass(eq=False)
class LongTailData:
    """A synthetic long-tailed problem with a baseline classifier.

    Attributes
    ----------
    train_features, val_features, test_features : ndarray of float32, shape (n, d)
    train_labels, val_labels, test_labels : ndarray of int64, shape (n,)
        Train is long-tailed; val and test have the same number of rows per class.
    W : ndarray of float32, shape (C, d)
    b : ndarray of float32, shape (C,)
        The baseline linear classifier, trained with softmax cross-entropy on the
        long-tailed train split.
    class_names : list of str
        ``"groupGG/classCCCC"``.
    groups : ndarray of int64, shape (C,)
        The group (super-class) of every class.
    counts : ndarray of int64, shape (C,)
        Training rows per class.
    profile : str
    seed : int
    """

    train_features: np.ndarray
    train_labels: np.ndarray
    val_features: np.ndarray
    val_labels: np.ndarray
    test_features: np.ndarray
    test_labels: np.ndarray
    W: np.ndarray
    b: np.ndarray
    class_names: list
    groups: np.ndarray
    counts: np.ndarray
    profile: str = ""
    seed: int = 0

    @property
    def n_classes(self) -> int:
        return int(self.W.shape[0])

    def __repr__(self) -> str:
        return (
            f"LongTailData(profile={self.profile!r}, classes={self.n_classes}, "
            f"dim={self.W.shape[1]}, train={self.train_labels.size}, "
            f"val={self.val_labels.size}, test={self.test_labels.size}, seed={self.seed})"
        )


def _segment(n: int, hi: float, lo: float, power: float) -> np.ndarray:
    """n descending counts from hi to lo, log-spaced and bent by ``power`` (>1: most near lo)."""
    if n == 0:
        return np.zeros(0)
    if n == 1:
        return np.array([float(hi)])
    t = np.linspace(0.0, 1.0, n)
    return lo * (hi / lo) ** ((1.0 - t) ** power)


def long_tail_counts(
    n_many: int,
    n_medium: int,
    n_few: int,
    *,
    max_count: int,
    min_count: int,
    total: int | None = None,
    few_below: int = FEW_BELOW,
    many_above: int = MANY_ABOVE,
) -> np.ndarray:
    """Descending per-class training counts with exactly the requested split sizes.

    Few and medium counts are log-spaced over their ranges; the many counts fall
    from ``max_count`` as a bent log curve whose bend is solved so that the counts
    sum to ``total`` (when given), like ImageNet-LT's head.

    Parameters
    ----------
    n_many, n_medium, n_few : int
        Classes per split.
    max_count, min_count : int
        The largest (a many class) and smallest (a few class) count.
    total : int, optional
        Exact sum of all counts.
    few_below, many_above : int, default 20, 100
        The split thresholds the counts must respect.

    Returns
    -------
    ndarray of int64, shape (n_many + n_medium + n_few,)
        Many counts first, then medium, then few.

    Raises
    ------
    ValueError
        ``total`` cannot be reached within the split ranges.

    Examples
    --------
    >>> c = long_tail_counts(385, 479, 136, max_count=1280, min_count=5, total=115_846)
    >>> int(c.sum()), int(c.max()), int(c.min()), int((c > 100).sum()), int((c < 20).sum())
    (115846, 1280, 5, 385, 136)
    """
    few = np.round(_segment(n_few, few_below - 1, min_count, 1.0)) if n_few else np.zeros(0)
    medium = np.round(_segment(n_medium, many_above, few_below, 1.0))
    hi, lo = max_count, many_above + 1
    if total is None:
        many = np.round(_segment(n_many, hi, lo, 2.0))
    else:
        target = total - few.sum() - medium.sum()
        if not n_many * lo <= target <= n_many * hi:
            raise fail("total", f"{total} cannot be reached with these split sizes", value=total)
        lo_p, hi_p = 1e-3, 1e3  # sum decreases as the bend grows: bisect on log(power)
        for _ in range(200):
            mid = math.sqrt(lo_p * hi_p)
            if _segment(n_many, hi, lo, mid).sum() > target:
                lo_p = mid
            else:
                hi_p = mid
        many = np.round(_segment(n_many, hi, lo, math.sqrt(lo_p * hi_p)))
        # Rounding leaves a few units over or under: spread them over the middle of the head.
        gap = int(target - many.sum())
        i = n_many // 2
        while gap and n_many > 2:
            step = 1 if gap > 0 else -1
            if lo < many[i] + step < hi:
                many[i] += step
                gap -= step
            i = 1 + (i % (n_many - 2))
        many = np.sort(many)[::-1]
    return np.concatenate([many, medium, few]).astype(np.int64)


def _train_baseline(
    z: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    epochs: int,
    lr: float,
    batch: int,
    rng: np.random.Generator,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression with plain cross-entropy on the long-tailed rows (Adam, minibatches)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = torch.nn.Linear(z.shape[1], n_classes)
    opt = torch.optim.Adam(layer.parameters(), lr=lr)
    z_t, y_t = torch.from_numpy(z), torch.from_numpy(y)
    prev_threads = torch.get_num_threads()
    # Small steps: one thread is faster than two on a shared machine, and the
    # thread count is fixed so the result does not depend on the caller's setting.
    torch.set_num_threads(1)
    try:
        for _ in range(epochs):
            perm = torch.from_numpy(rng.permutation(y.size))
            for lo in range(0, y.size, batch):
                idx = perm[lo : lo + batch]
                loss = torch.nn.functional.cross_entropy(layer(z_t[idx]), y_t[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(prev_threads)
    return layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy()


def _sample(rng: np.random.Generator, centres: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Float32 features of ``labels``: each class's centre plus standard normal noise,
    drawn in blocks of about 16 MiB."""
    dim = centres.shape[1]
    out = np.empty((labels.size, dim), dtype=np.float32)
    block = max(1, (16 << 20) // (4 * dim))
    for lo in range(0, labels.size, block):
        sl = slice(lo, lo + block)
        rng.standard_normal(out=out[sl], dtype=np.float32)
        out[sl] += centres[labels[sl]]
    return out


def _baseline(
    p: dict,
    train_features: np.ndarray,
    train_labels: np.ndarray,
    basis: np.ndarray | None,
    n_classes: int,
    epochs: int,
    rng: np.random.Generator,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The baseline classifier ``(W, b)`` in float32, trained in the centres' subspace
    (``basis``, or the features themselves without one) and mapped back to ``dim``."""
    latent = train_features if basis is None else train_features @ basis.T
    W_latent, b = _train_baseline(
        latent,
        train_labels,
        n_classes,
        epochs=epochs,
        lr=p["baseline_lr"],
        batch=p["baseline_batch"],
        rng=rng,
        seed=seed,
    )
    W = W_latent if basis is None else W_latent @ basis
    return np.ascontiguousarray(W, dtype=np.float32), b.astype(np.float32)


def make_long_tail(
    profile: str = "small",
    *,
    n_classes: int | None = None,
    dim: int | None = None,
    seed: int = 0,
    n_val_per_class: int | None = None,
    n_test_per_class: int | None = None,
    group_size: int | None = None,
    baseline_epochs: int | None = None,
) -> LongTailData:
    """A synthetic long-tailed classification problem and its baseline classifier.

    Every group of ``group_size`` classes shares a centre; class centres scatter
    around it (how tightly varies by group), and features are centre plus unit
    Gaussian noise. Centres live in a ``latent_dim``-dimensional subspace of the
    ``dim``-dimensional features (the rest is noise), and the baseline
    classifier is trained in that subspace, so a 2048-d problem takes seconds.
    Training counts follow the profile's long tail and are dealt to classes at
    random, so a group mixes frequent and rare classes.

    Parameters
    ----------
    profile : {"small", "imagenet_lt"}
        ``"small"``: 200 classes (70 many / 90 medium / 40 few, counts 4..400),
        64-d, 17,187 training rows; for tests, in a fraction of a second.
        ``"imagenet_lt"``: 1000 classes, 385 many / 479 medium / 136 few, counts
        5..1280, 115,846 training rows, 2048-d, as ImageNet-LT.
    n_classes : int, optional
        Override the class count (split sizes keep the profile's proportions).
    dim : int, optional
        Feature dimension.
    seed : int, default 0
        Everything, the baseline included, is determined by it.
    n_val_per_class, n_test_per_class : int, optional
        Balanced split sizes (profile default 20 and 50; 0 leaves a split empty).
    group_size : int, optional
        Classes per group (default 10).
    baseline_epochs : int, optional
        Epochs of baseline training (default 4: enough for frequent classes,
        too few for rare ones, which is the long-tail failure AlphaNet fixes).

    Returns
    -------
    LongTailData

    Raises
    ------
    TypeError
        Non-integer sizes.
    ValueError
        Unknown profile, negative or too small sizes.

    Examples
    --------
    >>> from alphanet_fast.datasets import make_long_tail
    >>> data = make_long_tail("small", seed=0)
    >>> data.W.shape, data.train_features.dtype, data.class_names[17]
    ((200, 64), dtype('float32'), 'group01/class0017')
    """
    given = {
        "n_classes": n_classes,
        "dim": dim,
        "group_size": group_size,
        "baseline_epochs": baseline_epochs,
        "n_val_per_class": n_val_per_class,
        "n_test_per_class": n_test_per_class,
    }
    p, size = _checked_profile(profile, seed, given)
    n_classes, dim, group_size = size["n_classes"], size["dim"], size["group_size"]
    epochs = size["baseline_epochs"]

    sorted_counts = _profile_counts(p, n_classes)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x10E7A11]))
    counts = sorted_counts[rng.permutation(n_classes)]  # deal the tail out across groups
    groups = np.arange(n_classes, dtype=np.int64) // group_size
    n_groups = int(groups[-1]) + 1
    centres_full, basis = _class_centres(p, rng, groups, dim)

    sets = _draw_sets(rng, centres_full, counts, size["n_val_per_class"], size["n_test_per_class"])
    train_features, train_labels, val_features, val_labels, test_features, test_labels = sets

    W, b = _baseline(p, train_features, train_labels, basis, n_classes, epochs, rng, seed)
    width = max(2, len(str(n_groups - 1)))
    names = [f"group{g:0{width}d}/class{c:04d}" for c, g in enumerate(groups)]
    return LongTailData(
        train_features=train_features,
        train_labels=train_labels,
        val_features=val_features,
        val_labels=val_labels,
        test_features=test_features,
        test_labels=test_labels,
        W=W,
        b=b,
        class_names=names,
        groups=groups,
        counts=np.bincount(train_labels, minlength=n_classes).astype(np.int64),
        profile=profile,
        seed=int(seed),
    )


def _draw_sets(
    rng: np.random.Generator, centres: np.ndarray, counts: np.ndarray, n_val: int, n_test: int
) -> tuple[np.ndarray, ...]:
    """Training rows (``counts`` per class, shuffled), then ``n_val`` and ``n_test``
    rows per class: ``(train_x, train_y, val_x, val_y, test_x, test_y)``."""
    classes = np.arange(counts.shape[0], dtype=np.int64)
    train_labels = rng.permutation(np.repeat(classes, counts))
    train_features = _sample(rng, centres, train_labels)
    val_labels = np.repeat(classes, n_val)
    val_features = _sample(rng, centres, val_labels)
    test_labels = np.repeat(classes, n_test)
    test_features = _sample(rng, centres, test_labels)
    return train_features, train_labels, val_features, val_labels, test_features, test_labels


def _checked_profile(
    profile: Any, seed: Any, given: dict[str, int | None]
) -> tuple[dict, dict[str, int]]:
    """The profile's settings, and the sizes: each ``given`` one (None: the profile's), checked."""
    if profile not in PROFILES:
        detail = f"expected one of {sorted(PROFILES)}, found {profile!r}"
        raise fail("profile", detail, value=profile)
    p = PROFILES[profile]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise fail("seed", f"expected a non-negative integer, found {seed!r}", value=seed)
    size = {}
    for name in ("n_classes", "dim", "group_size", "baseline_epochs"):
        size[name] = positive_int(p[name] if given[name] is None else given[name], name)
    for name in ("n_val_per_class", "n_test_per_class"):
        size[name] = _nonneg(given[name], p[name], name)
    if size["n_classes"] < 3:
        detail = f"expected at least 3 (one per split), found {size['n_classes']}"
        raise fail("n_classes", detail, value=size["n_classes"])
    return dict(p), size


def _profile_counts(p: dict, n_classes: int) -> np.ndarray:
    """The profile's descending training counts for ``n_classes`` classes."""
    frac_many, frac_medium, _ = p["split_fractions"]
    n_many = max(1, round(frac_many * n_classes))
    n_medium = max(1, round(frac_medium * n_classes))
    n_few = max(1, n_classes - n_many - n_medium)
    n_many = n_classes - n_medium - n_few
    total = p["total"] if n_classes == p["n_classes"] else None
    return long_tail_counts(
        n_many, n_medium, n_few, max_count=p["max_count"], min_count=p["min_count"], total=total
    )


def _class_centres(
    p: dict, rng: np.random.Generator, groups: np.ndarray, dim: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Class centres in feature space, and the (r, dim) basis of the latent space
    (None when the latent space is the feature space).

    Pairwise distances between group centres are about ``between_group``; within
    a group about a per-group value in ``within_group``.
    """
    n_classes, n_groups = groups.size, int(groups[-1]) + 1
    r = min(p["latent_dim"], dim)
    group_centres = rng.standard_normal((n_groups, r)) * (p["between_group"] / math.sqrt(2 * r))
    lo_w, hi_w = p["within_group"]
    within = rng.uniform(lo_w, hi_w, size=n_groups)
    offsets = rng.standard_normal((n_classes, r)) * (within[groups] / math.sqrt(2 * r))[:, None]
    centres = (group_centres[groups] + offsets).astype(np.float32)
    if r < dim:
        # Orthonormal rows: latent coordinates of a feature are exactly x @ basis.T.
        basis = np.linalg.qr(rng.standard_normal((dim, r)))[0].T.astype(np.float32)
    else:
        basis = None
    return (centres if basis is None else centres @ basis), basis


def _nonneg(value: int | None, default: int, name: str) -> int:
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise fail(name, f"expected a non-negative integer, found {value!r}", value=value)
    return int(value)
