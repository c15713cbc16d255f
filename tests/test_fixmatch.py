"""FixMatch (Sohn et al., NeurIPS 2020): the unlabeled loss against hand-computed values, the mask, the 1/(mu B)
normalisation, the stop-gradient on the weak-view target, the strong augmentation, config validation, the command
line, the claim (FixMatch beats the supervised baseline on digits with 2 labels per class) and notebook 03."""
from __future__ import annotations

import math

import pytest
import torch

from sslteach.augment import Augmenter
from sslteach.methods import get_method
from sslteach.methods.fixmatch import FixMatch, FixMatchConfig, distribution_alignment, fixmatch_unlabeled_loss



def _ce(logits: list[float], target: int) -> float:
    """Cross-entropy written out by hand: -log softmax(logits)[target]."""
    return -(logits[target] - math.log(sum(math.exp(v) for v in logits)))


# ----------------------------------------------------------------------------- the loss, by hand
def test_hand_computed_loss_on_tiny_batch():
    # 3 unlabeled images, 2 classes, tau = 0.8.
    # weak-view softmax: [0.881, 0.119] (passes, label 0), [0.475, 0.525] (fails), [0.047, 0.953] (passes, label 1)
    logits_w = torch.tensor([[2.0, 0.0], [0.0, 0.1], [0.0, 3.0]])
    logits_s = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.5, 1.0]])
    loss, mask, pseudo = fixmatch_unlabeled_loss(logits_w, logits_s, tau=0.8)
    assert mask.tolist() == [1.0, 0.0, 1.0]
    assert pseudo.tolist() == [0, 1, 1]
    expected = (_ce([1.0, 0.0], 0) + 0.0 + _ce([0.5, 1.0], 1)) / 3  # the failing image counts as a zero
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx((0.313262 + 0.474077) / 3, abs=1e-5)  # the numbers the notebook shows


def test_confidence_exactly_at_tau_passes():
    # two equal logits over two classes: confidence exactly 0.5; the mask is 1[max q >= tau]
    loss, mask, _ = fixmatch_unlabeled_loss(torch.zeros(1, 2), torch.tensor([[0.0, 1.0]]), tau=0.5)
    assert mask.tolist() == [1.0]
    assert loss.item() == pytest.approx(_ce([0.0, 1.0], 0), abs=1e-6)


def test_mask_all_zero_and_loss_exactly_zero_when_nothing_is_confident():
    torch.manual_seed(0)
    logits_w = 0.1 * torch.randn(16, 10)  # nearly uniform: max softmax about 0.1-0.15, far below 0.95
    logits_s = (5 * torch.randn(16, 10)).requires_grad_()
    loss, mask, _ = fixmatch_unlabeled_loss(logits_w, logits_s, tau=0.95)
    assert mask.sum().item() == 0
    assert loss.item() == 0.0  # exactly zero, not just small
    loss.backward()
    assert torch.count_nonzero(logits_s.grad) == 0  # and it pushes nothing


def test_tau_zero_keeps_every_image():
    torch.manual_seed(1)
    _, mask, _ = fixmatch_unlabeled_loss(torch.randn(8, 10), torch.randn(8, 10), tau=0.0)
    assert mask.tolist() == [1.0] * 8


def test_loss_is_divided_by_mu_B_not_by_the_number_passing():
    n = 8  # mu * B
    logits_w = torch.zeros(n, 4)
    logits_w[0, 2] = 10.0  # only image 0 is confident (p about 0.9999)
    logits_s = torch.zeros(n, 4)
    loss, mask, pseudo = fixmatch_unlabeled_loss(logits_w, logits_s, tau=0.95)
    assert mask.sum().item() == 1 and pseudo[0].item() == 2
    ce_one = math.log(4)  # uniform strong logits: H = log C
    assert loss.item() == pytest.approx(ce_one / n, abs=1e-6)  # averaged over all mu*B images
    assert loss.item() != pytest.approx(ce_one, abs=1e-3)  # not over the one that passed


def test_no_gradient_through_the_weak_view_target():
    torch.manual_seed(2)
    logits_w = torch.randn(6, 5, requires_grad=True)
    logits_s = torch.randn(6, 5, requires_grad=True)
    loss, _, _ = fixmatch_unlabeled_loss(logits_w, logits_s, tau=0.0)
    loss.backward()
    assert logits_w.grad is None  # the target q is a constant
    assert logits_s.grad is not None and logits_s.grad.abs().sum() > 0  # the strong view learns


def test_gradient_reaches_the_strong_view_with_the_expected_value():
    # d l_u / d logits_s = mask * (softmax(logits_s) - onehot(pseudo)) / (mu B)
    logits_w = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    logits_s = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], requires_grad=True)
    loss, mask, _ = fixmatch_unlabeled_loss(logits_w, logits_s, tau=0.9)
    loss.backward()
    p = torch.softmax(logits_s.detach(), 1)
    want = torch.stack([(p[0] - torch.tensor([1.0, 0.0, 0.0])) / 2, torch.zeros(3)])
    assert mask.tolist() == [1.0, 0.0]
    assert torch.allclose(logits_s.grad, want, atol=1e-6)


def test_low_precision_logits_give_a_float32_loss():
    lw = torch.tensor([[4.0, 0.0]], dtype=torch.bfloat16)
    ls = torch.tensor([[1.0, 0.0]], dtype=torch.bfloat16)
    loss, _, _ = fixmatch_unlabeled_loss(lw, ls, tau=0.9)
    assert loss.dtype == torch.float32


# ----------------------------------------------------------------------------- the method's step
from steptools import CountingAug, RecordingNet, batch_and_ctx  # noqa: E402


def test_step_total_is_l_s_plus_lambda_u_l_u(digits):
    torch.manual_seed(0)
    net = RecordingNet()
    method = FixMatch(tau=0.0, lambda_u=2.5, mu=3)
    batch, ctx = batch_and_ctx(digits)
    loss, logs = method.step(net, batch, ctx)
    assert loss.item() == pytest.approx(logs["loss_x"].item() + 2.5 * logs["loss_u"].item(), rel=1e-6)
    assert logs["mask_rate"].item() == 1.0  # tau = 0: every image passes
    assert set(logs) >= {"loss_x", "loss_u", "mask_rate", "pseudo_acc"}


def test_step_sends_no_gradient_into_the_weak_unlabeled_logits(digits):
    """One forward pass over [weak labeled | weak unlabeled | strong unlabeled]: the weak unlabeled rows only make
    targets, so their logits get exactly zero gradient; the labeled and strong rows get some."""
    torch.manual_seed(0)
    net = RecordingNet()
    b, mu = 4, 3
    batch, ctx = batch_and_ctx(digits, b, mu)
    loss, _ = FixMatch(tau=0.0, mu=mu).step(net, batch, ctx)
    loss.backward()
    g = net.logits.grad
    assert g.shape == (b + 2 * mu * b, 10)
    assert torch.count_nonzero(g[b: b + mu * b]) == 0
    assert g[:b].abs().sum() > 0 and g[b + mu * b:].abs().sum() > 0


def test_strong_false_uses_weak_views_only(digits):
    aug = CountingAug()
    batch, ctx = batch_and_ctx(digits, aug=aug)
    FixMatch(strong=False, mu=3).step(RecordingNet(), batch, ctx)
    assert aug.calls == {"weak": 3, "strong": 0}
    aug.calls = {"weak": 0, "strong": 0}
    FixMatch(mu=3).step(RecordingNet(), batch, ctx)
    assert aug.calls["strong"] == 1


def test_defaults_are_the_papers():
    cfg = FixMatchConfig()
    assert (cfg.tau, cfg.lambda_u, cfg.mu, cfg.strong) == (0.95, 1.0, 7, True)
    assert cfg.dist_align is False  # ReMixMatch's distribution alignment is an option, off as in FixMatch
    assert FixMatch().unlabeled_ratio() == 7


# ----------------------------------------------------------------------------- distribution alignment (option)
def test_distribution_alignment_by_hand():
    # q * p(y) / p_model(y), renormalised; p(y) uniform (1/3 cancels in the normalisation)
    q = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    p_model = torch.tensor([0.5, 0.3, 0.2])
    out = distribution_alignment(q, p_model)
    row1 = [0.6 / 0.5, 0.3 / 0.3, 0.1 / 0.2]
    row2 = [0.2 / 0.5, 0.7 / 0.3, 0.1 / 0.2]
    expected = [[v / sum(row1) for v in row1], [v / sum(row2) for v in row2]]
    assert torch.allclose(out, torch.tensor(expected), atol=1e-6)
    assert torch.allclose(distribution_alignment(q, torch.full((3,), 1 / 3)), q)  # a calibrated model: unchanged
    target = torch.tensor([0.2, 0.2, 0.6])  # a non-uniform target distribution
    row = [0.6 * 0.2 / 0.5, 0.3 * 0.2 / 0.3, 0.1 * 0.6 / 0.2]
    assert distribution_alignment(q[:1], p_model, target)[0].tolist() == pytest.approx(
        [v / sum(row) for v in row], abs=1e-6)


def test_distribution_alignment_step_thresholds_the_aligned_weak_prediction(digits):
    """Bugs guarded: the option ignored (pseudo-labels from the raw prediction), the running mean fed by the
    strong view, or not updated. Expected values are computed from the logits the network produced."""
    torch.manual_seed(0)
    net = RecordingNet()
    b, mu = 4, 3
    batch, ctx = batch_and_ctx(digits, b, mu)
    method = FixMatch(tau=0.0, mu=mu, dist_align=True, da_momentum=0.5)
    method.setup(net, None, ctx)
    p0 = torch.tensor([0.3, 0.3, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05])
    method.p_model = p0.clone()
    _, logs = method.step(net, batch, ctx)
    logits = net.logits.detach()
    weak, strong = logits[b: b + mu * b], logits[b + mu * b:]
    q = torch.softmax(weak, 1)
    p1 = 0.5 * p0 + 0.5 * q.mean(0)
    assert torch.allclose(method.p_model, p1, atol=1e-6)
    aligned = distribution_alignment(q, p1)
    want, _, pseudo = fixmatch_unlabeled_loss(aligned.log(), strong, 0.0)
    raw, _, raw_pseudo = fixmatch_unlabeled_loss(weak, strong, 0.0)
    assert not torch.equal(pseudo, raw_pseudo), "the test needs a case where alignment changes a pseudo-label"
    assert logs["loss_u"].item() == pytest.approx(want.item(), abs=1e-6)
    assert abs(want.item() - raw.item()) > 1e-3


def test_distribution_alignment_off_leaves_the_step_unchanged(digits):
    torch.manual_seed(0)
    net = RecordingNet()
    batch, ctx = batch_and_ctx(digits, 4, 3)
    method = FixMatch(tau=0.0, mu=3)
    method.setup(net, None, ctx)
    _, logs = method.step(net, batch, ctx)
    logits = net.logits.detach()
    want, _, _ = fixmatch_unlabeled_loss(logits[4:16], logits[16:], 0.0)
    assert logs["loss_u"].item() == pytest.approx(want.item(), abs=1e-6)
    assert torch.equal(method.p_model, torch.full((10,), 0.1))  # not touched when the option is off


# ----------------------------------------------------------------------------- the strong augmentation
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_strong_view_is_random_per_image_and_keeps_shape_and_range(shape):
    torch.manual_seed(0)
    img = torch.rand(*shape)
    x = img.expand(16, *shape).clone()  # 16 copies of the same image
    aug = Augmenter("image", flip=shape[0] == 3)
    for view in (aug.strong(x), aug.weak(x)):
        assert view.shape == x.shape and view.dtype == x.dtype
        assert view.min() >= 0 and view.max() <= 1
    s = aug.strong(x)
    distinct = {tuple(v.flatten().tolist()) for v in s}
    assert len(distinct) >= 15  # each copy gets its own draw
    assert not torch.equal(s[0], s[1])


def test_strong_views_repeat_with_the_seed(digits):
    aug = Augmenter("image")
    torch.manual_seed(3)
    a = aug.strong(digits.x_train[:8])
    torch.manual_seed(3)
    assert torch.equal(a, aug.strong(digits.x_train[:8]))


# ----------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_bad_tau_raises_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"tau must be in \[0(\.0)?, 1(\.0)?\]"):
        FixMatch(tau=bad)
    with pytest.raises(ValueError, match=r"tau.*\[0(\.0)?, 1(\.0)?\]"):
        get_method("fixmatch", tau=bad)


def test_bad_tau_in_the_pure_loss_raises():
    with pytest.raises(ValueError, match=r"tau.*\[0, 1\]"):
        fixmatch_unlabeled_loss(torch.zeros(2, 3), torch.zeros(2, 3), tau=1.5)


@pytest.mark.parametrize("option, value, pattern", [
    ("mu", 0, r"mu must be in \[1, 16\]"),
    ("mu", 2.5, r"mu must be an integer"),
    ("lambda_u", -1.0, r"lambda_u must be in \[0(\.0)?, 10(\.0)?\]"),
    ("strong", "yes", r"strong must be True or False"),
    ("threshold", 0.9, r"unknown option.*tau, lambda_u, mu, strong"),
])
def test_other_bad_arguments_raise_clear_errors(option, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        FixMatch(**{option: value})


def test_command_line_trains_fixmatch(capsys, tmp_path):
    from sslteach.cli import main

    out = tmp_path / "run.json"
    rc = main(["train", "fixmatch", "--tau", "0.95", "--lambda-u", "1", "--mu", "7", "--steps", "6",
               "--eval-every", "3", "--no-progress", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "fixmatch on digits (2 labels/class, seed 0): test accuracy" in printed
    import json

    data = json.loads(out.read_text())
    assert data["method_config"] == {"tau": 0.95, "lambda_u": 1.0, "mu": 7, "strong": True, "dist_align": False,
                                     "da_momentum": 0.999}
    assert any("mask_rate" in r for r in data["history"])


def test_command_line_rejects_bad_tau(capsys):
    from sslteach.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "fixmatch", "--tau", "1.5", "--steps", "2", "--no-progress"])
    assert e.value.code == 2
    assert "tau must be in [0.0, 1.0]" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the claim and the notebook
# ----------------------------------------------------------------------------- the claims (claim scale, 3 seeds)
@pytest.mark.notebook
def test_notebook_03_results(notebook_results):
    res = notebook_results("03_fixmatch")
    chance = 1 / res["num_classes"]
    for key in ("supervised_accuracy", "fixmatch_accuracy", "tau0_accuracy", "weak_weak_accuracy"):
        assert math.isfinite(res[key]) and chance < res[key] <= 1, key
    for key in ("fixmatch_seconds", "supervised_seconds", "notebook_seconds"):
        assert math.isfinite(res[key]) and res[key] > 0, key
    sweep = res["threshold_sweep"]
    rates = sweep["mask_rate"]
    assert all(0 <= r <= 1 for r in rates)
    assert rates == sorted(rates, reverse=True)  # a higher threshold never keeps more images
    few = res["one_label_per_class"]
    for key in ("supervised", "fixmatch", "tau0"):
        assert len(few[key]) == len(few["seeds"]) >= 1
        assert all(math.isfinite(v) and 0 <= v <= 1 for v in few[key]), key
    assert res["ablation"]["seeds"] and len(res["ablation"]["weak_weak"]) == len(res["ablation"]["seeds"])
    assert 0 <= res["fixmatch_final_mask_rate"] <= 1
