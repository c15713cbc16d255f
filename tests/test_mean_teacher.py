"""Π-model, temporal ensembling (Laine & Aila, ICLR 2017) and Mean Teacher (Tarvainen & Valpola, NeurIPS 2017):
the ramp-up, the softmax MSE against hand-computed values, the EMA teacher update by hand, temporal ensembling's
bias correction and epochs, gradient flow (the student learns from the consistency term, the teacher never gets a
gradient), config validation, the command line, the claims on digits and notebook 02."""
from __future__ import annotations

import json
import math
from dataclasses import fields

import pytest
import torch
import torch.nn as nn

from sslteach.augment import Augmenter
from sslteach.methods import METHODS, get_method
from sslteach.methods.consistency import (EnsembleTargets, MeanTeacher, MeanTeacherConfig, PiModel, PiModelConfig,
                                          TemporalEnsembling, TemporalEnsemblingConfig, bias_corrected,
                                          ensemble_update, sigmoid_rampup, softmax_mse_loss,
                                          temporal_ensembling_loss)
from sslteach.train import EMA, Batch, Context
from steptools import RecordingNet as _RecordingNet


LN3 = math.log(3.0)


def _close(t: torch.Tensor, want, atol=1e-6) -> bool:
    return torch.allclose(t.detach().float(), torch.tensor(want, dtype=torch.float32), atol=atol)


# ----------------------------------------------------------------------------- ramp-up
def test_rampup_values_by_hand():
    assert sigmoid_rampup(0.0, 0.3) == pytest.approx(math.exp(-5))  # ~0.0067: almost off at the start
    assert sigmoid_rampup(0.15, 0.3) == pytest.approx(math.exp(-1.25))  # half-way: (1 - 1/2)^2 * 5 = 1.25
    assert sigmoid_rampup(0.15, 0.3) == pytest.approx(0.2865048, abs=1e-7)
    assert sigmoid_rampup(0.24, 0.3) == pytest.approx(math.exp(-5 * 0.2 ** 2))  # 0.8187
    assert sigmoid_rampup(0.3, 0.3) == 1.0 and sigmoid_rampup(0.9, 0.3) == 1.0  # full weight after T
    assert sigmoid_rampup(0.0, 0.0) == 1.0  # no ramp-up
    vals = [sigmoid_rampup(k / 100, 0.5) for k in range(101)]
    assert vals == sorted(vals)  # never decreases


def test_method_weight_follows_the_rampup():
    m = PiModel(w_max=50.0, rampup_frac=0.4)
    ctx = _ctx(step=10, total=100)  # progress 0.1: phase 0.75
    assert m.weight(ctx) == pytest.approx(50 * math.exp(-5 * 0.75 ** 2))
    assert m.weight(_ctx(step=40, total=100)) == 50.0


# ----------------------------------------------------------------------------- consistency losses, by hand
def test_softmax_mse_by_hand():
    # row 1: softmax [0.5, 0.5] vs [0.75, 0.25] -> squared differences 0.0625, 0.0625; row 2 identical -> 0
    a = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    b = torch.tensor([[LN3, 0.0], [1.0, 2.0]])
    assert softmax_mse_loss(a, b).item() == pytest.approx((0.0625 + 0.0625 + 0 + 0) / 4, abs=1e-7)  # 1/(C N)
    # the mean over classes follows the official code: with C = 4 the same squared error is divided by 4
    a4 = torch.tensor([[0.0, 0.0, -1e4, -1e4]])
    b4 = torch.tensor([[LN3, 0.0, -1e4, -1e4]])
    assert softmax_mse_loss(a4, b4).item() == pytest.approx((0.0625 + 0.0625) / 4, abs=1e-7)
    assert softmax_mse_loss(b, a).item() == pytest.approx(softmax_mse_loss(a, b).item())  # symmetric


def test_softmax_mse_sends_gradient_to_both_arguments_unless_one_is_detached():
    a = torch.randn(5, 3, requires_grad=True)
    b = torch.randn(5, 3, requires_grad=True)
    softmax_mse_loss(a, b).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0  # Π-model: both passes learn
    a.grad = None
    b2 = b.detach()
    softmax_mse_loss(a, b2).backward()
    assert a.grad.abs().sum() > 0


def test_temporal_ensembling_loss_by_hand_and_missing_targets_count_as_zero():
    logits = torch.tensor([[0.0, 0.0], [0.0, 0.0]], requires_grad=True)  # softmax [0.5, 0.5]
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    loss, mask = temporal_ensembling_loss(logits, targets, torch.tensor([1.0, 0.0]))
    assert mask.tolist() == [1.0, 0.0]
    assert loss.item() == pytest.approx((0.25 + 0.25) / 2 / 2, abs=1e-7)  # row 1: 0.25 per class; row 2 masked
    loss.backward()
    assert targets.grad is None  # the ensemble target is a constant
    assert logits.grad[0].abs().sum() > 0 and logits.grad[1].abs().sum() == 0


# ----------------------------------------------------------------------------- temporal ensembling's memory
def test_ensemble_update_and_bias_correction_by_hand():
    a = 0.6
    z1, z2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    Z = ensemble_update(torch.zeros(1, 2), z1, a)
    assert _close(Z, [[0.4, 0.0]])  # biased towards the zero start
    assert _close(bias_corrected(Z, a, 1), [[1.0, 0.0]])  # / (1 - 0.6)
    Z = ensemble_update(Z, z2, a)
    assert _close(Z, [[0.24, 0.4]])
    # / (1 - 0.36): weights 0.375 and 0.625 on the two epochs, summing to one
    assert _close(bias_corrected(Z, a, 2), [[0.375, 0.625]])


def test_bias_correction_returns_a_constant_prediction_exactly():
    z = torch.tensor([[0.7, 0.2, 0.1]])
    Z = torch.zeros(1, 3)
    for t in range(1, 8):
        Z = ensemble_update(Z, z, 0.6)
        assert torch.allclose(bias_corrected(Z, 0.6, t), z, atol=1e-6)
        assert torch.allclose(Z, (1 - 0.6 ** t) * z, atol=1e-6)  # uncorrected: shrunk towards zero


def test_bias_correction_with_per_image_counts_and_zero_counts():
    Z = torch.tensor([[0.4, 0.0], [0.24, 0.4], [0.0, 0.0]])
    out = bias_corrected(Z, 0.6, torch.tensor([1, 2, 0]))
    assert _close(out, [[1.0, 0.0], [0.375, 0.625], [0.0, 0.0]])  # no update yet: no target


def test_ensemble_targets_refresh_once_per_epoch_and_only_for_images_seen():
    ens = EnsembleTargets(num_items=4, num_classes=2, alpha=0.6)
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ens.record(torch.tensor([0, 1]), p)
    assert not ens.epoch_done
    assert ens.lookup(torch.tensor([0, 1]))[1].tolist() == [0.0, 0.0]  # no targets during the first epoch
    ens.record(torch.tensor([0, 2]), torch.tensor([[0.5, 0.5], [0.2, 0.8]]))  # image 0 again: latest one kept
    assert ens.epoch_done  # 4 predictions recorded for 4 images
    ens.end_epoch()
    t, has = ens.lookup(torch.arange(4))
    assert has.tolist() == [1.0, 1.0, 1.0, 0.0]  # image 3 was never predicted
    assert _close(t[:3], [[0.5, 0.5], [0.0, 1.0], [0.2, 0.8]])  # bias-corrected: exact
    assert ens.counts.tolist() == [1, 1, 1, 0]
    ens.record(torch.arange(4), torch.tensor([[1.0, 0.0]] * 4))
    ens.end_epoch()
    t, has = ens.lookup(torch.arange(4))
    assert t[0].tolist() == pytest.approx([0.375 * 0.5 + 0.625 * 1.0, 0.375 * 0.5])  # two epochs, t = 2
    assert t[3].tolist() == pytest.approx([1.0, 0.0]) and has[3] == 1.0  # its first epoch: t = 1


def test_temporal_ensembling_step_builds_targets_over_epochs(digits):
    torch.manual_seed(0)
    method = TemporalEnsembling(mu=2)
    n_ulb = 24
    ctx = _ctx(num_unlabeled=n_ulb)
    net = _TinyNet()
    method.setup(net, None, ctx)
    x = digits.x_train
    for k in range(3):  # 3 steps of 8 unlabeled images = one epoch of 24
        idx = torch.arange(8 * k, 8 * k + 8)
        batch = Batch(x[:4], digits.y_train[:4], x[100 + idx], digits.y_train[100 + idx], idx_ulb=idx)
        _, logs = method.step(net, batch, ctx)
        assert logs["mask_rate"] == 0.0 and logs["loss_u"] == 0.0  # first epoch: no targets yet
    assert method.ensemble.epochs == 1 and (method.ensemble.counts == 1).all()
    idx = torch.arange(8)
    batch = Batch(x[:4], digits.y_train[:4], x[100 + idx], digits.y_train[100 + idx], idx_ulb=idx)
    loss, logs = method.step(net, batch, ctx)
    assert logs["mask_rate"] == 1.0 and logs["loss_u"] > 0
    sums = method.ensemble.targets.sum(1)
    assert torch.allclose(sums, torch.ones(n_ulb), atol=1e-5)  # bias-corrected targets are distributions


# ----------------------------------------------------------------------------- the EMA teacher
def test_ema_update_by_hand():
    student = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        student.weight.fill_(1.0)
    ema = EMA(student, decay=0.9)
    with torch.no_grad():
        student.weight.fill_(3.0)
    used = ema.update(student)  # 1st update: a = min(0.9, 1 - 1/2) = 0.5 (the true average so far)
    assert used == 0.5 and ema.module.weight.item() == pytest.approx(0.5 * 1.0 + 0.5 * 3.0)
    with torch.no_grad():
        student.weight.fill_(5.0)
    used = ema.update(student)  # 2nd: a = min(0.9, 1 - 1/3) = 2/3
    assert used == pytest.approx(2 / 3) and ema.module.weight.item() == pytest.approx(2 / 3 * 2.0 + 1 / 3 * 5.0)
    ema.num_updates = 100  # well past the warm start: a = 0.9
    with torch.no_grad():
        student.weight.fill_(0.0)
    before = ema.module.weight.item()
    assert ema.update(student) == 0.9
    assert ema.module.weight.item() == pytest.approx(0.9 * before + 0.1 * 0.0)


def test_mean_teacher_uses_the_rampup_decay_then_the_final_decay(digits):
    method = MeanTeacher(teacher_decay=0.5, teacher_decay_rampup=0.8, rampup_frac=0.3)
    net = _TinyNet()
    method.setup(net, None, _ctx())
    method.teacher.num_updates = 1000  # past the 1 - 1/(t+1) warm start
    w_t = method.teacher.module.fc.weight.detach().clone()
    with torch.no_grad():
        net.fc.weight.add_(1.0)
    w_s = net.fc.weight.detach().clone()
    method.after_step(net, _ctx(step=10, total=100))  # progress 0.1 < 0.3: ramp-up decay 0.8
    assert torch.allclose(method.teacher.module.fc.weight, 0.8 * w_t + 0.2 * w_s, atol=1e-6)
    w_t = method.teacher.module.fc.weight.detach().clone()
    method.after_step(net, _ctx(step=50, total=100))  # after the ramp-up: 0.5
    assert torch.allclose(method.teacher.module.fc.weight, 0.5 * w_t + 0.5 * w_s, atol=1e-6)


# ----------------------------------------------------------------------------- gradient flow
class _TinyNet(nn.Module):
    """A linear classifier with BatchNorm (so train/eval mode matters) that returns (logits, features)."""

    def __init__(self, in_dim=64, num_classes=10):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_dim)
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, x):
        h = self.bn(x.flatten(1))
        return self.fc(h), h


def _ctx(step=0, total=100, num_unlabeled=12):
    return Context(Augmenter("image"), step, total, torch.device("cpu"), 10, num_unlabeled)


def _batch(digits, b=4, n_ulb=12):
    x, y = digits.x_train, digits.y_train
    return Batch(x[:b], y[:b], x[b: b + n_ulb], y[b: b + n_ulb], idx_ulb=torch.arange(n_ulb))


def test_consistency_alone_gives_the_student_a_gradient_and_the_teacher_none(digits):
    """The bug a well-known SSL library shipped: the teacher's no-grad logits were used as the student's, so the
    consistency loss had no gradient and training silently ran without it. Here the consistency term *alone* must
    move the student, and nothing may reach the teacher."""
    torch.manual_seed(0)
    net = _TinyNet()
    method = MeanTeacher()
    ctx = _ctx(step=90)  # after the ramp-up
    method.setup(net, None, ctx)
    out = method.losses(net, _batch(digits), ctx)
    assert out["loss_u"].requires_grad and out["loss_u"].item() > 0
    out["loss_u"].backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None for g in grads)
    assert net.fc.weight.grad.abs().sum() > 0  # the consistency term moves the student
    for p in method.teacher.module.parameters():
        assert p.grad is None and not p.requires_grad  # and never the teacher


def test_full_step_trains_the_student_and_leaves_the_teacher_to_the_ema(digits):
    torch.manual_seed(1)
    net = _TinyNet()
    method = MeanTeacher()
    ctx = _ctx(step=90)
    method.setup(net, None, ctx)
    teacher_before = [p.detach().clone() for p in method.teacher.module.parameters()]
    student_before = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    loss, logs = method.step(net, _batch(digits), ctx)
    assert loss.item() == pytest.approx(logs["loss_x"].item() + logs["weight_u"] * logs["loss_u"].item(), rel=1e-6)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(student_before, net.parameters()))
    for a, p in zip(teacher_before, method.teacher.module.parameters()):
        assert torch.equal(a, p) and p.grad is None  # the optimizer step left the teacher alone
    method.after_step(net, ctx)  # only the EMA moves it: 1st update, a = min(0.99, 1/2) = 0.5
    for a, s, p in zip(teacher_before, net.parameters(), method.teacher.module.parameters()):
        assert torch.allclose(p, 0.5 * a + 0.5 * s.detach(), atol=1e-6)


def test_mean_teacher_target_is_the_teacher_not_the_student(digits):
    """The teacher's prediction (and not a detached copy of the student's) is the target: make the teacher differ
    from the student and the consistency loss must change accordingly."""
    torch.manual_seed(2)
    net = _TinyNet()
    method = MeanTeacher(noise_std=0.0)
    ctx = _ctx(step=90)
    method.setup(net, None, ctx)
    with torch.no_grad():
        for p in method.teacher.module.parameters():
            p.zero_()  # teacher predicts uniform 1/C on every image
    torch.manual_seed(3)
    out = method.losses(net, _batch(digits), ctx)
    torch.manual_seed(3)
    x_lb = method.view(digits.x_train[:4], ctx)
    x_s = method.view(digits.x_train[4:16], ctx)
    logits, _ = net(torch.cat([x_lb, x_s]))
    p = torch.softmax(logits[4:], 1)
    assert out["loss_u"].item() == pytest.approx(((p - 0.1) ** 2).mean().item(), rel=1e-5)


def test_pi_model_gradient_flows_through_both_passes(digits):
    torch.manual_seed(0)
    net = _RecordingNet()
    method = PiModel()
    out = method.losses(net, _batch(digits, 4, 12), _ctx(step=90))
    out["loss_u"].backward()
    g = net.logits.grad
    assert g.shape == (4 + 2 * 12, 10)
    assert g[:4].abs().sum() == 0  # the labeled rows are not in the consistency term
    assert g[4:16].abs().sum() > 0 and g[16:].abs().sum() > 0  # both passes get gradient (official code)


def test_temporal_ensembling_gradient_reaches_the_network_not_the_targets(digits):
    torch.manual_seed(0)
    net = _RecordingNet()
    method = TemporalEnsembling()
    method.setup(net, None, _ctx(num_unlabeled=12))
    method.ensemble.targets = torch.full((12, 10), 0.1, requires_grad=True)  # pretend an epoch has passed
    method.ensemble.counts.fill_(1)
    out = method.losses(net, _batch(digits, 4, 12), _ctx(step=90, num_unlabeled=12))
    out["loss_u"].backward()
    assert net.logits.grad[4:].abs().sum() > 0
    assert method.ensemble.targets.grad is None


# ----------------------------------------------------------------------------- defaults and arguments
def test_registered_with_the_papers_settings():
    assert {"pi_model", "temporal_ensembling", "mean_teacher"} <= set(METHODS)
    assert TemporalEnsemblingConfig().ensemble_alpha == 0.6  # paper
    assert (PiModelConfig().w_max, TemporalEnsemblingConfig().w_max) == (100.0, 30.0)  # tempens config.py
    assert MeanTeacherConfig().w_max == 100.0  # mean-teacher: max_consistency_cost 100 (x M/N, see the module)
    # CPU-scaled (the paper's 0.99 / 0.999 average over 100 / 1000 of 150k steps); the paper's values are noted
    assert (MeanTeacherConfig().teacher_decay_rampup, MeanTeacherConfig().teacher_decay) == (0.95, 0.95)
    meta = {f.name: f.metadata for f in fields(MeanTeacherConfig)}
    assert meta["teacher_decay_rampup"]["paper"] == 0.99 and "0.999" in meta["teacher_decay"]["paper"]
    assert MeanTeacher.report == "teacher" and PiModel.report is None


@pytest.mark.parametrize("method, option, value, pattern", [
    ("mean_teacher", "teacher_decay", 1.5, r"teacher_decay must be in \[0(\.0)?, 1(\.0)?\]"),
    ("mean_teacher", "teacher_decay_rampup", -0.1, r"teacher_decay_rampup must be in"),
    ("mean_teacher", "w_max", -1.0, r"w_max must be in \[0(\.0)?, 300(\.0)?\]"),
    ("pi_model", "rampup_frac", 1.5, r"rampup_frac must be in \[0(\.0)?, 1(\.0)?\]"),
    ("pi_model", "noise_std", float("nan"), r"noise_std must be in"),
    ("pi_model", "mu", 0, r"mu must be in \[1, 16\]"),
    ("temporal_ensembling", "ensemble_alpha", 1.0, r"ensemble_alpha must be in \[0(\.0)?, 0\.99\]"),
    ("temporal_ensembling", "mu", 2.5, r"mu must be an integer"),
    ("mean_teacher", "ema_decay", 0.9, r"unknown option.*teacher_decay"),  # the loop's EMA is not the teacher
])
def test_bad_arguments_raise_clear_errors(method, option, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        get_method(method, **{option: value})


def test_bad_arguments_to_the_pure_functions_raise():
    with pytest.raises(ValueError, match=r"rampup must be in"):
        sigmoid_rampup(0.5, -1.0)
    with pytest.raises(ValueError, match=r"alpha must be in"):
        bias_corrected(torch.zeros(1, 2), 1.5, 1)
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        softmax_mse_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        temporal_ensembling_loss(torch.zeros(2, 3), torch.zeros(3, 3))


def test_a_method_without_unlabeled_images_says_so(digits):
    batch = Batch(digits.x_train[:4], digits.y_train[:4])
    with pytest.raises(ValueError, match="needs unlabeled images"):
        PiModel().step(_TinyNet(), batch, _ctx())


@pytest.mark.parametrize("method, flags", [
    ("pi_model", ["--w-max", "50", "--noise-std", "0.1"]),
    ("temporal_ensembling", ["--ensemble-alpha", "0.6"]),
    ("mean_teacher", ["--teacher-decay", "0.99", "--rampup-frac", "0.3"]),
])
def test_command_line_trains_each_method(method, flags, capsys, tmp_path):
    from sslteach.cli import main

    out = tmp_path / "run.json"
    rc = main(["train", method, *flags, "--steps", "6", "--eval-every", "3", "--mu", "2", "--no-progress",
               "--out", str(out)])
    assert rc == 0
    assert f"{method} on digits (2 labels/class, seed 0): test accuracy" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["method_config"]["mu"] == 2
    assert any("weight_u" in r for r in data["history"])
    if method == "mean_teacher":
        assert data["extra"]["report"] == "test_acc_teacher"
        assert all("test_acc_teacher" in r and "test_acc" in r for r in data["history"])


def test_command_line_rejects_a_bad_teacher_decay(capsys):
    from sslteach.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "mean_teacher", "--teacher-decay", "1.5", "--steps", "2", "--no-progress"])
    assert e.value.code == 2
    assert "teacher_decay must be in [0.0, 1.0]" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the claims and the notebook
# ----------------------------------------------------------------------------- the claims (claim scale, 3 seeds)
@pytest.mark.notebook
def test_notebook_02_results(notebook_results):
    res = notebook_results("02_mean_teacher")
    chance = 1 / res["num_classes"]
    for key in ("supervised_accuracy", "pi_model_accuracy", "temporal_ensembling_accuracy",
                "mean_teacher_accuracy", "mean_teacher_student_accuracy"):
        assert math.isfinite(res[key]) and chance < res[key] <= 1, key
    for key in ("supervised_seconds", "pi_model_seconds", "temporal_ensembling_seconds", "mean_teacher_seconds",
                "notebook_seconds"):
        assert math.isfinite(res[key]) and res[key] > 0, key
    sweep = res["decay_sweep"]
    assert len(sweep["teacher_decay"]) == len(sweep["teacher_accuracy"]) >= 3
    assert all(math.isfinite(v) and 0 <= v <= 1 for v in sweep["teacher_accuracy"])
    assert all(math.isfinite(v) and v >= 0 for v in (res["student_curve_roughness"], res["teacher_curve_roughness"]))
