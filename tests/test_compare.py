"""Notebook 10 (every method side by side) and ``sslteach.compare``: the grid runs every registered method through
``train()`` and the run cache, the tidy table and its statistics, the figures, the generated summary, the panel
(cached runs marked, recompute, stop), and the notebook's quick-mode results."""
from __future__ import annotations

import json
import math
import re
import shlex
import statistics
import sys
import threading

import matplotlib
import nbformat
import pytest
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import sslteach  # noqa: E402
from sslteach import compare  # noqa: E402
from sslteach.cache import RunCache  # noqa: E402
from sslteach.data import load_dataset, make_split  # noqa: E402
from sslteach.methods import METHODS, Method  # noqa: E402
from sslteach.methods.supervised import Supervised  # noqa: E402

from conftest import NOTEBOOKS  # noqa: E402

TINY = dict(steps=4, eval_every=2, width=8, batch_size=8)


def _row(method, seed, acc, **kw):
    r = {c: None for c in compare.COLUMNS}
    r.update(method=method, dataset="digits", split="balanced", labels_per_class=2, seed=seed, steps=500,
             steps_done=500, accuracy=acc, balanced_accuracy=acc, wall_seconds=1.0, seconds=0.0, from_cache=False,
             interrupted=False, error="")
    r.update(kw)
    return r


def _table(spec, **kw):
    """spec: {method: [acc seed 0, acc seed 1, ...]}"""
    return compare.Table(_row(m, s, a, **kw) for m, accs in spec.items() for s, a in enumerate(accs))


# ------------------------------------------------------------------------------------------------ the registry
def test_every_registered_method_is_picked_up_supervised_first():
    names = compare.methods()
    assert names[0] == "supervised" and sorted(names) == sorted(METHODS)
    assert compare.methods(include=["fixmatch", "supervised"]) == ["supervised", "fixmatch"]
    assert "fixmatch" not in compare.methods(exclude=["fixmatch"])
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        compare.methods(include=["nope"])


class _NewMethod(Method):
    """A method that declares none of the class facts (year, family, notebook ...): it must still be drawn."""

    name = "zz_new_method"
    summary = "a method registered after the notebook was written"
    step = Supervised.step


def test_registering_a_method_is_all_it_takes_to_join_the_grid(monkeypatch, tmp_path):
    """One register(...) line: the method appears in methods(), in the grid (every registered method is handed to
    the runner), in the table and in the figures. (That every method really trains on every split is the
    quick-mode notebook's test below; here the grid's runner is a stand-in to keep this test instant.)"""
    monkeypatch.setitem(METHODS, _NewMethod.name, _NewMethod)
    assert compare.methods()[-1] == "zz_new_method"
    real = sslteach.train("supervised", seed=0, cache=tmp_path, progress=False, **TINY)
    calls = []

    def fake_run(spec, trainer_hook=None):
        calls.append((spec.method.name, spec.config.seed, spec.split.info["labels_per_class"]))
        real.method, real.seed = spec.method.name, spec.config.seed
        return real

    table = compare.run_grid(None, seeds=[0, 1], cache=tmp_path, verbose=False, runner=fake_run, **TINY)
    assert calls == [(m, s, 2) for m in compare.methods() for s in (0, 1)]
    assert table.methods() == compare.methods() and len(table) == 2 * len(METHODS)
    assert compare.info("zz_new_method")["family"] == "other"  # unknown to METHOD_INFO: still drawn
    ax = compare.plot_bars(table)
    assert "zz_new_method" in [t.get_text() for t in ax.get_yticklabels()]
    plt.close("all")


def test_resolve_methods_from_a_notebook_parameter():
    assert compare.resolve_methods([]) == compare.methods()
    assert compare.resolve_methods(["all"]) == compare.methods()
    assert compare.resolve_methods([], default=["fixmatch", "supervised"]) == ["supervised", "fixmatch"]
    with pytest.warns(UserWarning, match="not_landed_yet"):
        assert compare.resolve_methods(["fixmatch", "not_landed_yet"]) == ["fixmatch"]


# ------------------------------------------------------------------------------------------------ the grid
def test_grid_runs_every_method_budget_and_seed_on_the_same_split(tmp_path):
    table = compare.run_grid(["supervised", "fixmatch"], seeds=[0, 1], budgets=[1, 3], cache=tmp_path,
                             verbose=False, **TINY)
    got = [(r["labels_per_class"], r["method"], r["seed"]) for r in table]
    assert got == [(b, m, s) for b in (1, 3) for m in ("supervised", "fixmatch") for s in (0, 1)]
    for r in table:
        assert set(r) == set(compare.COLUMNS)
        assert r["steps"] == r["steps_done"] == 4 and r["batch_size"] == 8 and r["width"] == 8
        assert 0 <= r["accuracy"] <= 1 and r["wall_seconds"] > 0 and not r["error"] and r["auroc"] is None
    # the same (budget, seed) gives every method the same labeled images: the split is rebuilt from the seed
    a = sslteach.train("supervised", labels_per_class=3, seed=1, cache=tmp_path, progress=False, **TINY)
    b = sslteach.train("fixmatch", labels_per_class=3, seed=1, cache=tmp_path, progress=False, **TINY)
    assert a.from_cache and b.from_cache and a.split == b.split
    assert table.where(method="fixmatch", labels_per_class=3, seed=1).rows[0]["accuracy"] == b.test_accuracy


def test_a_second_call_is_served_by_the_cache(tmp_path):
    kw = dict(seeds=[0, 2], cache=tmp_path, verbose=False, **TINY)
    assert not compare.is_cached("fixmatch", seed=2, cache=tmp_path, **TINY)
    first = compare.run_grid(["supervised", "fixmatch"], **kw)
    assert not any(first.column("from_cache"))
    assert compare.is_cached("fixmatch", seed=2, cache=tmp_path, **TINY)
    key = compare.cache_key("fixmatch", seed=2, **TINY)
    assert key in RunCache(tmp_path) and len(list(tmp_path.glob("*.json"))) == 4  # the key train() stored under
    second = compare.run_grid(["supervised", "fixmatch"], **kw)
    assert all(second.column("from_cache"))
    assert second.column("accuracy") == first.column("accuracy")
    assert second.column("wall_seconds") == first.column("wall_seconds")  # the time it took to *train*
    assert max(second.column("seconds")) < 1.0
    again = compare.run_grid(["supervised", "fixmatch"], recompute=True, **kw)
    assert not any(again.column("from_cache")) and again.column("accuracy") == first.column("accuracy")
    off = compare.run_grid(["supervised"], seeds=[0], cache=False, verbose=False, **TINY)
    assert not off.rows[0]["from_cache"]


def test_cache_key_changes_with_what_decides_the_run():
    base = compare.cache_key("fixmatch", seed=0, **TINY)
    assert base == compare.cache_key("fixmatch", seed=0, **TINY)
    for change in ({"seed": 1}, {"tau": 0.5}, {"labels_per_class": 3}, {"split": "long_tailed"}, {"steps": 5}):
        kw = {**TINY, "seed": 0, **change}
        assert compare.cache_key("fixmatch", **kw) != base, change


def test_long_tailed_and_open_set_rows_carry_their_metrics(tmp_path):
    lt = compare.run_grid(["supervised"], seeds=[0], split="long_tailed", imbalance_ratio=10, cache=tmp_path,
                          verbose=False, **TINY)
    r = lt.rows[0]
    res = sslteach.train("supervised", split="long_tailed", imbalance_ratio=10, seed=0, cache=tmp_path,
                         progress=False, **TINY)
    tail = res.split["tail_classes"]
    assert res.from_cache and r["split"] == "long_tailed" and r["imbalance_ratio"] == 10
    assert r["labels_per_class"] is None and r["auroc"] is None
    assert r["tail_accuracy"] == pytest.approx(sum(res.per_class_accuracy[c] for c in tail) / len(tail))
    assert r["balanced_accuracy"] == pytest.approx(statistics.fmean(res.per_class_accuracy))
    op = compare.run_grid(["supervised"], seeds=[0], split="open_set", known_classes=4, labels_per_class=3,
                          cache=tmp_path, verbose=False, **TINY)
    r = op.rows[0]
    assert r["split"] == "open_set" and r["known_classes"] == 4 and r["labels_per_class"] == 3
    assert 0 <= r["auroc"] <= 1 and r["tail_accuracy"] is None


def test_the_ceiling_trains_on_every_label():
    split = compare.all_labels_split("digits")
    ds = load_dataset("digits")
    assert len(split.y_lb) == len(ds.y_train) and len(split.y_ulb) == 0
    top = compare.ceiling(seeds=[0], cache=False, verbose=False, **TINY)
    r = top.rows[0]
    assert r["method"] == "supervised" and r["split"] == "all_labels"
    assert r["labels_per_class"] == int(ds.class_counts().min())


class _Broken(Supervised):
    name = "zz_broken"

    def step(self, model, batch, ctx):
        raise RuntimeError("this method cannot run here")


def test_a_failing_method_is_a_recorded_row_not_a_crash(monkeypatch, capsys):
    monkeypatch.setitem(METHODS, _Broken.name, _Broken)
    table = compare.run_grid(["supervised", "zz_broken"], seeds=[0], cache=False, verbose=False, **TINY)
    assert len(table) == 2 and len(table.ok()) == 1 and len(table.failed()) == 1
    bad = table.failed().rows[0]
    assert bad["method"] == "zz_broken" and "cannot run here" in bad["error"] and math.isnan(bad["accuracy"])
    assert "zz_broken (seed 0) failed" in capsys.readouterr().out
    assert table.summary()[1]["failed"] == 1 and table.summary()[1]["n"] == 0
    with pytest.raises(RuntimeError, match="cannot run here"):
        compare.run_grid(["zz_broken"], seeds=[0], cache=False, errors="raise", verbose=False, **TINY)
    with pytest.raises(ValueError, match="unknown errors"):
        compare.run_grid(["supervised"], errors="ignore")
    with pytest.raises(ValueError, match="unknown split"):
        compare.run_grid(["supervised"], split="tiny")


def test_stop_ends_the_grid(tmp_path):
    stop = threading.Event()
    seen = []

    def after(row, i, n):
        seen.append((i, n))
        stop.set()

    table = compare.run_grid(["supervised", "pseudo_label"], seeds=[0, 1], cache=False, verbose=False,
                             callback=after, stop=stop, **TINY)
    assert len(table) == 1 and seen == [(0, 4)]


# ------------------------------------------------------------------------------------------------ statistics
def test_summary_is_computed_over_the_seeds():
    t = _table({"supervised": [0.70, 0.74, 0.72], "fixmatch": [0.90, 0.80, 0.88]})
    t.rows[4]["from_cache"] = True
    s = {d["method"]: d for d in t.summary()}
    assert s["fixmatch"]["mean"] == pytest.approx(0.86)
    assert s["fixmatch"]["std"] == pytest.approx(statistics.stdev([0.90, 0.80, 0.88]))  # sample sd (n - 1)
    assert (s["fixmatch"]["min"], s["fixmatch"]["max"]) == (0.80, 0.90)
    assert s["fixmatch"]["by_seed"] == {0: 0.90, 1: 0.80, 2: 0.88} and s["fixmatch"]["cached"] == 1
    assert [d["method"] for d in t.summary()] == ["supervised", "fixmatch"]  # order of first appearance
    assert t.mean(method="supervised") == pytest.approx(0.72)
    one = _table({"a": [0.5]}).summary()[0]
    assert one["std"] == 0.0 and one["n"] == 1
    html = t.to_html()
    assert "86.0% ± 5.3 (80.0-90.0)" in html and "sslteach-compare-table" in html
    assert "cached" in t.runs_html() and "trained" in t.runs_html()
    assert json.loads(json.dumps(t.to_records()))  # JSON-ready


def test_paired_difference_and_gap_closed_by_hand():
    mean, wins, worst = compare.paired_difference([0.9, 0.8, 0.7], [0.85, 0.82, 0.6])
    assert mean == pytest.approx((0.05 - 0.02 + 0.10) / 3) and wins == 2 and worst == pytest.approx(-0.02)
    assert compare.paired_difference([0.5], [0.5])[1] == 0  # a tie is not a win
    with pytest.raises(ValueError, match="same length"):
        compare.paired_difference([0.5, 0.6], [0.5])
    assert compare.gap_closed(0.9, 0.7, 0.95) == pytest.approx(0.8)
    assert compare.gap_closed(0.6, 0.7, 0.95) == pytest.approx(-0.4)
    assert math.isnan(compare.gap_closed(0.8, 0.8, 0.8))


def test_which_method_when_is_written_from_the_numbers():
    main = _table({"supervised": [0.70, 0.74, 0.72], "fixmatch": [0.90, 0.80, 0.88],
                   "mean_teacher": [0.89, 0.85, 0.86], "swwae": [0.69, 0.76, 0.73], "pi_model": [0.86, 0.76, 0.78]})
    for r in main.rows:
        r["wall_seconds"] = {"supervised": 2.0, "fixmatch": 6.0, "mean_teacher": 8.0, "swwae": 3.0, "pi_model": 5.0}[r["method"]]
    budget = compare.Table([_row("supervised", 0, 0.50, labels_per_class=1), _row("fixmatch", 0, 0.70, labels_per_class=1),
                            _row("supervised", 0, 0.85, labels_per_class=8),
                            _row("fixmatch", 0, 0.90, labels_per_class=8)])
    lt = compare.Table([_row(m, 0, a, split="long_tailed", balanced_accuracy=a, tail_accuracy=t)
                        for m, a, t in (("supervised", 0.6, 0.30), ("fixmatch", 0.65, 0.20), ("cossl", 0.7, 0.45))])
    op = compare.Table([_row(m, 0, a, split="open_set", auroc=u)
                        for m, a, u in (("supervised", 0.8, 0.70), ("fixmatch", 0.85, 0.60), ("openmatch", 0.84, 0.90))])
    text = compare.which_method_when(main, ceiling=0.97, budget=budget, long_tailed=lt, open_set=op)
    assert "**mean_teacher** at 86.7 %" in text and "+14.7 points" in text
    assert "closes 59% of the gap" in text  # (0.8667 - 0.72) / (0.97 - 0.72) = 0.587
    assert "seed ranges overlap): fixmatch, pi_model." in text  # pi_model: mean 0.80 but best seed 0.86 >= 0.85
    assert "Ahead of supervised on every seed (same labeled images): mean_teacher (+14.7 points), fixmatch" in text
    assert "Not ahead on every seed: swwae (+0.7 points on average, ahead on 2 of 3)" in text
    assert ("**Tight compute**: fixmatch is within 2 points of the best (86.0 %) at 6.0 s per run, against 8.0 s "
            "for mean_teacher") in text
    assert "fixmatch +20.0 points at 1 vs +5.0 points at 8" in text and "scarcest for fixmatch" in text
    assert "FixMatch's tail-class accuracy is 20.0 %, below" in text
    assert "cossl, built for this setting, vs FixMatch: +25.0 points in tail-class accuracy" in text
    assert "ahead of every other method on every seed in outlier AUROC: **openmatch** (0.900" in text
    assert "+0.300 in outlier AUROC" in text
    assert "Caveats" in text and "500 steps" in text


def test_a_realistic_split_names_a_leader_only_when_every_seed_agrees():
    """Notebook 10's long-tailed and open-set lines name a method only if it is ahead of every other method on every
    seed (paired); where the seeds disagree the line says so, whatever the means."""
    rows = [_row(m, s, a, split="open_set", auroc=u) for m, s, a, u in (
        ("fixmatch", 0, 0.80, 0.60), ("fixmatch", 1, 0.80, 0.90), ("openmatch", 0, 0.80, 0.85),
        ("openmatch", 1, 0.80, 0.80), ("supervised", 0, 0.70, 0.50), ("supervised", 1, 0.70, 0.55))]
    op = compare.Table(rows)
    assert compare.leader(op, "auroc") is None  # openmatch has the higher mean (0.825 vs 0.75) but loses seed 1
    text = compare.which_method_when(compare.Table(), open_set=op)
    assert "no method ahead of all the others on every seed in outlier AUROC (highest mean: openmatch, 0.825)" in text
    assert "**openmatch**" not in text
    rows[3]["auroc"] = 0.95
    assert compare.leader(compare.Table(rows), "auroc") == "openmatch"


def test_papers_table_quotes_each_result_with_its_setting():
    md = compare.papers_table_markdown(["fixmatch"])
    rows = [line for line in md.splitlines()[2:]]
    assert rows and all(line.startswith("| fixmatch") for line in rows)
    assert "92.53 / 95.14 / 95.79" in md and "WRN-28-2" in md and "TorchSSL" in md
    every = compare.papers_table_markdown()
    assert all(p["setting"] and p["source"] for p in compare.PAPER_RESULTS) and "OpenMatch" in every


# ------------------------------------------------------------------------------------------------ estimates
def test_estimate_counts_cached_runs_and_prices_the_rest(tmp_path):
    runs = compare.plan(["supervised", "fixmatch"], [0, 1], [2])
    assert runs == [("supervised", 2, 0), ("supervised", 2, 1), ("fixmatch", 2, 0), ("fixmatch", 2, 1)]
    before = compare.estimate(runs, 4, cache=tmp_path, **{k: v for k, v in TINY.items() if k != "steps"})
    per_run = {m: compare.CPU_MS_PER_STEP[m] * 4 / 1000 + compare.RUN_OVERHEAD_S + 0.03 * (4 // 2 + 1)
               for m in ("supervised", "fixmatch")}
    assert before["runs"] == 4 and before["cached"] == 0
    assert before["cpu_seconds_cold"] == pytest.approx(2 * sum(per_run.values()))
    assert before["minutes_2_cores_cold"] == pytest.approx(before["cpu_seconds_cold"] / 1.7 / 60)
    compare.run_grid(["fixmatch"], seeds=[1], cache=tmp_path, verbose=False, **TINY)
    after = compare.estimate(runs, 4, cache=tmp_path, **{k: v for k, v in TINY.items() if k != "steps"})
    assert after["cached"] == 1
    assert after["cpu_seconds"] == pytest.approx(before["cpu_seconds"] - per_run["fixmatch"])
    assert math.isnan(compare.estimate(runs, 4, dataset="two_moons", cache=False)["cpu_seconds_cold"])


# ------------------------------------------------------------------------------------------------ figures
def test_every_figure_draws_from_a_table():
    main = _table({"supervised": [0.70, 0.74], "fixmatch": [0.90, 0.80]})
    ax = compare.plot_bars(main, ceiling=0.97)
    assert len(ax.patches) >= 2 and [t.get_text() for t in ax.get_yticklabels()] == ["supervised", "fixmatch"]
    assert any(abs(line.get_xdata()[0] - 0.97) < 1e-9 for line in ax.get_lines())  # the ceiling line
    assert any(abs(line.get_xdata()[0] - 0.72) < 1e-9 for line in ax.get_lines())  # the baseline's mean
    ax = compare.plot_compute(main, ceiling=compare.Table([_row("supervised", 0, 0.95, split="all_labels")]))
    assert ax.get_xscale() == "log"
    budget = main + _table({"supervised": [0.5, 0.6], "fixmatch": [0.7, 0.75]}, labels_per_class=1)
    ax = compare.plot_budget(budget)
    assert len(ax.get_lines()) == 2 and [t.get_text() for t in ax.get_xticklabels()][:2] == ["1", "2"]
    lt = compare.Table([_row("supervised", 0, 0.6, split="long_tailed", tail_accuracy=0.3)])
    compare.plot_long_tailed(lt)
    op = compare.Table([_row("supervised", 0, 0.8, split="open_set", auroc=0.7)])
    compare.plot_open_set(op)
    compare.plot_method_map()
    compare.plot_pipeline()
    fig, ax = plt.subplots()
    assert len(compare.figure_png(fig)) > 100
    plt.close("all")


# ------------------------------------------------------------------------------------------------ the panel
def test_panel_compares_marks_cached_runs_and_recomputes(tmp_path):
    panel = compare.ComparePanel(["supervised", "pseudo_label", "fixmatch"], selected=["supervised", "pseudo_label"],
                                 seeds=1, steps=4, cache=tmp_path, device="cpu",
                                 train_options={k: v for k, v in TINY.items() if k != "steps"})
    assert "2 runs, 0 in the run cache" in panel.estimate_line.value
    first = panel.run()
    assert len(first) == 2 and not any(first.column("from_cache"))
    assert "2 runs, 2 in the run cache" in panel.estimate_line.value
    second = panel.run()
    assert all(second.column("from_cache")) and second.column("accuracy") == first.column("accuracy")
    assert "cached" in panel.table_html.value and "2 from the run cache" in panel.status.value
    assert panel.figure.value.startswith("<img src='data:image/png;base64,")
    panel.recompute.value = True
    assert "all retrained" in panel.estimate_line.value
    third = panel.run()
    assert not any(third.column("from_cache")) and third.column("accuracy") == first.column("accuracy")
    panel.recompute.value = False
    panel.split.value = "open_set"
    opened = panel.run()
    assert opened.rows[0]["split"] == "open_set" and opened.rows[0]["auroc"] is not None
    panel.methods.value = ()
    assert "No method" in panel.update_estimate()
    with pytest.raises(ValueError, match="at least one method"):
        panel.run()


def test_panel_stop_ends_the_background_comparison(tmp_path):
    panel = compare.ComparePanel(["supervised", "pseudo_label"], selected=["supervised", "pseudo_label"], seeds=3,
                                 steps=2000, cache=False, device="cpu",
                                 train_options={"width": 8, "batch_size": 8, "eval_every": 1000})
    started = threading.Event()
    real = panel.run

    def run(**kw):
        started.set()
        return real(**kw)

    panel.run = run
    panel.start()
    assert started.wait(30)
    while panel._trainer is None and panel._thread.is_alive():  # the first run has started training
        panel._thread.join(0.05)
    panel.stop()
    panel.wait(120)
    assert not panel._thread.is_alive()
    assert len(panel.table) == 1 and panel.table.rows[0]["interrupted"]
    assert panel.table.rows[0]["steps_done"] < 2000 and "stopped" in panel.status.value
    assert not panel.compare_button.disabled and panel.stop_button.disabled


def test_panel_shows_a_given_table_and_does_not_look_like_a_training_panel():
    t = _table({"supervised": [0.7], "fixmatch": [0.9]})
    panel = compare.ComparePanel(table=t, cache=False)
    assert "fixmatch" in panel.table_html.value and "90.0%" in panel.table_html.value
    # the browser test drives the first `.sslteach-panel` of a notebook as a TrainingPanel: this is not one
    assert "sslteach-panel" not in panel.widget._dom_classes and "sslteach-compare" in panel.widget._dom_classes


# ------------------------------------------------------------------------------------------------ the notebook
def _parameters():
    nb = nbformat.read(NOTEBOOKS / "10_compare.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    names = {m.group(1) for m in re.finditer(r"^(\w+):", cell.source, re.M)}
    return nb, names


def test_papermill_commands_in_the_notebook_name_real_parameters():
    nb, names = _parameters()
    commands = [line.strip() for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
                if line.strip().startswith("papermill ")]
    assert commands
    for cmd in commands:
        words = shlex.split(cmd)
        for flag, value in zip(words, words[1:]):
            if flag == "-p":
                assert value in names, cmd
            if flag == "-y":
                parsed = yaml.safe_load(value)
                assert set(parsed) <= names and all(isinstance(v, list) for v in parsed.values()), cmd


def test_notebook_entry_in_the_book(monkeypatch):
    monkeypatch.syspath_prepend(str(NOTEBOOKS.parent / "book"))
    import build

    assert "10_compare" in build.papers()


@pytest.mark.notebook
def test_notebook_10_results(notebook_results):
    """Quick mode: every registered method ran on the balanced, long-tailed and open-set splits without an error,
    the tables, the panel and the summary were built from them."""
    res = notebook_results("10_compare")
    registered = set(res["registered_methods"])
    assert registered == set(METHODS) and set(res["methods"]) == registered
    assert set(res["main_accuracy"]) == set(res["long_tailed"]) == set(res["open_set"]) == registered
    assert res["failed_runs"] == 0
    chance = 1 / res["num_classes"]
    assert max(res["main_accuracy"].values()) > chance
    for m, acc in res["main_accuracy"].items():
        assert 0 <= acc <= 1 and res["main_spread"][m]["runs"] == len(res["seeds"])
        assert res["seconds_per_run"][m] > 0
    for m, d in res["open_set"].items():
        assert 0 <= d["auroc"] <= 1 and 0 <= d["closed_set_accuracy"] <= 1
    for m, d in res["long_tailed"].items():
        assert 0 <= d["balanced_accuracy"] <= 1 and 0 <= d["tail_accuracy"] <= 1
    assert 0 <= res["ceiling_accuracy"] <= 1 and res["supervised_accuracy"] == res["main_accuracy"]["supervised"]
    assert set(res["budget_curve"]["supervised"]) == {"1", "2"}
    assert res["panel_runs"] == 3 and res["runs_total"] == res["runs_trained"] + res["runs_cached"]
    best = max((m for m in res["main_accuracy"] if m != "supervised"), key=res["main_accuracy"].get)
    assert f"**{best}**" in res["summary"] and "Caveats" in res["summary"]
    assert res["estimate_cold_minutes"] > 0 and res["cold_train_seconds"] > 0
