"""Every argument of every public entry point, given a bad value, raises an
``ArgumentError`` whose ``.argument`` names it.

The arguments come from the entry points' signatures, so a new argument without
a case here fails :func:`test_every_argument_has_a_case`. Each case calls the
entry point with good arguments but one, and checks the error's type (an
``ArgumentError``, still the ``ValueError`` or ``TypeError`` it always was) and
``.argument``; ``.row`` or ``.value`` where the bad value has one.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import alphanet_fast as af
import numpy as np
import pytest
from alphanet_fast import baselines
from alphanet_fast.settings import Settings

torch = pytest.importorskip("torch")
import alphanet_fast.torch as aft  # noqa: E402


@dataclass(frozen=True)
class Bad:
    """A bad value of one argument and what its error says.

    ``kind`` is the builtin the error still is (ValueError or TypeError);
    ``argument`` is the name expected in ``.argument`` when it is not the
    parameter's own (an argument passed through ``**kwargs``); ``row`` and
    ``value`` are the fields expected, when the bad value has them.
    """

    value: Any
    kind: type[Exception] = ValueError
    argument: str | None = None
    row: int | None = None
    check_value: bool = False


@dataclass(frozen=True)
class Entry:
    """A public entry point, its good arguments (by keyword), and a bad value per parameter.

    ``no_bad_value`` lists the parameters that accept anything, with the reason.
    """

    function: Callable[..., Any]
    good: Callable[[], dict[str, Any]]
    bad: dict[str, Bad]
    no_bad_value: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- the data


def _data() -> dict[str, Any]:
    """Eight classes in 4-d: six base classes (40 rows), two few ones (5 rows)."""
    rng = np.random.default_rng(0)
    counts = [40] * 6 + [5, 5]
    y = np.repeat(np.arange(8), counts)
    centres = rng.standard_normal((8, 4)) * 3
    x = centres[y] + rng.standard_normal((y.size, 4))
    W = centres.copy()
    b = np.zeros(8)
    vy = np.repeat(np.arange(8), 3)
    vx = centres[vy] + rng.standard_normal((vy.size, 4))
    return {"x": x, "y": y, "W": W, "b": b, "val": (vx, vy)}


D = _data()
SPLITS = af.splits_from_counts(np.bincount(D["y"]))
NEG_LABELS = np.where(np.arange(D["y"].size) == 3, -1, D["y"])  # entry 3 is -1
NAN_ROW_7 = np.where(np.arange(D["y"].size)[:, None] == 7, np.nan, D["x"])


def _model() -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 8))


def _loader() -> list[tuple[Any, Any]]:
    x = torch.from_numpy(D["x"].astype(np.float32))
    y = torch.from_numpy(D["y"])
    return [(x[i : i + 64], y[i : i + 64]) for i in range(0, len(y), 64)]


def _result() -> af.AlphaNetResult:
    return af.correct(D["x"], D["y"], D["W"], D["b"], epochs=1, progress=False)


def _saved_result() -> str:
    import os
    import tempfile

    path = os.path.join(tempfile.mkdtemp(), "result.npz")
    _result().save(path)
    return path


# ---------------------------------------------------------------- the cases

ARRAYS = {
    "features": Bad(np.zeros(3)),  # 1-d
    "labels": Bad(NEG_LABELS, row=3),
    "W": Bad(np.zeros((2, 2, 2))),
    "b": Bad(np.zeros(2)),
}
PAIRS = {"val": Bad("not a pair", TypeError)}
SEED_AND_DEVICE = {
    "seed": Bad(-1, check_value=True),
    "device": Bad("tpu", check_value=True),
}
TRAINED = {
    "epochs": Bad(0, check_value=True),
    "batch_size": Bad(0, check_value=True),
    "samples_per_epoch": Bad(0, check_value=True),
    "lr": Bad(-1.0, check_value=True),
    "weight_decay": Bad(-1.0, check_value=True),
}
TAUS = {
    "tau": Bad(math.nan),
    "taus": Bad([0.5, math.inf], row=1),
}
SETTINGS = {
    "k": Bad(0, check_value=True),
    "metric": Bad("manhattan", check_value=True),
    "rho": Bad(-1, check_value=True),
    "epochs": Bad(0, check_value=True),
    "batch_size": Bad(2.5, TypeError, check_value=True),
    "lr": Bad(0, check_value=True),
    "weight_decay": Bad(-0.5, check_value=True),
    "lr_step": Bad(0, check_value=True),
    "lr_gamma": Bad("0.1", TypeError, check_value=True),
    "hidden": Bad((32, 0), row=1),
    "few_below": Bad(-1, check_value=True),
    "many_above": Bad(True, TypeError, check_value=True),
    "score_scale": Bad(math.nan),
    "min_epochs": Bad(0, check_value=True),
    "seed": Bad(-1, check_value=True),
}


def _array_kw() -> dict[str, Any]:
    return {"features": D["x"], "labels": D["y"], "W": D["W"], "b": D["b"]}


ENTRIES: dict[str, Entry] = {
    "class_means": Entry(
        af.class_means,
        lambda: {"features": D["x"], "labels": D["y"]},
        {
            "features": ARRAYS["features"],
            "labels": ARRAYS["labels"],
            "n_classes": Bad(0),
        },
    ),
    "class_sums": Entry(
        af.class_sums,
        lambda: {"features": D["x"], "labels": D["y"]},
        {"features": Bad(NAN_ROW_7, row=7), "labels": Bad(["a"] * len(D["y"]), TypeError)},
        {"n_classes": "as class_means"},
    ),
    "nearest_neighbors": Entry(
        af.nearest_neighbors,
        lambda: {"queries": D["W"][4:], "pool": D["W"][:4], "k": 2, "metric": "cosine"},
        {
            "queries": Bad(np.array([[1 + 1j] * 4]), TypeError),
            "pool": Bad(np.zeros((3, 5))),
            "k": Bad(5),
            "metric": Bad("random", check_value=True),
        },
    ),
    "combine": Entry(
        af.combine,
        lambda: {"W": D["W"], "targets": [4, 5], "neighbors": [[0], [1]], "alphas": [[1, 2]] * 2},
        {
            "W": Bad(np.array([[1.0] * 4, [math.inf] * 4] * 3), row=1),
            "targets": Bad([4, 8], row=1),
            "neighbors": Bad([[0], [1], [2]]),
            "alphas": Bad(np.ones((2, 3))),
        },
    ),
    "topk_scores": Entry(
        af.topk_scores,
        lambda: {"features": D["x"], "W": D["W"], "b": D["b"], "k": 2},
        {
            "features": ARRAYS["features"],
            "W": Bad(np.zeros((8, 5))),
            "b": ARRAYS["b"],
            "k": Bad(9),
        },
    ),
    "set_num_threads": Entry(
        af.set_num_threads, lambda: {"n": 0}, {"n": Bad(-1, check_value=True)}
    ),
    "correct": Entry(
        af.correct,
        lambda: {**_array_kw(), "epochs": 1, "progress": False},
        {
            **ARRAYS,
            **SETTINGS,
            **PAIRS,
            "device": Bad("tpu", check_value=True),
            "progress": Bad("yes", TypeError, check_value=True),
            "neighbors": Bad(np.zeros((1, 1), dtype=np.int64)),
        },
    ),
    "Settings": Entry(
        Settings,
        dict,
        SETTINGS,
        {"device": "only its kind is known here; torch is asked when training starts"},
    ),
    "evaluate": Entry(
        af.evaluate,
        lambda: {**_array_kw(), "splits": SPLITS},
        {
            **ARRAYS,
            "splits": Bad("few", TypeError),
            "k": Bad((1, 9), check_value=True),
            "neighbors": Bad((np.array([6, 7]), np.array([[0], [8]]))),
            "groups": Bad(np.zeros(5)),
        },
    ),
    "ncm": Entry(
        baselines.ncm,
        _array_kw,
        {**ARRAYS, "metric": Bad("l1", check_value=True), "cl2n": Bad(1, TypeError)},
    ),
    "tau_norm": Entry(
        baselines.tau_norm,
        lambda: {**_array_kw(), "val": D["val"]},
        {**ARRAYS, **TAUS, **PAIRS, "bias": Bad("shift", check_value=True)},
    ),
    "logit_adjust": Entry(
        baselines.logit_adjust,
        lambda: {**_array_kw(), "val": D["val"]},
        {**ARRAYS, **TAUS, **PAIRS},
    ),
    "lws": Entry(
        baselines.lws,
        lambda: {**_array_kw(), "epochs": 1},
        {**ARRAYS, **TRAINED, **PAIRS, **SEED_AND_DEVICE},
    ),
    "crt": Entry(
        baselines.crt,
        lambda: {**_array_kw(), "epochs": 1},
        {**ARRAYS, **TRAINED, **PAIRS, **SEED_AND_DEVICE, "init": Bad("zeros", check_value=True)},
    ),
    "compare": Entry(
        af.compare,
        lambda: {
            "train": (D["x"], D["y"]),
            "W": D["W"],
            "b": D["b"],
            "val": D["val"],
            "methods": ("ncm",),
            "alphanet_on": ("plain",),
            "rhos": (1.0,),
            "seeds": 1,
            "alphanet_options": {"epochs": 1},
        },
        {
            "train": Bad("not a pair", TypeError),
            "W": ARRAYS["W"],
            "b": ARRAYS["b"],
            "val": Bad("not a pair", TypeError),
            "test": Bad("not a pair", TypeError),
            "methods": Bad(("ncm", "svm")),
            "alphanet_on": Bad(("plain", "svm")),
            "rhos": Bad((-1.0,)),
            "seeds": Bad(0),
            "criterion": Bad("best", check_value=True),
            "options": Bad({"svm": {}}),
            "alphanet_options": Bad({"epochs": 0}),
            "device": Bad("tpu", check_value=True),
            "seed": Bad(-1, check_value=True),
        },
    ),
    "find_head": Entry(
        aft.find_head,
        lambda: {"model": _model()},
        {"model": Bad("a model", TypeError), "name": Bad("nope")},
    ),
    "split_batch": Entry(aft.split_batch, lambda: {"batch": (1, 2)}, {"batch": Bad(5, TypeError)}),
    "extract": Entry(
        aft.extract,
        lambda: {"model": _model(), "loader": _loader(), "progress": False},
        {
            "model": Bad("a model", TypeError),
            "loader": Bad([], ValueError),
            "head": Bad("nope"),
            "out": Bad(5, TypeError),
            "device": Bad("tpu", check_value=True),
            "dtype": Bad(np.int32, TypeError),
            "progress": Bad("yes", TypeError),
            "batch_to_inputs": Bad(5, TypeError),
            "autocast": Bad("yes", TypeError),
        },
    ),
    "apply_to": Entry(
        aft.apply_to,
        lambda: {"model": _model(), "result": _result()},
        {
            "model": Bad("a model", TypeError),
            "result": Bad(5, TypeError),
            "head": Bad("nope"),
        },
    ),
    "correct_model": Entry(
        aft.correct_model,
        lambda: {"model": _model(), "train_loader": _loader(), "progress": False, "epochs": 1},
        {
            "model": Bad("a model", TypeError),
            "train_loader": Bad([], ValueError),
            "val_loader": Bad([], ValueError),
            "head": Bad("nope"),
            "inplace": Bad("yes", TypeError),
            "device": Bad("tpu", check_value=True),
            "progress": Bad("yes", TypeError),
            "batch_to_inputs": Bad(5, TypeError),
            "correct_kwargs": Bad({"k": 0}, argument="k"),
        },
    ),
    "load_result": Entry(
        af.load_result,
        lambda: {"path": _saved_result()},
        {"path": Bad("/nonexistent/result.npz")},
    ),
}

CASES = [(entry, name) for entry, e in ENTRIES.items() for name in e.bad]


def _parameters(function: Callable[..., Any]) -> list[inspect.Parameter]:
    return list(inspect.signature(function).parameters.values())


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_every_argument_has_a_case(entry):
    e = ENTRIES[entry]
    assert e.function is not None, f"{entry} is missing"
    names = [p.name for p in _parameters(e.function)]
    missing = [n for n in names if n not in e.bad and n not in e.no_bad_value]
    assert missing == [], f"{entry}: no bad value for {missing}"
    unknown = [n for n in [*e.bad, *e.no_bad_value] if n not in names]
    assert unknown == [], f"{entry}: cases for arguments it does not take: {unknown}"


def _call(e: Entry, name: str, bad: Bad) -> Any:
    kwargs = e.good()
    kind = {p.name: p.kind for p in _parameters(e.function)}[name]
    if kind is inspect.Parameter.VAR_KEYWORD:
        kwargs.update(bad.value)
    else:
        kwargs[name] = bad.value
    return e.function(**kwargs)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(("entry", "name"), CASES)
def test_a_bad_value_names_its_argument(entry, name):
    e = ENTRIES[entry]
    bad = e.bad[name]
    with pytest.raises((ValueError, TypeError)) as info:
        _call(e, name, bad)
    exc = info.value
    assert isinstance(exc, af.ArgumentError), f"{type(exc).__name__}: {exc}"
    assert isinstance(exc, bad.kind), f"{type(exc).__name__}: {exc}"
    expected = bad.argument or name
    assert exc.argument == expected, f"argument {exc.argument!r}: {exc}"
    assert str(exc) == f"{expected}: {exc.detail}", str(exc)
    if bad.row is not None:
        assert exc.row == bad.row, f"row {exc.row!r}: {exc}"
    if bad.check_value:
        assert exc.value == bad.value or exc.value in np.ravel(bad.value), f"value {exc.value!r}"


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("entry", list(ENTRIES))
def test_the_good_calls_are_good(entry):
    """The cases' good arguments are accepted: each error above is the bad value's."""
    e = ENTRIES[entry]
    e.function(**e.good())


# ---------------------------------------------------------------- the command line


def test_the_command_line_has_a_flag_for_each_argument_it_maps():
    import argparse

    from alphanet_fast.cli import build_parser
    from alphanet_fast.cli.parser import ARGUMENT_FLAGS

    subparsers = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    options = {s for a in subparsers.choices["correct"]._actions for s in a.option_strings}
    assert set(ARGUMENT_FLAGS) == {*Settings.defaults(), "neighbors"}
    assert set(ARGUMENT_FLAGS.values()) <= options


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hidden", "8", "0"], "--hidden: entry 1 is 0, expected an integer >= 1"),
        (["--few-below", "200"], "--few-below: expected at most many_above + 1 = 101"),
        (["--lr-gamma", "0"], "--lr-gamma: expected a finite number > 0, found 0.0"),
    ],
)
def test_the_command_line_names_the_flag_from_the_error_argument(argv, message):
    from alphanet_fast.cli import build_parser
    from alphanet_fast.cli.common import settings_from_args
    from alphanet_fast.files.formats import InputError

    args = build_parser().parse_args(["correct", "train.npz", "clf.npz", *argv])
    with pytest.raises(InputError) as info:
        settings_from_args(args)
    assert str(info.value).startswith(message), str(info.value)
