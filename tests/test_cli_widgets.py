"""The command line and the widget kit, driven without a browser."""
import json
import subprocess
import sys

import pytest

from sslteach.cli import main
from sslteach.widgets import BudgetExplorer, TrainingPanel, control_for


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "supervised" in out and "fixmatch" in out and "digits" in out and "cifar10" in out


def test_train_writes_json(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["train", "supervised", "--dataset", "digits", "--labels-per-class", "3", "--steps", "30",
                 "--seed", "1", "--device", "auto", "--out", str(out), "--no-progress"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if not x.startswith("defaults for this run")][0]
    assert line.startswith("supervised on digits (3 labels/class, seed 1): test accuracy")
    d = json.loads(out.read_text())
    assert d["labels_per_class"] == 3 and d["steps"] == 30 and d["seed"] == 1 and d["history"]


def test_method_flags_reach_the_method(tmp_path):
    out = tmp_path / "r.json"
    main(["train", "fixmatch", "--steps", "10", "--tau", "0.5", "--lambda-u", "2", "--mu", "2", "--strong", "false",
          "--no-progress", "--out", str(out)])
    cfg = json.loads(out.read_text())["method_config"]
    assert (cfg["tau"], cfg["lambda_u"], cfg["mu"], cfg["strong"]) == (0.5, 2.0, 2, False)


@pytest.mark.parametrize("argv, match", [
    (["train", "nope"], "unknown method 'nope'"),
    (["train", "supervised", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["train", "supervised", "--labels-per-class", "0"], "labels_per_class must be"),
    (["train", "supervised", "--steps", "0"], "steps must be in"),
    (["train", "fixmatch", "--tau", "1.5", "--steps", "5"], r"tau must be in \[0.0, 1.0\]"),
    (["train", "supervised", "--tau", "0.5"], "--tau not an option of method .supervised."),
])
def test_bad_arguments_exit_2_with_one_line(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv + ["--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    import re

    assert re.search(match, err), err


def test_python_dash_m_entry_point():
    p = subprocess.run([sys.executable, "-m", "sslteach", "list"], capture_output=True, text=True, check=True)
    assert "methods:" in p.stdout


def test_controls_from_config_metadata():
    from dataclasses import fields

    from sslteach.methods.fixmatch import FixMatchConfig

    ctl = {f.name: control_for(f) for f in fields(FixMatchConfig)}
    assert (ctl["tau"].min, ctl["tau"].max, ctl["tau"].value) == (0.0, 1.0, 0.95)
    assert ctl["tau"].continuous_update is False
    assert type(ctl["mu"]).__name__ == "IntSlider" and type(ctl["strong"]).__name__ == "Checkbox"


def test_panel_run_updates_plot_and_table():
    p = TrainingPanel(["supervised", "fixmatch"], steps=40)
    p.labels.value = 3
    r = p.run()
    assert r.labels_per_class == 3
    assert p.plot.points() == 1  # eval_every (50) > steps (40): only the final evaluation
    assert len(p.table.rows) == 1 and "<table" in p.table.widget.value


def test_panel_knobs_follow_the_method_and_reach_training():
    p = TrainingPanel(["supervised", "fixmatch"], steps=20, train_options={"eval_every": 10})
    assert list(p.knobs) == []
    p.method.value = "fixmatch"
    assert set(p.knobs) == {"tau", "lambda_u", "mu", "strong", "dist_align", "da_momentum"}
    p.knobs["tau"].value = 0.5
    p.knobs["mu"].value = 2
    r = p.run()
    assert r.method == "fixmatch" and r.method_config["tau"] == 0.5 and r.method_config["mu"] == 2
    assert p.plot.points() == 2  # step 10 and the final evaluation
    diag_names = {t.name for t in p.plot.fig.data}
    assert {"mask_rate", "pseudo_acc", "loss_u"} <= diag_names


def test_stop_button_keeps_the_run():
    p = TrainingPanel(["supervised"], steps=3000, train_options={"eval_every": 10})
    th = p.start()
    import time

    t0 = time.time()
    while (p.trainer is None or p.trainer.step < 30) and time.time() - t0 < 30:
        time.sleep(0.01)
    p.stop_button.click()
    p.wait(30)
    assert not th.is_alive()
    r = p.results[-1]
    assert r.interrupted and r.steps_done < 3000
    assert p.table.rows[-1]["note"] == "stopped early" and p.plot.points() >= 3


def test_panel_shows_errors_instead_of_losing_them():
    p = TrainingPanel(["supervised"], steps=20)
    p.seed.value = 0
    p.labels.max = 500
    p.labels.value = 500  # more than a digits class has
    p.train_button.click()
    p.wait(30)
    assert "labels_per_class must be in" in p.status.value


def test_budget_explorer():
    b = BudgetExplorer("supervised", "digits", budgets=(1, 5), steps=30)
    acc1 = b.run(1)
    b.run(5)
    ceiling = b.run_ceiling()
    assert 0 <= acc1 <= 1 and 0 <= ceiling <= 1
    assert list(b.fig.data[0].x) == [1, 5] and len(b.fig.data[1].y) == 2


# ----------------------------------------------------------------------------- command line: more
def test_help_exits_zero_and_lists_the_split_flags(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0  # --help is not an error
    out = capsys.readouterr().out
    for flag in ("--split", "--imbalance-ratio", "--n-max", "--m-max", "--known-classes", "--no-cache"):
        assert flag in out


def test_out_into_a_missing_folder_fails_before_training(tmp_path, capsys, monkeypatch):
    import sslteach.cli as cli

    monkeypatch.setattr(cli, "train", lambda *a, **k: pytest.fail("trained before checking --out"))
    with pytest.raises(SystemExit) as e:
        main(["train", "supervised", "--steps", "5", "--out", str(tmp_path / "no" / "such" / "r.json")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err


def test_split_flags_reach_every_method(tmp_path):
    out = tmp_path / "lt.json"
    assert main(["train", "fixmatch", "--split", "long_tailed", "--imbalance-ratio", "10", "--steps", "10",
                 "--mu", "1", "--no-progress", "--no-cache", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["split"]["kind"] == "long_tailed" and d["split"]["imbalance_ratio"] == 10
    assert len(d["per_class_accuracy"]) == 10 and d["balanced_accuracy"] is not None
    out = tmp_path / "os.json"
    assert main(["train", "supervised", "--split", "open_set", "--known-classes", "0,1,2,3", "--labels-per-class",
                 "3", "--steps", "10", "--no-progress", "--no-cache", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["split"]["known_classes"] == [0, 1, 2, 3] and len(d["per_class_accuracy"]) == 4
    assert 0 <= d["auroc"] <= 1


@pytest.mark.parametrize("argv, match", [
    (["train", "supervised", "--imbalance-ratio", "10"], "only apply to another --split"),
    (["train", "supervised", "--split", "lt"], "invalid choice"),
    (["train", "supervised", "--split", "long_tailed", "--imbalance-ratio", "0.5"], "imbalance_ratio must be in"),
    (["train", "supervised", "--split", "open_set", "--known-classes", "10"], "known_classes must leave"),
    (["train", "supervised", "--split", "open_set", "--known-classes", "a,b"], "expected a number K"),
])
def test_bad_split_arguments_exit_2_with_one_line(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv + ["--steps", "5", "--no-progress", "--no-cache"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    import re

    assert re.search(match, err[-1]), err


def test_cli_uses_the_run_cache_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SSLTEACH_CACHE", str(tmp_path))
    argv = ["train", "supervised", "--steps", "10", "--no-progress"]
    assert main(argv) == 0 and "run cache" not in capsys.readouterr().out
    assert main(argv) == 0 and "[from the run cache]" in capsys.readouterr().out
    assert main(argv + ["--no-cache"]) == 0 and "run cache" not in capsys.readouterr().out


def test_cli_prints_the_defaults_it_applied(capsys):
    assert main(["train", "supervised", "--steps", "5", "--no-progress", "--no-cache"]) == 0
    assert "defaults for this run (any flag overrides them): --width 16" in capsys.readouterr().out
    assert main(["train", "supervised", "--steps", "5", "--width", "8", "--no-progress", "--no-cache"]) == 0
    assert "defaults for this run" not in capsys.readouterr().out


# ----------------------------------------------------------------------------- the panel: more
def test_train_twice_does_not_start_a_second_run():
    p = TrainingPanel(["supervised"], steps=3000, train_options={"eval_every": 10, "cache": False})
    th1 = p.start()
    th2 = p.start()  # the second press while the first run trains
    assert th2 is th1 and "already in progress" in p.status.value
    p.stop()
    p.wait(60)
    assert len(p.results) == 1 and len(p.table.rows) == 1


def test_stop_before_train_is_harmless():
    p = TrainingPanel(["supervised"], steps=20, train_options={"cache": False})
    p.stop_button.disabled = False
    p.stop_button.click()
    assert "Nothing to stop" in p.status.value
    r = p.run()
    assert not r.interrupted and r.steps_done == 20  # a stale Stop does not cut the next run short


def test_panel_keeps_only_the_last_models_in_memory():
    p = TrainingPanel(["supervised"], steps=10, keep_models=2, train_options={"cache": False})
    for _ in range(4):
        p.run()
    assert [r.model is not None for r in p.results] == [False, False, True, True]
    assert len(p.table.rows) == 4 and all(r.test_accuracy >= 0 for r in p.results)  # the numbers stay


def test_add_result_shows_a_run_and_never_empties_the_callers_result():
    from sslteach import train

    outside = train("supervised", steps=10, eval_every=5, progress=False, cache=False)
    p = TrainingPanel(["supervised"], steps=10, keep_models=1, train_options={"cache": False})
    p.add_result(outside, "baseline from an earlier cell")
    assert p.table.rows[-1]["method"] == "baseline from an earlier cell" or \
        "baseline from an earlier cell" in str(p.table.rows[-1])
    for _ in range(2):
        p.run()
    assert outside.model is not None and outside.method_obj is not None  # the caller still owns its model
    assert p.results[1].model is None and p.results[2].model is not None  # the panel's own runs are bounded


@pytest.mark.parametrize("dataset", ["mnist", "cifar10", "svhn"])
def test_panel_accepts_any_dataset(dataset):
    p = TrainingPanel(["supervised"], dataset=dataset)
    assert p.dataset.value == dataset and dataset in p.dataset.options


def test_panel_on_a_dataset_that_is_not_there_shows_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLTEACH_DATA", str(tmp_path))
    import torchvision

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    p = TrainingPanel(["supervised"], dataset="cifar10", steps=5, train_options={"cache": False})
    p.train_button.click()
    p.wait(30)
    assert "could not be downloaded" in p.status.value and "digits" in p.status.value


def test_panel_splits():
    lt = TrainingPanel(["supervised"], split="long_tailed", imbalance_ratio=10, steps=10,
                       train_options={"cache": False})
    assert lt.imbalance in lt.widget.children[0].children[0].children
    assert lt.labels not in lt.widget.children[0].children[0].children
    r = lt.run()
    assert r.split["kind"] == "long_tailed" and r.split["imbalance_ratio"] == 10
    assert "tail accuracy" in lt.table.rows[-1] and lt.table.rows[-1]["labeled set"] == "gamma 10, N_max 50"
    op = TrainingPanel(["supervised"], split="open_set", known_classes=4, steps=10, train_options={"cache": False})
    r = op.run()
    assert r.split["known_classes"] == [0, 1, 2, 3] and "AUROC" in op.table.rows[-1] and 0 <= op.table.rows[-1]["AUROC"] <= 1


def test_cpu_scaled_knobs_show_the_papers_value():
    from dataclasses import fields

    from sslteach.methods.consistency import MeanTeacherConfig

    f = {x.name: x for x in fields(MeanTeacherConfig)}["teacher_decay"]
    ctl = control_for(f)
    assert ctl.description.endswith("*") and "paper:" in ctl.tooltip
    p = TrainingPanel(["mean_teacher"])
    assert any(isinstance(w.value, str) and "CPU-scaled" in w.value for w in p.knob_box.children
               if hasattr(w, "value"))
