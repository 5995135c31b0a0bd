"""compare(): rows, recommendation on validation only, table, JSON, plot and the CLI command."""

from __future__ import annotations

import argparse
import json

import alphanet_fast as af
import numpy as np
import pytest
from alphanet_fast.cli import compare as compare_command
from alphanet_fast.datasets import make_long_tail

FAST_ALPHANET = {"epochs": 6, "min_epochs": 1}


@pytest.fixture(scope="module")
def data():
    return make_long_tail("small", seed=0)


def _run(d, test_labels=None, **kw):
    kw = {
        "methods": ("tau_norm", "logit_adjust", "lws"),
        "alphanet_on": ("plain", "lws"),
        "rhos": (0.5,),
        "seeds": 2,
        "alphanet_options": FAST_ALPHANET,
        **kw,
    }
    labels = d.test_labels if test_labels is None else test_labels
    kw = {"val": (d.val_features, d.val_labels), "test": (d.test_features, labels), **kw}
    return af.compare((d.train_features, d.train_labels), d.W, d.b, **kw)


def _few(row, on="test"):
    return np.mean([r.accuracy[1]["few"] for r in getattr(row, on)])


def test_permuting_test_labels_changes_no_choice(data):
    a = _run(data)
    perm = np.random.default_rng(0).permutation(data.test_labels)
    b = _run(data, test_labels=perm)
    assert a.recommended == b.recommended
    for ra, rb in zip(a.rows, b.rows):
        assert ra.name == rb.name
        assert ra.settings == rb.settings  # tau, AlphaNet's best epoch, ...
        assert [v.accuracy for v in ra.val] == [v.accuracy for v in rb.val]
    # The test set did change: only what is reported on it moved.
    assert any(ra.test[0].accuracy != rb.test[0].accuracy for ra, rb in zip(a.rows, b.rows))


@pytest.mark.parametrize("criterion", ["overall", "few", {"few": 0.3, "overall": 0.7}])
def test_recommendation_is_the_best_on_validation(data, criterion):
    rep = _run(data, criterion=criterion, seeds=1, alphanet_on=("plain",))
    weights = {criterion: 1.0} if isinstance(criterion, str) else criterion
    scores = [
        np.mean([sum(w * v.accuracy[1][s] for s, w in weights.items()) for v in r.val])
        for r in rep.rows
    ]
    assert rep.recommended == rep.rows[int(np.argmax(scores))].name


def test_rows_table_json_and_plot(data, tmp_path):
    rep = _run(data)
    names = [r.name for r in rep.rows]
    assert names == [
        "plain (given)", "tau-norm", "logit adjustment", "LWS",
        "plain + AlphaNet (rho=0.5)", "LWS + AlphaNet (rho=0.5)",
    ]  # fmt: skip
    assert [len(r.test) for r in rep.rows] == [1, 1, 1, 2, 2, 2]
    text = rep.table()
    assert f"* {rep.recommended}" in text and "Few" in text and "Top-5" in text
    assert " ± " in text.splitlines()[6]  # LWS: mean ± std over the two seeds
    payload = json.loads(json.dumps(rep.to_dict()))
    assert payload["recommended"] == rep.recommended
    assert len(payload["rows"]) == len(rep.rows)
    path = rep.plot(tmp_path / "tradeoff.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="^on:"):
        rep.table("train")


def test_the_ordering_the_literature_reports(data):
    """cRT, LWS and tau-norm raise few-split accuracy; AlphaNet on cRT (rho 0.5) raises it more.

    Margins seen on the small profile, data seeds 0 and 1, two training seeds:
    tau-norm +6.1/+4.4, LWS +8.0/+9.7, cRT +12.7/+14.9 points over the plain
    classifier, and AlphaNet on cRT +6.9/+6.4 over cRT; the thresholds below are
    about half of the smallest.
    """
    rep = _run(
        data, methods=("tau_norm", "lws", "crt"), alphanet_on=("crt",), alphanet_options=None
    )
    plain = _few(rep.row("plain (given)"))
    assert _few(rep.row("tau-norm")) > plain + 0.02
    assert _few(rep.row("LWS")) > plain + 0.03
    assert _few(rep.row("cRT")) > plain + 0.05
    assert _few(rep.row("cRT + AlphaNet (rho=0.5)")) > _few(rep.row("cRT")) + 0.03


@pytest.mark.parametrize(
    ("kw", "error", "argument", "match"),
    [
        ({"methods": ("svm",)}, ValueError, "methods", "^methods: unknown method 'svm'"),
        ({"methods": "lws"}, TypeError, "methods", "^methods:"),
        ({"methods": ("lws",), "alphanet_on": ("crt",)}, ValueError, "alphanet_on", "^alpha"),
        ({"criterion": "median"}, ValueError, "criterion", "^criterion:"),
        ({"criterion": ["few"]}, TypeError, "criterion", "^criterion:"),
        ({"criterion": {"few": -1}}, ValueError, "criterion", "^criterion: the weight of 'few'"),
        ({"criterion": {"few": "a"}}, TypeError, "criterion", "^criterion: the weight of 'few'"),
        ({"criterion": {"rare": 1}}, ValueError, "criterion", "^criterion: unknown split"),
        ({"criterion": {"few": 0}}, ValueError, "criterion", "^criterion: the weights sum to 0"),
        ({"seeds": 0}, ValueError, "seeds", "^seeds:"),
        ({"seeds": 1.5}, TypeError, "seeds", "^seeds:"),
        ({"seed": -1}, ValueError, "seed", "^seed:"),
        ({"rhos": ()}, ValueError, "rhos", "^rhos:"),
        ({"rhos": (0.5, -1)}, ValueError, "rhos", "^rhos: entry 1"),
        ({"rhos": 0.5}, TypeError, "rhos", "^rhos:"),
        ({"alphanet_options": {"rho": 1.0}}, ValueError, "alphanet_options", "^alphanet_options:"),
        ({"alphanet_options": {"kk": 1}}, ValueError, "alphanet_options", "^alphanet_opt.*'kk'"),
        ({"alphanet_options": {"k": 0}}, ValueError, "alphanet_options", "^alphanet_options: k:"),
        ({"alphanet_options": {"few_below": 500}}, ValueError, "alphanet_options", "few_below"),
        ({"options": {"crt": {"seed": 1}}}, ValueError, "options", "^options: crt:"),
        ({"options": {"svm": {}}}, ValueError, "options", "^options: unknown method 'svm'"),
        ({"options": ["crt"]}, TypeError, "options", "^options:"),
        ({"options": {"tau_norm": {"tau": float("nan")}}}, ValueError, "tau", "^tau:"),
        ({"test": (np.zeros((3, 2)), [0, 1, 2])}, ValueError, "test", "^test: features:"),
        ({"train": (np.zeros((3, 2)),)}, TypeError, "train", "^train:"),
        (
            {"methods": ("ncm",), "alphanet_on": ("ncm",),
             "options": {"ncm": {"metric": "euclidean"}}},
            ValueError, "alphanet_on", "^alphanet_on: ncm scores transformed features",
        ),
    ],
)  # fmt: skip
def test_bad_input_named_errors(data, kw, error, argument, match):
    if "train" in kw:
        with pytest.raises(error, match=match) as info:
            af.compare(kw["train"], data.W, data.b, val=(data.val_features, data.val_labels))
    else:
        with pytest.raises(error, match=match) as info:
            _run(data, **kw)
    assert isinstance(info.value, af.ArgumentError)
    assert info.value.argument == argument


def test_val_is_required(data):
    with pytest.raises(af.ArgumentError, match="^val:") as info:
        af.compare((data.train_features, data.train_labels), data.W, data.b, val=None)
    assert info.value.argument == "val"


def _parser():
    parser = argparse.ArgumentParser(prog="alphanet-fast")
    compare_command.register(parser.add_subparsers(dest="command"))
    return parser


def test_compare_command(data, tmp_path, capsys):
    for split in ("train", "val", "test"):
        np.savez(
            tmp_path / f"{split}.npz",
            features=getattr(data, f"{split}_features"),
            labels=getattr(data, f"{split}_labels"),
        )
    np.savez(tmp_path / "clf.npz", weight=data.W, bias=data.b)
    args = _parser().parse_args(
        [
            "compare", str(tmp_path / "train.npz"), str(tmp_path / "clf.npz"),
            "--val", str(tmp_path / "val.npz"), "--test", str(tmp_path / "test.npz"),
            "--methods", "tau_norm", "ncm", "--alphanet-on", "plain", "--rhos", "0.5",
            "--seeds", "1", "--epochs", "3", "--min-epochs", "1", "--few-weight", "0.5",
            "--report", str(tmp_path / "cmp.json"), "--plots", str(tmp_path / "plots"), "-q",
        ]
    )  # fmt: skip
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "Test set (10000 samples)" in out and "* recommended:" in out
    report = json.loads((tmp_path / "cmp.json").read_text())
    assert report["command"] == "compare"
    assert report["criterion"] == {"few": 0.5, "overall": 0.5}
    assert [r["name"] for r in report["rows"]] == [
        "plain (given)", "tau-norm", "NCM", "plain + AlphaNet (rho=0.5)",
    ]  # fmt: skip
    assert (tmp_path / "plots" / "tradeoff.png").stat().st_size > 0
    args = _parser().parse_args(["compare", str(tmp_path / "train.npz"), str(tmp_path / "clf.npz")])
    with pytest.raises(ValueError, match="compare needs --val"):
        args.func(args)


def test_demo_comparison_writes_table_plot_and_json(tmp_path, capsys):
    d = make_long_tail("small", seed=0, n_classes=40)
    report = compare_command.demo_comparison(d, tmp_path / "out", seeds=1, device="cpu")
    out = capsys.readouterr().out
    assert "Which post-hoc fix to ship" in out and report.recommended in out
    saved = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert saved["recommended"] == report.recommended
    assert (tmp_path / "out" / "comparison.png").read_bytes()[:4] == b"\x89PNG"


def _same_report(a, b):
    """Two EvaluationReports with the same figures and the same integer counts."""
    assert a.to_dict() == b.to_dict()
    assert a.hit_counts["accuracy"] == b.hit_counts["accuracy"]
    for k in a.ks:
        np.testing.assert_array_equal(a.hit_counts["per_class"][k], b.hit_counts["per_class"][k])


@pytest.fixture(scope="module")
def every_row(data):
    """Every method, AlphaNet on a closed-form, a trained and the plain base, two seeds."""
    return _run(
        data,
        methods=("ncm", "tau_norm", "logit_adjust", "lws", "crt"),
        alphanet_on=("plain", "tau_norm", "lws", "crt"),
        rhos=(0.5, 1.0),
    )


def test_every_run_scores_as_if_alone(data, every_row):
    """Shared products, derived scores: the figures of evaluate() on each run's own W, b."""
    for row in every_row.rows:
        assert len(row.runs) == (1 if row.method in ("plain", "ncm", "tau_norm", "logit_adjust")
                                 else 2)  # fmt: skip
        for run in row.runs:
            for split in ("val", "test"):
                x = getattr(data, f"{split}_features")
                y = getattr(data, f"{split}_labels")
                x = x if run.transform is None else run.transform(x)
                alone = af.evaluate(x, y, run.W, run.b, splits=every_row.splits, k=(1, 5))
                _same_report(getattr(run, split), alone)


def test_alphanet_rows_equal_correct_run_alone(data, every_row):
    """Each AlphaNet run is correct() on its base's run of that seed, bit for bit,
    though the runs of one base share their validation scores."""
    from alphanet_fast.baselines.self_check import skipping

    train, val = (data.train_features, data.train_labels), (data.val_features, data.val_labels)
    bases = {row.method: row for row in every_row.rows if row.method != "alphanet"}
    rows = [r for r in every_row.rows if r.method == "alphanet" and r.base in ("plain", "lws")]
    assert len(rows) == 4
    for row in rows:
        for seed, run in enumerate(row.runs):
            base = bases[row.base].runs[seed if row.base == "lws" else 0]
            with skipping():
                alone = af.correct(*train, base.W, base.b, val=val, rho=row.rho, seed=seed,
                                   progress=False, **FAST_ALPHANET)  # fmt: skip
            np.testing.assert_array_equal(run.W, alone.W)
            assert run.settings["best_epoch"] == alone.best_epoch


def test_a_transformed_ncm_scores_as_if_alone(data):
    rep = _run(
        data, methods=("ncm",), alphanet_on=(), seeds=1,
        options={"ncm": {"metric": "euclidean", "cl2n": True}},
    )  # fmt: skip
    run = rep.run("NCM")
    assert run.transform is not None
    alone = af.evaluate(
        run.transform(data.test_features), data.test_labels, run.W, run.b, splits=rep.splits
    )
    _same_report(run.test, alone)


def test_best_is_the_recommended_run_to_ship(data, every_row):
    rep = every_row
    best = rep.best
    assert isinstance(best, af.ComparisonRun)
    assert best.name == rep.recommended
    row = rep.row(rep.recommended)
    # With several seeds: the run with the best validation criterion.
    scores = [r.score(rep.criterion) for r in row.runs]
    assert best is row.runs[int(np.argmax(scores))]
    assert best.W.shape == data.W.shape and best.W.dtype == data.W.dtype
    assert best.b.shape == data.b.shape and best.b.dtype == data.W.dtype
    shipped = af.evaluate(data.test_features, data.test_labels, best.W, best.b, splits=rep.splits)
    _same_report(shipped, best.test)
    for r in rep.rows:
        run = rep.run(r.name)
        assert run.name == r.name and run.method == r.method
        assert run.base == r.base and run.rho == r.rho
        assert run in r.runs and run.settings in r.settings
        assert run.W.dtype == data.W.dtype and run.b.dtype == data.W.dtype
    payload = json.loads(json.dumps(best.to_dict()))
    assert payload["name"] == best.name and payload["method"] == best.method
    assert payload["settings"].keys() == best.settings.keys()
    assert payload["test"] == best.test.to_dict() and payload["feature_transform"] is None
    tau = rep.run("tau-norm")
    assert tau.settings["tau"] == tau.settings["taus"][int(np.argmax(tau.settings["val_accuracy"]))]
    lws_an = rep.run("LWS + AlphaNet (rho=0.5)")
    assert lws_an.method == "alphanet" and lws_an.base == "lws" and lws_an.rho == 0.5
    assert lws_an.settings["seed"] in rep.seeds and lws_an.settings["best_epoch"] >= 1


def test_run_of_an_unknown_row_lists_the_rows(every_row):
    with pytest.raises(af.ArgumentError, match="^name: no row 'SVM'; the rows are") as info:
        every_row.run("SVM")
    assert info.value.argument == "name" and "'tau-norm'" in str(info.value)


def test_the_given_dtype_is_kept(data):
    W64, b64 = data.W.astype(np.float64), data.b.astype(np.float64)
    rep = af.compare(
        (data.train_features, data.train_labels), W64, b64,
        val=(data.val_features, data.val_labels), test=(data.test_features, data.test_labels),
        methods=("tau_norm", "logit_adjust"), alphanet_on=(), seeds=1,
    )  # fmt: skip
    for row in rep.rows:
        run = rep.run(row.name)
        assert run.W.dtype == np.float64 and run.b.dtype == np.float64
        alone = af.evaluate(data.test_features, data.test_labels, run.W, run.b, splits=rep.splits)
        _same_report(run.test, alone)


def test_the_table_shows_what_decided(data, every_row):
    rep = every_row
    lines = rep.table().splitlines()
    assert "Val. overall" in lines[1] and "Chosen" in lines[1]
    by_name = {line[2:].split(" |")[0].strip(): line for line in lines[3 : 3 + len(rep.rows)]}
    for row in rep.rows:
        cells = [c.strip() for c in by_name[row.name].split("|")]
        vals = np.array([r.score(rep.criterion) for r in row.runs]) * 100
        assert cells[-2].split(" ± ")[0] == f"{vals.mean():.1f}"
        if row.rho is not None:
            epochs = "/".join(str(s["best_epoch"]) for s in row.settings)
            assert cells[-1] == f"rho={row.rho:g}, epochs {epochs}"
    assert by_name["tau-norm"].rstrip().endswith(f"tau={rep.run('tau-norm').settings['tau']:g}")


def test_the_table_says_when_another_row_leads_on_test(data):
    # Scored on the long-tailed training set as "test", the rows rank otherwise
    # than on the balanced validation set.
    rep = af.compare(
        (data.train_features, data.train_labels), data.W, data.b,
        val=(data.val_features, data.val_labels), test=(data.train_features, data.train_labels),
        methods=("tau_norm", "logit_adjust"), alphanet_on=(), seeds=1,
    )  # fmt: skip
    on_test = {r.name: r.test[0].accuracy[1]["overall"] for r in rep.rows}
    leader = max(on_test, key=on_test.get)
    assert leader != rep.recommended
    last = rep.table().splitlines()[-1]
    assert last.startswith(f"  best on test: {leader} ({100 * on_test[leader]:.1f} against")
    # Where the recommendation also leads on test, no such line.
    same = af.compare(
        (data.train_features, data.train_labels), data.W, data.b,
        val=(data.val_features, data.val_labels), test=(data.val_features, data.val_labels),
        methods=("tau_norm", "logit_adjust"), alphanet_on=(), seeds=1,
    )  # fmt: skip
    assert "best on test" not in same.table()


def test_the_plot_draws_no_two_rows_alike(every_row, tmp_path, monkeypatch):
    from alphanet_fast import plots

    drawn = {}
    save = plots._save

    def keep(fig, path):
        drawn["fig"] = fig
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    every_row.plot(tmp_path / "tradeoff.png")
    handles, labels = drawn["fig"].axes[0].get_legend_handles_labels()
    assert len(labels) == len(every_row.rows) > 10
    looks = [(str(h[0].get_color()), str(h[0].get_marker()), h[0].get_linestyle()) for h in handles]
    assert len(set(looks)) == len(looks)
    # A base and AlphaNet on top of it share a colour; one rho, one marker.
    look = dict(zip([lb.replace(" (recommended)", "") for lb in labels], looks))
    lws = [look[n][0] for n in ("LWS", "LWS + AlphaNet (rho=0.5)", "LWS + AlphaNet (rho=1)")]
    assert len(set(lws)) == 1
    assert look["cRT + AlphaNet (rho=1)"][1] == look["plain + AlphaNet (rho=1)"][1]


def test_tradeoff_styles_stay_distinct_past_ten_groups_and_rhos():
    from alphanet_fast.plots import tradeoff_styles

    style = {f"{g}-{r}": (g, None if r == 0 else r / 10) for g in range(13) for r in range(13)}
    looks = tradeoff_styles(list(style), style)
    keys = {(str(v["color"]), str(v["marker"]), v["linestyle"]) for v in looks.values()}
    assert len(keys) == len(style)
    plain = tradeoff_styles(["a", "b", "c"])
    assert len({(str(v["color"]), str(v["marker"])) for v in plain.values()}) == 3


def test_a_method_is_one_record(data, monkeypatch):
    """compare() takes a new method from its record alone: label, function, defaults."""
    from alphanet_fast.baselines import BaselineResult, Method, methods

    calls = []

    def halve(features, labels, W, b=None, *, factor=1.0, val=None):
        calls.append({"factor": factor, "val": val is not None})
        return BaselineResult("halve", np.asarray(W) * factor, np.asarray(b) * factor, {})

    record = Method(
        name="halve", label="halved", function=halve, seeded=False, needs_val=True,
        tunes=("factor",), help="scale every logit", rescales=True,
        compare_options={"factor": 0.5},
    )  # fmt: skip
    monkeypatch.setitem(methods.METHODS, "halve", record)
    rep = _run(data, methods=("halve",), alphanet_on=(), seeds=1)
    assert [r.name for r in rep.rows] == ["plain (given)", "halved"]
    assert calls == [{"factor": 0.5, "val": False}]  # its tunes given: val not passed
    # Halving every score changes no ranking.
    _same_report(rep.run("halved").test, rep.run("plain (given)").test)


def test_method_records():
    from alphanet_fast import baselines
    from alphanet_fast.baselines import METHODS

    assert list(METHODS) == ["ncm", "tau_norm", "logit_adjust", "lws", "crt"]
    for name, m in METHODS.items():
        assert m.name == name and m.help and m.label
        assert m.needs_val == bool(m.tunes)
        assert m.seeded == (name in ("lws", "crt"))
        assert m.rescales == (name in ("tau_norm", "logit_adjust", "lws"))
    assert METHODS["tau_norm"].function is baselines.tau_norm
    assert METHODS["lws"].compare_defaults(100_000, 1000) == {
        "epochs": 2, "samples_per_epoch": 32_000
    }  # fmt: skip
    assert METHODS["crt"].compare_defaults(1000, 1000)["samples_per_epoch"] == 1000


def test_splits_use_the_settings_thresholds(data, every_row):
    from alphanet_fast.settings import FEW_BELOW, MANY_ABOVE

    counts = np.bincount(data.train_labels, minlength=data.W.shape[0])
    expected = af.splits_from_counts(counts, few_below=FEW_BELOW, many_above=MANY_ABOVE)
    np.testing.assert_array_equal(every_row.splits.few, expected.few)
    rep = _run(data, methods=(), alphanet_on=(), alphanet_options={"few_below": 30})
    np.testing.assert_array_equal(rep.splits.few, np.flatnonzero(counts < 30))
