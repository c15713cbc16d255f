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
    line = capsys.readouterr().out.splitlines()[0]
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
    assert set(p.knobs) == {"tau", "lambda_u", "mu", "strong"}
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
