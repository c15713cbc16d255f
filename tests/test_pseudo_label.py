"""Pseudo-Label (Lee 2013) and Noisy Student (Xie et al. 2020): the alpha(t) ramp, the pseudo-label loss against
hand-computed values, its stop-gradient and confidence filter, the teacher's targets and the student's loss, the
teacher/student rounds (frozen teacher, relabelling, restart, per-round results), config validation, the command
line, the claims (both beat the supervised baseline on digits with 2 labels per class; without noise the student
does not) and notebook 01."""
from __future__ import annotations

import json
import math

import pytest
import torch

from sslteach.augment import Augmenter
from sslteach.data import balanced_split
from sslteach.methods import get_method
from sslteach.methods.noisy_student import (NoisyStudent, NoisyStudentConfig, noisy_student_loss, round_boundaries,
                                            teacher_targets)
from sslteach.methods.pseudo_label import (PseudoLabel, PseudoLabelConfig, alpha_schedule, output_loss,
                                           pseudo_label_loss)
from sslteach.models import make_model
from sslteach.train import Batch, Context, train


CPU = torch.device("cpu")


def _ce(logits: list[float], target: int) -> float:
    """Cross-entropy written out by hand: -log softmax(logits)[target]."""
    return -(logits[target] - math.log(sum(math.exp(v) for v in logits)))


# ============================================================================ Pseudo-Label: alpha(t), Eq. (16)
@pytest.mark.parametrize("t, want", [
    (0, 0.0), (50, 0.0),        # before T1: nothing
    (100, 0.0),                 # at T1: the ramp starts from 0
    (350, 1.5),                 # midpoint: alpha_f / 2
    (599, 3.0 * 499 / 500),     # just before T2
    (600, 3.0),                 # at T2: alpha_f
    (800, 3.0), (10_000, 3.0),  # after: stays at alpha_f
])
def test_alpha_schedule_with_the_papers_epochs(t, want):
    # Lee 2013: alpha_f = 3, T1 = 100, T2 = 600 epochs
    assert alpha_schedule(t, alpha_f=3.0, t1=100, t2=600) == pytest.approx(want, abs=1e-12)


def test_alpha_schedule_in_fractions_of_training_as_the_method_uses_it():
    assert alpha_schedule(0.05, 3.0, 0.1, 0.6) == 0.0
    assert alpha_schedule(0.1, 3.0, 0.1, 0.6) == 0.0
    assert alpha_schedule(0.35, 3.0, 0.1, 0.6) == pytest.approx(1.5)
    assert alpha_schedule(0.6, 3.0, 0.1, 0.6) == 3.0
    assert alpha_schedule(1.0, 3.0, 0.1, 0.6) == 3.0
    # t1 == t2: a step from 0 to alpha_f
    assert alpha_schedule(0.49, 2.0, 0.5, 0.5) == 0.0 and alpha_schedule(0.5, 2.0, 0.5, 0.5) == 2.0


def test_method_weight_follows_the_schedule():
    m = PseudoLabel(alpha_f=3.0, t1=0.2, t2=0.6)
    ctx = Context(Augmenter("image"), 0, 100, CPU, 10, 100)
    got = []
    for step in (0, 20, 40, 60, 99):
        ctx.step = step
        got.append(m.weight(ctx))
    assert got == pytest.approx([0.0, 0.0, 1.5, 3.0, 3.0])


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(t1=0.7, t2=0.3), r"t1 must be <= t2"),
    (dict(alpha_f=-1.0), r"alpha_f must be in \[0\.0, inf\]"),
    (dict(progress=-0.1), r"progress must be in"),
])
def test_alpha_schedule_bad_arguments(kwargs, pattern):
    args = dict(progress=0.5, alpha_f=3.0, t1=0.1, t2=0.6) | kwargs
    with pytest.raises(ValueError, match=pattern):
        alpha_schedule(**args)


# ============================================================================ Pseudo-Label: the loss, Eq. (14)-(15)
def test_hand_computed_pseudo_label_loss():
    # 3 unlabeled images, 2 classes. softmax: [0.881, 0.119] -> 0; [0.475, 0.525] -> 1; [0.047, 0.953] -> 1
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.1], [0.0, 3.0]])
    loss, mask, pseudo = pseudo_label_loss(logits, tau=0.0)
    assert pseudo.tolist() == [0, 1, 1] and mask.tolist() == [1.0, 1.0, 1.0]
    expected = (_ce([2.0, 0.0], 0) + _ce([0.0, 0.1], 1) + _ce([0.0, 3.0], 1)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx((0.126928 + 0.644397 + 0.048587) / 3, abs=1e-5)  # 0.273304, as in the notebook


def test_confidence_filter_keeps_only_confident_images_and_counts_the_rest_as_zeros():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.1], [0.0, 3.0]])
    loss, mask, _ = pseudo_label_loss(logits, tau=0.8)
    assert mask.tolist() == [1.0, 0.0, 1.0]
    assert loss.item() == pytest.approx((0.126928 + 0.048587) / 3, abs=1e-5)  # divided by all 3 images


def test_confidence_exactly_at_tau_passes_and_nothing_passes_at_tau_one():
    _, mask, _ = pseudo_label_loss(torch.zeros(1, 2), tau=0.5)  # confidence exactly 0.5
    assert mask.tolist() == [1.0]
    logits = torch.randn(8, 10, requires_grad=True)
    loss, mask, _ = pseudo_label_loss(logits, tau=1.0)
    assert mask.sum().item() == 0 and loss.item() == 0.0
    loss.backward()
    assert torch.count_nonzero(logits.grad) == 0


def test_stop_gradient_the_target_is_a_constant():
    """d L_u / d logits = (softmax(logits) - onehot(argmax)) / n': exactly the gradient of a cross-entropy against a
    fixed label. If the target were not detached (e.g. a soft target softmax(logits)), the gradient would differ."""
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.5, 0.0]], requires_grad=True)
    loss, _, pseudo = pseudo_label_loss(logits)
    loss.backward()
    p = torch.softmax(logits.detach(), 1)
    want = (p - torch.nn.functional.one_hot(torch.tensor([0, 1]), 3)) / 2
    assert pseudo.tolist() == [0, 1]
    assert torch.allclose(logits.grad, want, atol=1e-6)
    assert not pseudo.requires_grad
    # the gradient pushes each image towards its own pseudo-label (entropy goes down)
    assert logits.grad[0, 0] < 0 and logits.grad[1, 1] < 0


def test_sigmoid_output_is_the_papers_binary_cross_entropy():
    # sigmoid units, target one-hot [1, 0]: -log s(2) - log(1 - s(0)) = softplus(-2) + softplus(0)
    got = output_loss(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), "sigmoid")
    assert got.item() == pytest.approx(0.126928 + 0.693147, abs=1e-5)
    loss, mask, pseudo = pseudo_label_loss(torch.tensor([[2.0, 0.0]]), tau=0.85, output="sigmoid")
    assert pseudo.tolist() == [0] and mask.tolist() == [1.0]  # max sigmoid = 0.881 >= 0.85
    assert loss.item() == pytest.approx(0.820075, abs=1e-5)


def test_low_precision_logits_give_a_float32_loss():
    loss, _, _ = pseudo_label_loss(torch.tensor([[4.0, 0.0]], dtype=torch.bfloat16))
    assert loss.dtype == torch.float32


from steptools import CountingAug, batch_and_ctx  # noqa: E402
from steptools import RecordingNet as _Net  # noqa: E402


def test_pseudo_label_step_total_and_logs(digits):
    torch.manual_seed(0)
    batch, ctx = batch_and_ctx(digits, step=5, total=10)  # progress 0.5: alpha = 3 * (0.5 - 0.1) / 0.5 = 2.4
    loss, logs = PseudoLabel(mu=3).step(_Net(), batch, ctx)
    assert logs["weight_u"] == pytest.approx(2.4)
    assert loss.item() == pytest.approx(logs["loss_x"].item() + 2.4 * logs["loss_u"].item(), rel=1e-6)
    assert set(logs) >= {"loss_x", "loss_u", "mask_rate", "pseudo_acc", "weight_u"}
    batch, ctx = batch_and_ctx(digits, step=0)  # before T1: only the labeled loss
    loss, logs = PseudoLabel(mu=3).step(_Net(), batch, ctx)
    assert logs["weight_u"] == 0.0 and loss.item() == pytest.approx(logs["loss_x"].item())


def test_pseudo_label_step_uses_one_weak_view_of_each_image(digits):
    aug = CountingAug()
    batch, ctx = batch_and_ctx(digits, aug=aug)
    PseudoLabel(mu=3).step(_Net(), batch, ctx)
    assert aug.calls == {"weak": 2, "strong": 0}


def test_defaults_are_the_papers():
    cfg = PseudoLabelConfig()
    assert (cfg.alpha_f, cfg.tau, cfg.mu) == (3.0, 0.0, 8)  # alpha_f = 3, no threshold, 256 / 32 unlabeled
    assert cfg.t1 < cfg.t2 and cfg.t1 / cfg.t2 == pytest.approx(100 / 600)  # T1 : T2 as in the paper
    assert PseudoLabel().unlabeled_ratio() == 8


@pytest.mark.parametrize("option, value, pattern", [
    ("tau", 1.5, r"tau must be in \[0(\.0)?, 1(\.0)?\]"),
    ("tau", float("nan"), r"tau must be in"),
    ("alpha_f", -0.5, r"alpha_f must be in \[0(\.0)?, 10(\.0)?\]"),
    ("t1", 1.2, r"t1 must be in \[0(\.0)?, 1(\.0)?\]"),
    ("mu", 0, r"mu must be in \[1, 16\]"),
    ("output", "tanh", r"unknown output 'tanh'; valid values: softmax, sigmoid"),
    ("threshold", 0.9, r"unknown option.*alpha_f, t1, t2, tau, mu, output"),
])
def test_pseudo_label_bad_arguments_raise_clear_errors(option, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        PseudoLabel(**{option: value})


def test_ramp_that_ends_before_it_starts_is_rejected():
    with pytest.raises(ValueError, match=r"t1 must be <= t2.*t1=0.8, t2=0.2"):
        get_method("pseudo_label", t1=0.8, t2=0.2)


def test_pure_loss_rejects_bad_tau():
    with pytest.raises(ValueError, match=r"tau.*\[0, 1\]"):
        pseudo_label_loss(torch.zeros(2, 3), tau=-0.1)


# ============================================================================ Noisy Student: pure functions
def test_round_boundaries_split_the_budget():
    assert round_boundaries(1000, 3) == [250, 500, 750, 1000]
    assert round_boundaries(1003, 3) == [250, 500, 750, 1003]  # the last student takes the remainder
    assert round_boundaries(10, 1) == [5, 10]
    with pytest.raises(ValueError, match=r"3 rounds need at least 4 steps"):
        round_boundaries(3, 3)


def test_hand_computed_teacher_targets_soft_hard_and_filter():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    soft, keep = teacher_targets(logits, soft=True, tau=0.6)
    assert torch.allclose(soft, torch.tensor([[0.880797, 0.119203], [0.5, 0.5]]), atol=1e-6)
    assert keep.tolist() == [1.0, 0.0]  # 0.88 >= 0.6 > 0.5
    hard, keep = teacher_targets(logits, soft=False, tau=0.5)
    assert hard.tolist() == [[1.0, 0.0], [1.0, 0.0]] and keep.tolist() == [1.0, 1.0]


def test_hand_computed_student_loss():
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([[0.880797, 0.119203], [0.5, 0.5]])
    # log_softmax([1, 0]) = [-0.313262, -1.313262]
    row0 = 0.880797 * 0.313262 + 0.119203 * 1.313262  # 0.432465
    row1 = 0.5 * 1.313262 + 0.5 * 0.313262  # 0.813262
    assert noisy_student_loss(student, targets).item() == pytest.approx((row0 + row1) / 2, abs=1e-5)
    # filtered images leave the mean: it is over the kept ones
    assert noisy_student_loss(student, targets, torch.tensor([1.0, 0.0])).item() == pytest.approx(row0, abs=1e-5)
    assert noisy_student_loss(student, targets, torch.zeros(2)).item() == 0.0


def test_student_loss_gradient_goes_to_the_student_only():
    student = torch.tensor([[1.0, 0.0, -1.0]], requires_grad=True)
    teacher_logits = torch.tensor([[0.0, 2.0, 0.0]], requires_grad=True)
    targets, keep = teacher_targets(teacher_logits)
    noisy_student_loss(student, targets, keep).backward()
    assert teacher_logits.grad is None and not targets.requires_grad
    want = torch.softmax(student.detach(), 1) - torch.softmax(teacher_logits.detach(), 1)
    assert torch.allclose(student.grad, want, atol=1e-6)


def test_student_loss_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"must both be \[N, C\]"):
        noisy_student_loss(torch.zeros(2, 3), torch.zeros(2, 4))


# ============================================================================ Noisy Student: the rounds
def _setup_noisy_student(digits, total=4, **options):
    split = balanced_split(digits, 2, seed=0)
    torch.manual_seed(0)
    model = make_model("auto", digits.input_shape, 10)
    method = NoisyStudent(**options)
    ctx = Context(Augmenter("image"), 0, total, CPU, 10, len(split.y_ulb))
    method.setup(model, split, ctx)
    return split, model, method, ctx


def test_round_boundary_freezes_the_teacher_relabels_and_restarts_the_student(digits):
    split, model, method, ctx = _setup_noisy_student(digits, total=4, rounds=1)  # boundaries [2, 4]
    init = {k: v.clone() for k, v in model.state_dict().items()}
    assert method.round == 0 and method.teacher is None and set(method.eval_models()) == {"student"}
    with torch.no_grad():  # pretend the first two steps trained the teacher
        for p in model.parameters():
            p.add_(0.1)
    ctx.step = 0
    method.after_step(model, ctx)
    assert method.round == 0 and method.teacher is None
    ctx.step = 1  # the second step ends round 0
    method.after_step(model, ctx)
    assert method.round == 1
    teacher = method.teacher
    assert teacher is not model and not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert any(not torch.equal(p, init[k]) for k, p in teacher.state_dict().items() if k in init)  # trained
    for k, v in model.state_dict().items():  # a new student from the initial weights
        assert torch.equal(v, init[k]), k
    # the teacher's labels: its softmax on the *clean* unlabeled images, in eval mode (no noise)
    with torch.no_grad():
        want = torch.softmax(teacher(split.x_ulb)[0], 1)
    assert method.targets.shape == (len(split.y_ulb), 10)
    assert torch.allclose(method.targets, want, atol=1e-6)
    assert torch.equal(method.keep, (want.max(1).values >= 0.3).float())
    assert model.dropout.p == 0.5  # the student is noised with dropout
    assert [r["round"] for r in method.rounds] == [0] and method.rounds[0]["steps"] == 2
    assert set(method.eval_models()) == {"student", "teacher"}


def test_warm_start_student_begins_from_the_teacher(digits):
    _, model, method, ctx = _setup_noisy_student(digits, total=4, rounds=1, from_scratch=False, noise=False)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    ctx.step = 1
    method.after_step(model, ctx)
    for k, v in model.state_dict().items():
        assert torch.equal(v, method.teacher.state_dict()[k]), k
    assert model.dropout.p == 0.0  # no noise: no dropout


def test_student_step_trains_the_student_and_never_the_teacher(digits):
    split, model, method, ctx = _setup_noisy_student(digits, total=4, rounds=1, lambda_u=2.0)
    ctx.step = 1
    method.after_step(model, ctx)
    i_ulb = torch.arange(12)
    batch = Batch(split.x_lb[:4], split.y_lb[:4], split.x_ulb[i_ulb], split.y_ulb[i_ulb], idx_ulb=i_ulb)
    ctx.step = 2
    loss, logs = method.step(model, batch, ctx)
    assert loss.item() == pytest.approx(logs["loss_x"].item() + 2.0 * logs["loss_u"].item(), rel=1e-5)
    assert logs["round"] == 1 and 0 <= logs["mask_rate"].item() <= 1
    loss.backward()
    assert all(p.grad is None for p in method.teacher.parameters())
    assert sum(p.grad.abs().sum().item() for p in model.parameters() if p.grad is not None) > 0


@pytest.mark.parametrize("noise", [True, False])
def test_noise_toggle_changes_what_the_student_sees(digits, noise):
    split = balanced_split(digits, 2, seed=0)
    net = _Net()
    method = NoisyStudent(rounds=1, noise=noise)
    aug = CountingAug()
    ctx = Context(aug, 0, 4, CPU, 10, len(split.y_ulb))
    method.setup(net, split, ctx)
    ctx.step = 1
    method.after_step(net, ctx)
    aug.calls = {"weak": 0, "strong": 0}
    i_ulb = torch.arange(12)
    batch = Batch(split.x_lb[:4], split.y_lb[:4], split.x_ulb[i_ulb], split.y_ulb[i_ulb], idx_ulb=i_ulb)
    method.step(net, batch, ctx)
    if noise:
        assert aug.calls == {"weak": 2, "strong": 2}  # strong = RandAugment on top of a weak view, both halves
        assert net.dropout.p == 0.5
    else:
        assert aug.calls == {"weak": 1, "strong": 0}  # labeled: weak, as the baseline
        assert torch.equal(net.inputs[4:], split.x_ulb[i_ulb])  # unlabeled: the clean images the teacher saw
        assert net.dropout.p == 0.0


def test_a_whole_run_reports_every_round(digits):
    # tau = 0: keep every pseudo-label (teachers trained for 2 steps are not confident)
    r = train("noisy_student", "digits", labels_per_class=2, steps=8, rounds=3, eval_every=2, tau=0.0,
              progress=False)
    rounds = r.extra["rounds"]
    assert [x["round"] for x in rounds] == [0, 1, 2, 3]
    assert [x["role"] for x in rounds] == ["teacher (labeled only)"] + ["student"] * 3
    assert [x["steps"] for x in rounds] == [2, 2, 2, 2]
    assert all(0 <= x["test_acc"] <= 1 for x in rounds)
    assert all(x["kept"] == 1 and 0 <= x["pseudo_acc"] <= 1 for x in rounds[1:])
    assert r.test_accuracy == rounds[-1]["test_acc"]  # the headline is the last student
    assert r.extra["report"] == "test_acc_student"
    assert r.history.last("test_acc_teacher") is not None
    assert r.history.series("round")[1] == [0, 1, 2, 3]  # the round of the steps since the last evaluation
    json.dumps(r.to_dict(), default=str)  # JSON-ready


def test_a_run_stopped_early_reports_its_unfinished_round(digits):
    r = train("noisy_student", "digits", labels_per_class=2, steps=8, rounds=1, progress=False,
              callbacks={"on_step": lambda trainer, logs: "stop" if trainer.step == 6 else None})
    assert r.interrupted
    assert [x["round"] for x in r.extra["rounds"]] == [0, 1] and r.extra["rounds"][1]["unfinished"]


def test_noisy_student_defaults():
    cfg = NoisyStudentConfig()
    assert (cfg.noise, cfg.soft, cfg.from_scratch) == (True, True, True)
    assert (cfg.student_dropout, cfg.tau, cfg.lambda_u) == (0.5, 0.3, 1.0)
    assert NoisyStudent().unlabeled_ratio() == cfg.mu


@pytest.mark.parametrize("option, value, pattern", [
    ("rounds", 0, r"rounds must be in \[1, 6\]"),
    ("student_dropout", 1.0, r"student_dropout must be in \[0(\.0)?, 0\.9\]"),
    ("tau", 2.0, r"tau must be in \[0(\.0)?, 1(\.0)?\]"),
    ("noise", "yes", r"noise must be True or False"),
    ("mu", 0, r"mu must be in \[1, 16\]"),
    ("alpha_f", 3.0, r"unknown option.*rounds, noise"),
])
def test_noisy_student_bad_arguments_raise_clear_errors(option, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        NoisyStudent(**{option: value})


def test_too_few_steps_for_the_rounds_is_a_clear_error():
    with pytest.raises(ValueError, match=r"3 rounds need at least 4 steps"):
        train("noisy_student", "digits", steps=3, rounds=3, progress=False)


# ============================================================================ command line
def test_command_line_trains_both(capsys, tmp_path):
    from sslteach.cli import main

    out = tmp_path / "pl.json"
    assert main(["train", "pseudo_label", "--alpha-f", "3", "--t1", "0.1", "--t2", "0.6", "--tau", "0.5",
                 "--output", "sigmoid", "--steps", "4", "--eval-every", "2", "--no-progress",
                 "--out", str(out)]) == 0
    assert "pseudo_label on digits (2 labels/class, seed 0): test accuracy" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["method_config"] == {"alpha_f": 3.0, "t1": 0.1, "t2": 0.6, "tau": 0.5, "mu": 8,
                                     "output": "sigmoid"}
    out = tmp_path / "ns.json"
    assert main(["train", "noisy_student", "--rounds", "2", "--noise", "false", "--soft", "false",
                 "--steps", "6", "--no-progress", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["method_config"]["noise"] is False and len(data["extra"]["rounds"]) == 3


def test_command_line_rejects_a_bad_ramp(capsys):
    from sslteach.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "pseudo_label", "--t1", "0.9", "--t2", "0.1", "--steps", "2", "--no-progress"])
    assert e.value.code == 2
    assert "t1 must be <= t2" in capsys.readouterr().err


# ============================================================================ the claims
# ----------------------------------------------------------------------------- the claims (claim scale, 3 seeds)
# ============================================================================ notebook 01
@pytest.mark.notebook
def test_notebook_01_results(notebook_results):
    res = notebook_results("01_pseudo_label")
    chance = 1 / res["num_classes"]
    for key in ("supervised_accuracy", "pseudo_label_accuracy", "noisy_student_accuracy",
                "noisy_student_no_noise_accuracy"):
        assert math.isfinite(res[key]) and chance < res[key] <= 1, key
    for key in ("moons_supervised_accuracy", "moons_pseudo_label_accuracy"):
        assert 0.5 < res[key] <= 1, key  # two classes
    sweep = res["threshold_sweep"]
    assert sweep["pass_rate"] == sorted(sweep["pass_rate"], reverse=True)  # a higher threshold never keeps more
    assert all(0 <= v <= 1 for v in sweep["pass_rate"])
    rounds = res["noisy_student_rounds"]
    assert len(rounds["noise"]) == len(rounds["no_noise"]) == res["rounds"] + 1
    assert rounds["noise"][0] == rounds["no_noise"][0]  # the same first teacher
    for key in ("supervised_seconds", "pseudo_label_seconds", "noisy_student_seconds", "notebook_seconds"):
        assert math.isfinite(res[key]) and res[key] > 0, key
