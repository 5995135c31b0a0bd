"""AlphaNet's one entry point, :func:`correct`: check, split, choose neighbours, train,
combine. Each stage lives in its own module (see ARCHITECTURE.md):

* the checks of the knobs are :class:`~alphanet_fast.settings.Settings`';
* neighbours: :func:`alphanet_fast.neighbors.choose_neighbors`;
* the epochs' draws and memory bounds: :mod:`.sampling`;
* the frozen scores the steps read: :mod:`.scoring`;
* the steps, validation and the kept epoch: :mod:`.trainer`;
* the final update ``W_f + sum_i a_f,i W_ni``: the Rust kernel :func:`~alphanet_fast.combine`.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from alphanet_fast._errors import fail
from alphanet_fast._inputs import classifier_inputs, data_pair
from alphanet_fast._torch_env import LOOP_THREADS, loop_settings, parse_device
from alphanet_fast.baselines.self_check import BaselineCheck, shared_check, val_baselines
from alphanet_fast.kernels import combine
from alphanet_fast.neighbors import Neighbors, choose_neighbors
from alphanet_fast.result import AlphaNetResult
from alphanet_fast.settings import Settings
from alphanet_fast.splits import Splits, splits_from_counts
from alphanet_fast.training.network import check_network_size, stacks_transposed
from alphanet_fast.training.sampling import (
    Budgets,
    current_budgets,
    draw_epochs,
)
from alphanet_fast.training.scoring import Feed, FrozenScores, weights_tensor
from alphanet_fast.training.stopwatch import Stopwatch
from alphanet_fast.training.trainer import (
    FewNetwork,
    Validator,
    make_optimizer,
    train,
)
from alphanet_fast.typing import ArrayLike, FeaturesLike, LabelsLike, WeightsLike

__all__ = ["LOOP_THREADS", "correct"]

_D = Settings.defaults()


def _show_progress(progress: Any) -> bool:
    if progress is None:
        stream = sys.stderr
        return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
    if not isinstance(progress, (bool, np.bool_)):
        detail = f"expected None, True or False, found {progress!r}"
        raise fail("progress", detail, value=progress, type_error=True)
    return bool(progress)


@dataclass(frozen=True)
class _Run:
    """What the training stage reads: the checked data and settings, and the run's
    device, stopwatch and memory budgets."""

    x: Any
    y: np.ndarray
    W: np.ndarray
    bias: np.ndarray
    splits: Splits
    settings: Settings
    dev: torch.device
    watch: Stopwatch
    budgets: Budgets
    # Counts tau-norm's and logit adjustment's candidates on the validation scores.
    check: BaselineCheck | None = None


def _check_trainable(splits: Splits, d: int, settings: Settings) -> None:
    """Base classes to borrow from, and a network that fits in memory."""
    if splits.base.size == 0:
        raise fail(
            "labels",
            f"every class has fewer than few_below={settings.few_below} training "
            "samples; AlphaNet needs base (medium or many) classes to borrow from",
        )
    check_network_size(splits.few.size, d, settings.k, settings.hidden)


def _config(settings: Settings, dev: torch.device, neighbors: Any, val: Any) -> dict:
    config = settings.to_dict()
    config["metric"] = settings.metric if neighbors is None else "given"
    config["device"] = str(dev)
    config["user_neighbors"] = neighbors is not None
    config["validation"] = val is not None
    config["loop_threads"] = LOOP_THREADS if dev.type == "cpu" else None
    return config


def _unchanged(W_arr, bias, splits, counts, config, settings, t_start) -> AlphaNetResult:
    """No class is few: a warning (pointing at the caller of ``correct()``) and ``W`` as it is."""
    warnings.warn(
        f"labels: no class has fewer than few_below={settings.few_below} training samples; "
        "nothing to correct, the classifier is returned unchanged",
        UserWarning,
        stacklevel=3,
    )
    few, k = splits.few, settings.k
    return AlphaNetResult(
        W=np.array(W_arr, order="C", copy=True),
        b=bias,
        alphas=np.zeros((0, k + 1)),
        few_classes=few.copy(),
        neighbors=np.zeros((0, k), dtype=np.int64),
        neighbor_distances=np.zeros((0, k)),
        splits=splits,
        counts=counts,
        config=config,
        timings={"total": time.perf_counter() - t_start},
    )


def _in_dtype_of(W: Any, result: AlphaNetResult) -> AlphaNetResult:
    """``result`` with ``W`` back in the caller's float16 (training ran in float32).

    float16 rows go to float32 and back exactly, so only corrected rows can
    change; one beyond float16's range is an error, not infinity.
    """
    if str(getattr(W, "dtype", "")) not in ("float16", "torch.float16"):
        return result
    with np.errstate(over="ignore"):
        narrow = result.W.astype(np.float16)
    bad = np.flatnonzero(~np.isfinite(narrow).all(axis=1))
    if bad.size:
        row = int(bad[0])
        raise fail("W", f"the corrected row {row} exceeds float16's range", row=row)
    result.W = narrow
    return result


def _few_positions(splits: Splits, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The few classes (a copy: torch.from_numpy warns on read-only arrays), each
    class's position among them (-1 for a base class), and the few classes' rows."""
    few = splits.few.copy()
    few_index = np.full(splits.n_classes, -1, dtype=np.int64)
    few_index[few] = np.arange(few.size)
    return few, few_index, np.flatnonzero(few_index[y] >= 0)


def _scores_and_feed(
    run: _Run,
    nb: Neighbors,
    val: tuple[Any, np.ndarray] | None,
    order: np.ndarray,
    batch_size: int,
    workers: int,
    scoring: ExitStack,
    few: np.ndarray,
    few_index: np.ndarray,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Any, Feed]:
    """What never changes during training, scored once (training and validation
    scores against the original rows; their workers join ``scoring``), and the
    feed the steps read: the weights, few classes, neighbours and few biases as
    tensors, the validator (None without ``val``) and the feed."""
    x, y, splits, dev, watch, budgets = run.x, run.y, run.splits, run.dev, run.watch, run.budgets
    s = run.settings
    source_classes = np.unique(np.concatenate([few, nb.classes.ravel()]))
    W_t = weights_tensor(run.W, dev)
    b_t = torch.from_numpy(run.bias.astype(np.float32)).to(dev)
    few_t = torch.from_numpy(few).to(dev)
    nb_t = torch.tensor(nb.classes, dtype=torch.int64, device=dev)
    frozen = scoring.enter_context(
        FrozenScores(
            W_t,
            b_t,
            few_t,
            nb_t,
            torch.from_numpy(source_classes).to(dev),
            s.score_scale,
            workers,
            budgets,
        )
    )
    few_bias_t = b_t[few_t]
    validator = None
    if val is not None:
        with watch.stage("frozen_val"):
            on_scores = None if run.check is None else run.check.add
            validator = Validator(frozen, *val, splits, few_bias_t, budgets, on_scores)
    with watch.stage("sampling"):
        own_cols = torch.from_numpy(np.searchsorted(source_classes, few)).to(dev)
        nb_cols = torch.from_numpy(np.searchsorted(source_classes, nb.classes)).to(dev)
        feed = Feed(
            frozen,
            x,
            y,
            few_index,
            order,
            batch_size,
            own_cols,
            nb_cols,
            watch,
            budgets.frozen,
        )
    return W_t, few_t, nb_t, few_bias_t, validator, feed


def _train(
    run: _Run,
    nb: Neighbors,
    *,
    val: tuple[Any, np.ndarray] | None,
    rng: np.random.Generator,
    show: bool,
) -> tuple[np.ndarray, int, list[dict]]:
    """Draw the epochs, score what never changes, and train: the kept coefficients
    (F, k), the kept epoch and the history."""
    y, splits, dev, watch = run.y, run.splits, run.dev, run.watch
    s, (few, few_index, few_rows) = run.settings, _few_positions(splits, y)
    workers = torch.get_num_threads() if dev.type == "cpu" else 1
    with loop_settings(dev), ExitStack() as threads:
        # The scoring workers may go early (scoring.close()); the network's stay.
        scoring = threads.enter_context(ExitStack())
        with watch.stage("sampling"):
            order = draw_epochs(y, few_rows, splits, s.rho, s.epochs, rng)
        # A batch larger than an epoch is the whole epoch: the same steps, no larger buffers.
        batch_size = min(s.batch_size, order.shape[1])
        W_t, few_t, nb_t, few_bias_t, validator, feed = _scores_and_feed(
            run, nb, val, order, batch_size, workers, scoring, few, few_index
        )
        feed.prepare()
        if feed.n_windows == 1 and (validator is None or validator.table):
            scoring.close()  # no more scoring: the workers and their buffers can go
        del order
        stacks_t = stacks_transposed(W_t, torch.cat([few_t[:, None], nb_t], dim=1))
        del W_t
        network = threads.enter_context(
            FewNetwork(stacks_t, s.k, s.hidden, seed=s.seed, workers=workers)
        )
        optimizer = make_optimizer(network, s.lr, s.weight_decay, s.lr_step, s.lr_gamma)
        return train(
            feed,
            network,
            optimizer,
            epochs=s.epochs,
            batch_size=batch_size,
            min_epochs=s.min_epochs,
            few_bias_t=few_bias_t,
            score_scale=s.score_scale,
            validator=validator,
            watch=watch,
            show=show,
        )


def correct(
    features: FeaturesLike,
    labels: LabelsLike,
    W: WeightsLike,
    b: WeightsLike | None = None,
    *,
    k: int = _D["k"],
    metric: str = _D["metric"],
    rho: float = _D["rho"],
    epochs: int = _D["epochs"],
    batch_size: int = _D["batch_size"],
    lr: float = _D["lr"],
    weight_decay: float = _D["weight_decay"],
    lr_step: int = _D["lr_step"],
    lr_gamma: float = _D["lr_gamma"],
    hidden: Sequence[int] = _D["hidden"],
    few_below: int = _D["few_below"],
    many_above: int = _D["many_above"],
    score_scale: float = _D["score_scale"],
    val: tuple[FeaturesLike, LabelsLike] | None = None,
    min_epochs: int = _D["min_epochs"],
    device: Any = _D["device"],
    seed: int = _D["seed"],
    progress: bool | None = None,
    neighbors: ArrayLike | None = None,
) -> AlphaNetResult:
    """Correct a long-tailed classifier's rare-class weights with AlphaNet.

    Each few class ``f`` (fewer than ``few_below`` training samples) gets the
    weights ``w'_f = W_f + sum_i ã_f,i W_ni`` where ``n_1..n_k`` are its ``k``
    nearest base classes by class-mean distance and ``ã_f`` comes from one
    small network shared by all few classes, trained with softmax
    cross-entropy over all classes on every few-class sample plus
    ``round(rho * n_few_samples)`` class-balanced base samples per epoch.
    Base-class weights and all biases are left as they are.

    Parameters
    ----------
    features : array_like, shape (n, d)
        Training features, float32 or float64, any memory order (memory maps
        and strided views are read in place; only the rows sampled are copied).
    labels : array_like of int, shape (n,)
        Training labels in ``[0, C)``.
    W : array_like, shape (C, d)
        Classifier weights.
    b : array_like, shape (C,), optional
        Classifier biases; zeros when omitted.
    k : int, default 5
        Neighbours per few class.
    metric : {"euclidean", "cosine", "random"}, default "euclidean"
        Distance between class means, or ``"random"``: k distinct random base
        classes per few class (the paper's control), drawn from ``seed``.
    rho : float, default 1.0
        Base samples per few sample in each epoch; smaller favours few classes.
    epochs, batch_size : int, default 25, 64
    lr, weight_decay : float, default 1e-3, 0.01
        AdamW's learning rate and decoupled weight decay.
    lr_step, lr_gamma : int, float, default 10, 0.1
        StepLR: multiply the learning rate by ``lr_gamma`` every ``lr_step`` epochs.
    hidden : sequence of int, default (32, 32, 32)
        Hidden layer widths of the network.
    few_below, many_above : int, default 20, 100
        Split thresholds on training counts (see :func:`splits_from_counts`).
    score_scale : float, default 1.0
        Multiplies every score (the paper used 100 for tiny weight norms).
    val : (features, labels), optional
        Validation data; each epoch's top-1 accuracy per split is recorded and
        the epoch with the best overall accuracy at or after ``min_epochs`` is
        kept. Without it, the last epoch is kept.
    min_epochs : int, default 5
        First epoch eligible for selection (capped at ``epochs``).
    device : str or torch.device, default "auto"
        ``"auto"`` trains on CUDA when torch sees a GPU, else on the CPU.
    seed : int, default 0
        Seeds the network's initialisation, the sampling and random neighbours.
        Same seed, same device: identical results.
    progress : bool, optional
        Show a tqdm bar over epochs. ``None``: only when stderr is a terminal.
    neighbors : array_like of int, shape (F, k), optional
        Your own neighbour classes (base class ids) for the few classes in
        ascending class order. Needed for a few class without training samples.

    Returns
    -------
    AlphaNetResult
        ``W`` (few rows replaced, the input's dtype), ``b`` (unchanged copy),
        ``alphas`` (F x (k+1), column 0 is 1), ``neighbors``, ``splits``,
        ``history``, ``best_epoch``, ``config``, ``timings`` (seconds per stage)
        and, with ``val``, ``val_baselines``: tau-normalisation's and logit
        adjustment's validation top-1 per split, tau chosen on the same ``val``
        (scored from one pass over it; AlphaNet's own weights do not depend on it).

    Raises
    ------
    TypeError
        Arguments of the wrong type or dtype.
    ValueError
        Shapes that disagree (features/labels/W/b/val/neighbors), labels out of
        ``[0, C)``, NaN or infinity (first bad row named), no base class, a few
        class without training samples (and no ``neighbors``), ``k`` larger
        than the number of base classes, bad hyperparameter values, a ``rho``
        or ``hidden`` too large for the memory this process may have, or training that
        diverged (non-finite coefficients: lower ``lr`` or ``score_scale``).

    Warns
    -----
    UserWarning
        No class is few: the classifier is returned unchanged.

    Notes
    -----
    Scores against the original weight rows never change (ARCHITECTURE.md,
    "exact shortcuts"): the rows drawn in any epoch and the validation rows are
    scored against ``W`` in blocks, once when they fit the budgets below, so a
    step costs ``O(batch x F x (k+1))`` plus the network. ``result.timings`` has
    the seconds per stage.

    Memory: the frozen training quantities (per distinct drawn row ``4 x
    (n_source + 4)`` bytes, ``n_source`` = few classes and their neighbours,
    plus the buffers the steps gather into) are kept within
    ``Budgets.frozen`` (96 MiB, see :class:`alphanet_fast.training.Budgets` and
    :func:`~alphanet_fast.training.using_budgets`).
    Larger problems run in windows of whole batches whose distinct rows are
    scored on entry; the samples, and so the result, are the same, but a row
    drawn in several windows is scored again (``timings["frozen_train"]`` is
    the total). The validation rows' few and neighbour scores (``4 x F x
    (k+1)`` bytes a row) are kept when they fit ``Budgets.val`` (128 MiB);
    otherwise each epoch scores the validation rows against the corrected few
    rows instead. A float32, C-ordered ``W`` is read in place; other dtypes or
    orders are copied once as float32. A ``rho`` whose draws, or a ``hidden``
    whose network, could not fit in the memory this process may have (the
    machine's, the cgroup's limit, what ``RLIMIT_AS``/``RLIMIT_DATA`` leave) is
    refused before anything is allocated; a ``batch_size`` above an epoch's samples
    trains on the whole epoch at once.

    For the duration of the call, torch runs on one intra-op thread (on a
    shared machine, multi-threaded small ops stall on descheduled threads;
    the one-off scoring instead spreads blocks over ``torch.get_num_threads()``
    Python workers) and float32 matmuls at full precision (no TF32); both
    settings are restored afterwards. The global random generators of numpy
    and torch are not touched.

    Examples
    --------
    >>> import alphanet_fast as af
    >>> data = af.datasets.make_long_tail("small", seed=0)
    >>> res = af.correct(data.train_features, data.train_labels, data.W, data.b,
    ...                  val=(data.val_features, data.val_labels), progress=False)
    >>> res.W.shape == data.W.shape, bool((res.alphas[:, 0] == 1).all())
    (True, True)
    """
    t_start, budgets = time.perf_counter(), current_budgets()
    W_arr, x, y, bias = classifier_inputs(features, labels, W, b, row_sources=True)
    n_classes, d = W_arr.shape
    # Checked in the order of its fields; every knob passed by name.
    settings = Settings(
        k=k, metric=metric, rho=rho, epochs=epochs, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, lr_step=lr_step, lr_gamma=lr_gamma, hidden=hidden,
        few_below=few_below, many_above=many_above, score_scale=score_scale,
        min_epochs=min_epochs, device=device, seed=seed,
    )  # fmt: skip
    show, dev = _show_progress(progress), parse_device(settings.device)
    val = None if val is None else data_pair(val, "val", d, n_classes, row_sources=True)
    counts = np.bincount(y, minlength=n_classes).astype(np.int64)
    splits = splits_from_counts(counts, few_below=few_below, many_above=many_above)
    config = _config(settings, dev, neighbors, val)
    if splits.few.size == 0:
        return _in_dtype_of(W, _unchanged(W_arr, bias, splits, counts, config, settings, t_start))
    _check_trainable(splits, d, settings)
    check = shared_check(W_arr, bias, counts, val, dev)
    run = _Run(x, y, W_arr, bias, splits, settings, dev, Stopwatch(dev), budgets, check)
    run.watch.seconds["checks"] = time.perf_counter() - t_start
    nb, sample_rng = _neighbors(run, neighbors)
    best_alphas, best_epoch, history = _train(run, nb, val=val, rng=sample_rng, show=show)
    checked = None if val is None else _checked_baselines(run, counts, val)
    result = _combined(run, nb, best_alphas, counts, best_epoch, history, config, t_start)
    result.val_baselines = checked
    return _in_dtype_of(W, result)


def _checked_baselines(run: _Run, counts: np.ndarray, val: Any) -> Any:
    """The cheap baselines' validation figures (after training: AlphaNet never reads
    them), counted while its validation rows were scored (``run.check``) or not."""
    with run.watch.stage("val_baselines"):
        if run.check is not None:
            return run.check.figures(run.splits)
        return val_baselines(run.W, run.bias, counts, val, run.splits)


def _neighbors(run: _Run, given: Any) -> tuple[Neighbors, np.random.Generator]:
    """The few classes' neighbours, and the generator of the epochs' samples.

    Both generators come from ``seed``: the samples' and the random neighbours'.
    """
    seeds = np.random.SeedSequence(run.settings.seed).spawn(2)
    sample_rng, neighbor_rng = (np.random.default_rng(s) for s in seeds)
    nb = choose_neighbors(
        run.x,
        run.y,
        run.splits,
        run.settings.k,
        metric=run.settings.metric,
        given=given,
        rng=neighbor_rng,
        stage=run.watch.stage,
    )
    if not np.isin(run.y, run.splits.few).any():
        raise fail("labels", "no training sample belongs to a few class; nothing to train on")
    return nb, sample_rng


def _combined(
    run: _Run,
    nb: Neighbors,
    best_alphas: np.ndarray,
    counts: np.ndarray,
    best_epoch: int,
    history: list,
    config: dict,
    t_start: float,
) -> AlphaNetResult:
    """The final update (few rows combined from the original ones) and the result."""
    splits, watch = run.splits, run.watch
    with watch.stage("final_update"):
        alphas = np.hstack([np.ones((splits.few.size, 1)), best_alphas])
        W_new = combine(run.W, splits.few, nb.classes, alphas)
    watch.seconds["total"] = time.perf_counter() - t_start
    return AlphaNetResult(
        W=W_new,
        b=run.bias,
        alphas=alphas,
        few_classes=splits.few.copy(),
        neighbors=np.array(nb.classes, dtype=np.int64),  # a copy: it may be the caller's
        neighbor_distances=nb.distances,
        splits=splits,
        counts=counts,
        history=history,
        best_epoch=best_epoch,
        config=config,
        timings=dict(watch.seconds),
    )
