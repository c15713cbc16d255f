"""The package's anatomy (issue 26): a new method is one file plus one register line, and its facts reach the command
line, the panel, the comparison, the book and the benchmarks; the loop's pieces are public and add up to ``fit``;
one place per fact (the run cache's key, the method's stored state); no long functions."""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass

import pytest
import torch

import sslteach
from sslteach import compare, prepare_run, train
from sslteach.cli import main
from sslteach.methods import METHODS, Method, MethodConfig, param
from sslteach.methods.base import supervised_loss
from sslteach.phases import PhaseTimer, phase

from conftest import ROOT

TINY = dict(steps=6, eval_every=3, width=8, batch_size=4, progress=False)


# ------------------------------------------------------------------------------------- a throwaway method
@dataclass
class DemoConfig(MethodConfig):
    zz_knob: float = param(0.25, "how much of the unlabeled loss to keep", 0.0, 1.0, 0.05, paper=0.5)
    mu: int = param(2, "unlabeled images per labeled image", 1, 8, 1)


class Demo(Method):
    """A method written for this test only: supervised loss plus a weighted entropy of the unlabeled predictions,
    a learned tensor of its own, a diagnostic of its own and a lump (a pass it makes once)."""

    name = "zz_demo"
    title = "Demo"
    summary = "a throwaway method of the test suite"
    paper = "Nobody et al., A Demo, Nowhere 2026"
    Config = DemoConfig
    year = 2026
    family = "adaptive thresholds"
    notebook = "42_demo"
    builds_on = "fixmatch"
    diagnostics = ("zz_diag",)
    state = ("zz_prior",)
    cpu_ms_per_step = 7.5

    def setup(self, model, split, ctx):
        self.zz_prior = torch.full((ctx.num_classes,), 1.0 / ctx.num_classes, device=ctx.device)
        self.lumps = 0

    def step(self, model, batch, ctx):
        if ctx.step == 1:
            with ctx.lump("demo pass"):
                self.lumps += 1
        x = torch.cat([ctx.aug.weak(batch.x_lb), ctx.aug.weak(batch.x_ulb)])
        logits, _ = model(x)
        n = len(batch.x_lb)
        p = logits[n:].softmax(1)
        ent = -(p * p.clamp_min(1e-8).log()).sum(1).mean()
        self.zz_prior = 0.9 * self.zz_prior + 0.1 * p.detach().mean(0)
        loss_x = supervised_loss(logits[:n], batch.y_lb)
        return loss_x + self.config.zz_knob * ent, {"loss_x": loss_x.detach(), "zz_diag": ent.detach()}


@pytest.fixture
def demo(monkeypatch):
    monkeypatch.setitem(METHODS, Demo.name, Demo)
    return Demo


def test_a_new_method_reaches_the_command_line(demo, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "zz_demo", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--zz-knob" in out and "(paper: 0.5)" in out and "zz_demo options" in out
    assert "--tau" not in out and "--lambda-u" not in out  # only METHOD's own options
    for flag in ("--steps", "--batch-size", "--split", "--imbalance-ratio", "--known-classes", "--dataset"):
        assert flag in out
    with pytest.raises(SystemExit):
        main(["train", "fixmatch", "--help"])
    assert "--zz-knob" not in capsys.readouterr().out
    assert main(["list"]) == 0 and "zz_demo" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["train", "fixmatch", "--zz-knob", "0.5", "--steps", "2"])
    assert e.value.code == 2 and "--zz-knob not an option of method 'fixmatch'" in capsys.readouterr().err
    assert main(["train", "zz_demo", "--zz-knob", "0.5", "--steps", "4", "--eval-every", "2", "--no-progress",
                 "--no-cache"]) == 0
    assert "zz_demo on digits" in capsys.readouterr().out


def test_a_new_method_reaches_the_panel(demo):
    from sslteach.widgets import DIAGNOSTICS, TrainingPanel, diagnostics

    assert "zz_diag" in diagnostics() and "zz_diag" in DIAGNOSTICS
    panel = TrainingPanel(["zz_demo"], steps=6)
    assert set(panel.knobs) == {"zz_knob", "mu"} and panel.knobs["zz_knob"].description == "zz_knob *"
    panel.run(eval_every=3, width=8, batch_size=4)
    assert "zz_diag" in panel.plot._diag and "zz_demo" in panel.table.widget.value


def test_a_new_method_reaches_the_comparison(demo, tmp_path):
    assert compare.METHOD_INFO["zz_demo"] == {"notebook": "42", "year": 2026, "family": "adaptive thresholds"}
    assert compare.CPU_MS_PER_STEP["zz_demo"] == 7.5 and compare.methods()[-1] == "zz_demo"
    info = compare.info("zz_demo")
    assert info["builds_on"] == "fixmatch" and info["title"] == "Demo" and info["paper"].startswith("Nobody")
    assert compare.color("zz_demo") == compare.FAMILY_COLORS["adaptive thresholds"]
    est = compare.estimate(compare.plan(["zz_demo"], [0], [2]), 100, cache=tmp_path)
    assert est["cpu_seconds_cold"] == pytest.approx(7.5 * 100 / 1000 + compare.RUN_OVERHEAD_S + 0.03 * 3)
    table = compare.run_grid(["supervised", "zz_demo"], seeds=[0], cache=tmp_path, verbose=False, **TINY)
    assert table.methods() == ["supervised", "zz_demo"] and not len(table.failed())


def test_a_new_method_reaches_the_book(demo, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "book"))
    import build

    assert build.papers()["42_demo"] == "Nobody et al., A Demo, Nowhere 2026"
    assert build.papers()["03_fixmatch"].startswith("Sohn")


def test_a_new_method_reaches_the_benchmarks(demo):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import step_cost

    per_step, n_grad, n_nograd, r, (batch, ctx) = step_cost.step_time(
        "zz_demo", "digits", dict(width=8, batch_size=4, labels_per_class=2), steps=3)
    assert (n_grad, n_nograd) == (4 + 2 * 4, 0) and per_step > 0
    assert set(r.extra["lump_seconds"]) == {"demo pass"} and r.method_obj.lumps == 1
    assert step_cost.own_passes(r, batch, ctx, repeats=1) > 0


def test_a_new_methods_state_goes_through_the_run_cache(demo, tmp_path):
    a = train("zz_demo", cache=tmp_path, **TINY)
    b = train("zz_demo", cache=tmp_path, **TINY)
    assert not a.from_cache and b.from_cache
    assert torch.equal(a.method_obj.zz_prior, b.method_obj.zz_prior)
    assert not torch.equal(b.method_obj.zz_prior, torch.full((10,), 0.1))  # restored, not the setup's value


# ------------------------------------------------------------------------------------- one place per fact
def _learned(obj, skip) -> set[str]:
    from sslteach.evaluation import EMA

    data = {t.data_ptr() for t in skip if isinstance(t, torch.Tensor) and t.numel()}
    out = set()
    for k, v in vars(obj).items():
        if isinstance(v, EMA) or (isinstance(v, torch.nn.Module) and v.state_dict()):
            out.add(k)
        elif isinstance(v, torch.Tensor) and v.numel() and v.data_ptr() not in data:
            out.add(k)
    return out


@pytest.mark.parametrize("name", sorted(set(sslteach.METHODS) - {"zz_demo"}))
def test_state_names_every_learned_tensor_and_module(name):
    """``Method.state`` is what the run cache stores: every module with weights, EMA copy and tensor a trained
    method holds (other than the split's own images) is in it, or in ``transient`` (per-step scratch)."""
    split = {"cossl": "long_tailed", "openmatch": "open_set"}.get(name, "balanced")
    opts = {**TINY, "steps": 8, **({"rounds": 1} if name == "noisy_student" else {})}
    spec = prepare_run(name, split=split, cache=False, **opts)
    trainer = spec.trainer()
    r = trainer.fit()
    s = trainer.split_on_device
    skip = [s.x_lb, s.y_lb, s.x_ulb, s.y_ulb, s.x_test, s.y_test, *(v for v in s.info.values()
                                                                     if isinstance(v, torch.Tensor))]
    cls = METHODS[name]
    assert _learned(r.method_obj, skip) <= set(cls.state) | set(cls.transient), name
    assert set(cls.state).isdisjoint(cls.transient)


def test_the_cache_key_is_the_specs_key(tmp_path):
    """``RunSpec.cache_key()`` is the key ``train`` stores the run under, and the comparison's estimate uses it."""
    spec = prepare_run("fixmatch", cache=tmp_path, seed=2, **TINY)
    assert not spec.cached()
    train("fixmatch", cache=tmp_path, seed=2, **TINY)
    assert spec.cached() and (tmp_path / f"{spec.cache_key()}.json").exists()
    assert compare.cache_key("fixmatch", seed=2, **TINY) == spec.cache_key()
    assert compare.is_cached("fixmatch", seed=2, cache=tmp_path, **TINY)


# ------------------------------------------------------------------------------------- the loop's anatomy
def test_the_public_pieces_add_up_to_fit():
    """``setup`` + ``next_batch`` + ``train_step`` by hand give the same weights as ``fit`` for the same seed."""
    a = prepare_run("fixmatch", cache=False, **TINY).trainer()
    a.fit()
    b = prepare_run("fixmatch", cache=False, **TINY).trainer()
    b.setup()
    for _ in range(TINY["steps"]):
        logs = b.train_step(b.next_batch())
        assert {"loss", "loss_x", "loss_u", "mask_rate"} <= set(logs)
    assert b.step == a.step == TINY["steps"]
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)


def test_every_phase_of_a_run_is_timed_once():
    trainer = prepare_run("mean_teacher", cache=False, **TINY).trainer()
    r = trainer.fit()
    sec, calls = trainer.timer.seconds, trainer.timer.calls
    for name in ("batch indices", "batch images", "weak views", "step", "backward", "optimizer step", "EMA update",
                 "after step", "evaluation", "final evaluation"):
        assert sec[name] >= 0 and calls[name] >= 1, name
    assert calls["step"] == calls["backward"] == TINY["steps"] and calls["evaluation"] == 1
    loop = r.history.records[-1]["time"]
    assert sum(v for k, v in sec.items() if k != "final evaluation") <= loop + 1e-3  # exclusive: no double count


def test_phase_times_are_exclusive():
    timer = PhaseTimer()
    with timer.active():
        with phase("outer"):
            with phase("inner"):
                sum(range(200_000))
            assert [*timer.names()] == ["outer"]
    assert timer.calls == {"outer": 1, "inner": 1} and timer.seconds["inner"] > 0
    with phase("untimed"):  # no active timer: nothing recorded
        pass
    assert "untimed" not in timer.seconds


# ------------------------------------------------------------------------------------- the shape of the code
def _functions(path):
    tree = ast.parse(path.read_text())
    return [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_no_function_is_longer_than_sixty_lines_and_compare_is_split_by_job():
    long = [f"{p.relative_to(ROOT)}:{name} ({n} lines)" for p in sorted((ROOT / "sslteach").rglob("*.py"))
            for name, n in _functions(p) if n > 60]
    assert not long, long
    big = [p.name for p in (ROOT / "sslteach" / "compare").glob("*.py") if len(p.read_text().splitlines()) > 400]
    assert not big, big


def test_benchmarks_use_only_the_public_api():
    """``benchmarks/`` imports no private name of the package and patches none (no setattr on it)."""
    for path in sorted((ROOT / "benchmarks").rglob("*.py")):
        tree = ast.parse(path.read_text())
        ours = set()  # names bound to sslteach modules or objects in this file
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sslteach"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"
                ours |= {a.asname or a.name for a in node.names}
            if isinstance(node, ast.Import):
                ours |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("sslteach")}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setattr":
                pytest.fail(f"{path.name}:{node.lineno} patches a name with setattr")
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ours
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                pytest.fail(f"{path.name}:{node.lineno} reads the private attribute {node.value.id}.{node.attr}")
    assert not (ROOT / "benchmarks" / "step_time.py").exists()


def test_the_book_needs_nothing_from_the_tests():
    text = (ROOT / "book" / "build.py").read_text()
    assert "tests" not in text.replace("test suite", "") and "import kernels" not in text
