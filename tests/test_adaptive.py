"""FlexMatch, FreeMatch, SoftMatch (issue 27, notebook 11): each threshold / weight function against hand-computed
values, and step tests that a plausible bug cannot pass.

The step tests drive the real ``step`` on :class:`steptools.RecordingNet` with :class:`steptools.TaggedAug` (every
view recognisable) and :func:`steptools.shuffled_batch_and_ctx` (an image's position in the batch is not its index
in the unlabeled set); the method's state is set by hand to values where the right code and the buggy one disagree
(thresholds strictly between the confidences, momenta far from 1, temperatures and n_sigma other than the default),
and the expected values are rebuilt from what the network received, without the package's functions. Each test's
docstring names the bugs it guards against; every one was checked by breaking the code on purpose.
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import sslteach  # noqa: E402
from sslteach import viz_adaptive  # noqa: E402
from sslteach.methods.adaptive import (FlexMatch, FreeMatch, SoftMatch, flexmatch_learning_effect,  # noqa: E402
                                       flexmatch_mapping, flexmatch_thresholds, flexmatch_update_marks,
                                       freematch_fairness_loss, freematch_thresholds, freematch_update,
                                       pseudo_targets, soft_unlabeled_loss, softmatch_update_moments,
                                       softmatch_weight, thresholded_unlabeled_loss, uniform_alignment,
                                       update_prediction_mean)
from sslteach.methods.fixmatch import fixmatch_unlabeled_loss  # noqa: E402

from steptools import (BNRecordingNet, RecordingNet, TaggedAug, bn_running_after,  # noqa: E402
                       shuffled_batch_and_ctx)


# ============================================================================================ pure functions
def test_flexmatch_learning_effect_counts_marks_per_class_with_the_warm_up():
    """sigma(c) counts the entries equal to c; with the warm-up the denominator is max(max_c sigma, N_unused)
    (Eq. 11), without it max_c sigma (Eq. 6). Here 4 unused, class 0: 3, class 1: 2, class 2: 1."""
    sel = torch.tensor([-1, -1, -1, 0, 0, 1, 2, -1, 1, 0])
    assert torch.allclose(flexmatch_learning_effect(sel, 3, warmup=True), torch.tensor([3 / 4, 2 / 4, 1 / 4]))
    assert torch.allclose(flexmatch_learning_effect(sel, 3, warmup=False), torch.tensor([1.0, 2 / 3, 1 / 3]))
    # a class never marked has beta = 0; a class with more marks than the unused pool: both forms agree
    sel = torch.tensor([0, 0, 0, 0, 0, 1, -1, -1, 1, 0])
    want = torch.tensor([1.0, 2 / 6, 0.0])
    assert torch.allclose(flexmatch_learning_effect(sel, 3, warmup=True), want)
    assert torch.allclose(flexmatch_learning_effect(sel, 3, warmup=False), want)


def test_flexmatch_learning_effect_is_zero_until_the_first_mark():
    """Every entry -1 (nothing has cleared tau yet): beta = 0 for every class in both forms, so T(c) = 0 and every
    image passes (the warm-up "learning boom")."""
    sel = torch.full((7,), -1)
    for warmup in (True, False):
        beta = flexmatch_learning_effect(sel, 4, warmup=warmup)
        assert torch.equal(beta, torch.zeros(4)) and torch.equal(flexmatch_thresholds(beta, 0.95), torch.zeros(4))


def test_flexmatch_mapping_and_thresholds_by_hand():
    """T(c) = M(beta(c)) tau with the convex M(x) = x / (2 - x) (and the ablation's linear / concave maps)."""
    beta = torch.tensor([0.0, 0.5, 0.75, 1.0])
    assert torch.allclose(flexmatch_mapping(beta, "convex"), torch.tensor([0.0, 1 / 3, 0.6, 1.0]))
    assert torch.allclose(flexmatch_mapping(beta, "linear"), beta)
    assert torch.allclose(flexmatch_mapping(beta, "concave"),
                          torch.tensor([0.0, math.log(1.5), math.log(1.75), math.log(2)]) / math.log(2))
    assert torch.allclose(flexmatch_thresholds(beta, 0.9), torch.tensor([0.0, 0.3, 0.54, 0.9]))
    with pytest.raises(ValueError, match="mapping"):
        flexmatch_mapping(beta, "quadratic")


def test_flexmatch_marks_use_the_fixed_tau_and_the_image_index():
    """The marks: an image whose weak confidence clears the *fixed* tau gets its prediction at its index in the
    unlabeled set; the others keep theirs (an earlier mark is never reset to -1)."""
    sel = torch.tensor([-1, 2, -1, 1, -1, 0])
    idx = torch.tensor([4, 1, 3])
    max_q = torch.tensor([0.96, 0.5, 0.95])
    pseudo = torch.tensor([0, 0, 2])
    out = flexmatch_update_marks(sel, idx, max_q, pseudo, 0.95)
    assert out.tolist() == [-1, 2, -1, 2, 0, 0]
    assert sel.tolist() == [-1, 2, -1, 1, -1, 0]  # a new tensor


def test_the_thresholded_loss_is_fixmatchs_loss_when_every_class_has_tau():
    g = torch.Generator().manual_seed(0)
    w, s = 3 * torch.randn(9, 4, generator=g), torch.randn(9, 4, generator=g)
    want = fixmatch_unlabeled_loss(w, s, 0.6)
    got = thresholded_unlabeled_loss(w, s, torch.full((4,), 0.6))
    for a, b in zip(got, want):
        assert torch.allclose(a.float(), b.float())
    # a per-class threshold: row b needs max q_b >= T(argmax q_b)
    t = torch.tensor([0.0, 0.99, 0.5, 0.7])
    q = torch.softmax(w, 1)
    _, mask, pseudo = thresholded_unlabeled_loss(w, s, t)
    assert torch.equal(mask, (q.max(1).values >= t[q.argmax(1)]).float()) and torch.equal(pseudo, q.argmax(1))


def test_soft_unlabeled_loss_and_pseudo_targets_by_hand():
    """Soft targets: -(1 / N) sum_b w_b sum_c target_bc log p_bc, with target = softmax(logits_w / T)."""
    logits_w = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    logits_s = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    t = pseudo_targets(logits_w, hard_label=False, temperature=0.5)
    e = math.exp(4.0)
    assert torch.allclose(t[0], torch.tensor([e / (e + 1), 1 / (e + 1)]))
    w = torch.tensor([1.0, 0.5])
    log_p0 = [math.log(0.5), math.log(0.5)]
    z = math.log(1 + math.exp(2))
    log_p1 = [-z, 2 - z]
    want = -(sum(t[0, c].item() * log_p0[c] for c in range(2)) + 0.5 * sum(t[1, c].item() * log_p1[c]
                                                                          for c in range(2))) / 2
    assert soft_unlabeled_loss(logits_s, t, w).item() == pytest.approx(want, rel=1e-5)
    assert torch.equal(pseudo_targets(logits_w), torch.tensor([0, 1]))
    # targets and weights are constants even when they arrive with a gradient; the strong logits get one
    lw, ls = logits_w.clone().requires_grad_(True), logits_s.clone().requires_grad_(True)
    target = torch.softmax(lw / 0.5, 1)
    weight = w.clone().requires_grad_(True)
    g_t, g_w, g_s = torch.autograd.grad(soft_unlabeled_loss(ls, target, weight), [lw, weight, ls], allow_unused=True)
    assert g_t is None and g_w is None and g_s.abs().sum() > 0
    assert not pseudo_targets(lw, hard_label=False).requires_grad


def test_freematch_update_by_hand():
    """One EMA step (lambda = 0.9) of tau_t (mean max confidence), p_t (mean prediction) and hist_t (histogram of
    the argmax), from 1/C; then tau_t(c) = tau_t p_t(c) / max p_t."""
    q = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
    c3 = torch.full((3,), 1 / 3)
    tau, p, h = freematch_update(torch.tensor(1 / 3), c3, c3, q, 0.9)
    assert tau.item() == pytest.approx(0.9 / 3 + 0.1 * 0.65)
    assert torch.allclose(p, torch.tensor([0.3 + 0.04, 0.3 + 0.04, 0.3 + 0.02]))
    assert torch.allclose(h, torch.tensor([0.3 + 0.05, 0.3 + 0.05, 0.3]))
    t = freematch_thresholds(tau, p)
    assert torch.allclose(t, tau * torch.tensor([1.0, 1.0, 0.32 / 0.34]))


def test_freematch_fairness_loss_by_hand_and_its_gradient():
    """L_f = sum_c A(c) log(B(c) + 1e-12), A = SumNorm(p_t / hist_t), B = SumNorm(mean P / hbar) over the kept
    rows' strong views; 1/0 -> 0; only the strong logits of kept rows get a gradient; no kept row: 0."""
    logits_s = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0])
    p_t, hist_t = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.4, 0.4, 0.2])
    P = torch.softmax(logits_s.detach()[[0, 1, 3]], 1)
    hbar = torch.tensor([2 / 3, 1 / 3, 0.0])  # argmax of the kept rows: 0, 1, 0
    a = torch.tensor([0.5 / 0.4, 0.3 / 0.4, 0.2 / 0.2])
    a = a / a.sum()
    mean_p = P.mean(0)
    b = torch.tensor([mean_p[0] / (2 / 3), mean_p[1] / (1 / 3), 0.0])
    b = b / b.sum()
    want = sum(a[c] * math.log(b[c] + 1e-12) for c in range(3))
    got = freematch_fairness_loss(logits_s, mask, p_t, hist_t)
    assert got.item() == pytest.approx(float(want), rel=1e-5)
    assert hbar.sum() == pytest.approx(1.0)
    (g,) = torch.autograd.grad(got, logits_s)
    assert g[2].abs().sum() == 0 and g[[0, 1, 3]].abs().sum() > 0
    assert freematch_fairness_loss(logits_s, torch.zeros(4), p_t, hist_t).item() == 0.0


def test_softmatch_moments_use_the_unbiased_variance():
    """mu_t = m mu + (1 - m) mean, sigma_t^2 = m sigma^2 + (1 - m) var with var divided by N - 1."""
    p = torch.tensor([0.9, 0.5, 0.7, 0.3])
    mean = 0.6
    var = ((0.3 ** 2 + 0.1 ** 2 + 0.1 ** 2 + 0.3 ** 2) / 3)
    mu, v = softmatch_update_moments(torch.tensor(0.1), torch.tensor(1.0), p, 0.8)
    assert mu.item() == pytest.approx(0.8 * 0.1 + 0.2 * mean)
    assert v.item() == pytest.approx(0.8 * 1.0 + 0.2 * var)
    _, v1 = softmatch_update_moments(torch.tensor(0.1), torch.tensor(1.0), p[:1], 0.8)  # one row: no variance
    assert v1.item() == 1.0


def test_softmatch_weight_is_a_gaussian_truncated_at_the_mean():
    """lambda(p) = exp(-(min(p - mu, 0))^2 / (2 sigma^2 / n_sigma^2)): 1 at and above mu; below it a Gaussian of
    std sigma / n_sigma."""
    p = torch.tensor([0.9, 0.8, 0.7, 0.5])
    w = softmatch_weight(p, torch.tensor(0.8), torch.tensor(0.04), n_sigma=2.0)
    assert torch.allclose(w, torch.tensor([1.0, 1.0, math.exp(-0.5), math.exp(-0.09 / 0.02)]))
    w3 = softmatch_weight(p, torch.tensor(0.8), torch.tensor(0.04), n_sigma=3.0)
    assert w3[2].item() == pytest.approx(math.exp(-0.01 * 9 / 0.08))


def test_uniform_alignment_and_its_running_mean_by_hand():
    """UA(q) = Normalize(q (1/C + 1e-6) / (p_hat + 1e-6)); p_hat starts at the first batch's mean prediction."""
    q = torch.tensor([[0.5, 0.3, 0.2]])
    p_hat = torch.tensor([0.5, 0.25, 0.25])
    r = torch.tensor([0.5 / 0.5, 0.3 / 0.25, 0.2 / 0.25])
    assert torch.allclose(uniform_alignment(q, p_hat), (r / r.sum())[None], atol=1e-5)
    batch = torch.tensor([[0.6, 0.4, 0.0], [0.2, 0.4, 0.4]])
    first = update_prediction_mean(torch.zeros(3), batch, 0.9)
    assert torch.allclose(first, torch.tensor([0.4, 0.4, 0.2]))
    assert torch.allclose(update_prediction_mean(first, batch, 0.9), first)
    assert torch.allclose(update_prediction_mean(p_hat, batch, 0.9), 0.9 * p_hat + 0.1 * first)


@pytest.mark.parametrize("cls, bad, match", [
    (FlexMatch, {"tau": 1.5}, "tau"), (FlexMatch, {"mapping": "cubic"}, "mapping"),
    (FreeMatch, {"ema_p": -0.1}, "ema_p"), (FreeMatch, {"lambda_f": 2.0}, "lambda_f"),
    (SoftMatch, {"n_sigma": 0.0}, "n_sigma"), (SoftMatch, {"label_temperature": 0.0}, "label_temperature"),
    (FreeMatch, {"tau": 0.9}, "unknown option"),
])
def test_bad_options_are_one_line_errors(cls, bad, match):
    with pytest.raises(ValueError, match=match) as e:
        cls(**bad)
    assert "\n" not in str(e.value)


def test_the_methods_facts():
    for name, cls, year in (("flexmatch", FlexMatch, 2021), ("freematch", FreeMatch, 2023),
                            ("softmatch", SoftMatch, 2023)):
        assert sslteach.METHODS[name] is cls
        assert (cls.year, cls.family, cls.notebook, cls.builds_on) == (year, "adaptive thresholds",
                                                                       "11_adaptive_thresholds", "fixmatch")
        assert cls.cpu_ms_per_step is None or cls.cpu_ms_per_step > 0
    assert FlexMatch().config.tau == 0.95 and FlexMatch().config.thresh_warmup
    assert (FreeMatch().config.ema_p, FreeMatch().config.lambda_f) == (0.999, 0.01)
    assert (SoftMatch().config.ema_p, SoftMatch().config.n_sigma, SoftMatch().config.dist_align) == (0.999, 2.0, True)


# ============================================================================================ step helpers
def _net(seed, scale):
    torch.manual_seed(seed)
    net = RecordingNet()
    with torch.no_grad():
        net.fc.weight.mul_(scale)
    return net


def _fc(net, x):
    """The logits recomputed from the weights (with their gradient)."""
    return x.flatten(1) @ net.fc.weight.T + net.fc.bias


def _views(aug):
    weak = [v for k, v in aug.views if k == "weak"]
    strong = [v for k, v in aug.views if k == "strong"]
    assert len(weak) == 2 and len(strong) == 1  # labeled weak, unlabeled weak, unlabeled strong
    return weak[0], weak[1], strong[0]


def _grad(loss, net):
    return torch.autograd.grad(loss, [net.fc.weight, net.fc.bias], retain_graph=True)


def _same_grads(a, b):
    for x, y in zip(a, b):
        assert torch.allclose(x, y, rtol=1e-4, atol=1e-6), (x - y).abs().max()


def _by_class_counts(sel, num_classes=10):
    return [int((sel == c).sum()) for c in range(num_classes)], int((sel == -1).sum())


# ============================================================================================ FlexMatch step
def _flexmatch_case(digits, tau=0.9, **opts):
    """Seed 0, weights x8: weak confidences 0.33 .. 0.95, predictions in classes 1, 5, 7, 9. The unlabeled set has
    60 images; 36 images *outside* the batch carry marks (class 5: 14, 1: 10, 9: 8, 7: 4), 24 are unused (more
    than any class: the warm-up matters), among them every image of the batch."""
    net = _net(0, 8.0)
    batch, ctx = shuffled_batch_and_ctx(digits, b=4, mu=3, aug=TaggedAug(), num_unlabeled=60, seed=0)
    method = FlexMatch(tau=tau, mu=3, lambda_u=0.6, **opts)
    method.setup(net, None, ctx)
    outside = [i for i in range(60) if i not in set(batch.idx_ulb.tolist())]
    sel = torch.full((60,), -1, dtype=torch.long)
    for cls, n, start in ((5, 14, 0), (1, 10, 14), (9, 8, 24), (7, 4, 32)):
        sel[outside[start: start + n]] = cls
    method.selected_label = sel.clone()
    # beta as it stands after the previous step (warm-up: divided by the 24 unused images), set by hand
    beta = torch.zeros(10)
    beta[[5, 1, 9, 7]] = torch.tensor([14, 10, 8, 4]) / 24.0
    method.beta = beta.clone()
    return method, net, batch, ctx, sel, beta


def test_flexmatch_step_thresholds_come_from_past_marks_of_the_weak_view_and_marks_go_by_index(digits):
    """Bugs guarded: the threshold (or the mask) computed from the strong view, or from rows that include the
    labeled ones; the marks of *this* batch counted before the mask (FlexMatch uses them from the next step on);
    the warm-up dropped (beta divided by the best class instead of max(best class, unused)); the convex mapping
    dropped; the marks written at the batch positions instead of ``batch.idx_ulb``, or with the flexible
    threshold instead of the fixed tau. Everything is rebuilt by hand from the views the network received."""
    method, net, batch, ctx, sel0, beta0 = _flexmatch_case(digits)
    loss, logs = method.step(net, batch, ctx)
    x_lb, x_w, x_s = _views(ctx.aug)
    assert torch.equal(x_w, batch.x_ulb + 0.02) and torch.equal(x_s, 0.5 * batch.x_ulb + 0.02)
    q = torch.softmax(_fc(net, x_w).detach(), 1)
    max_q, pseudo = q.max(1)
    thresholds = 0.9 * beta0 / (2 - beta0)
    mask = (max_q >= thresholds[pseudo]).float()
    ce = F.cross_entropy(_fc(net, x_s), pseudo, reduction="none")
    loss_u = (ce * mask).mean()
    loss_x = F.cross_entropy(_fc(net, x_lb), batch.y_lb)
    assert 0 < mask.sum() < len(mask)
    assert logs["mask_rate"].item() == pytest.approx(mask.mean().item())
    assert logs["loss_u"].item() == pytest.approx(loss_u.item(), rel=1e-5)
    assert loss.item() == pytest.approx((loss_x + 0.6 * loss_u).item(), rel=1e-5)
    assert logs["thresh_mean"].item() == pytest.approx(thresholds.mean().item(), rel=1e-5)
    assert logs["thresh_max"].item() == pytest.approx(thresholds.max().item(), rel=1e-5)
    _same_grads(_grad(loss, net), _grad(loss_x + 0.6 * loss_u, net))
    # the marks: fixed tau, at the images' indices
    sel = sel0.clone()
    for b in range(len(pseudo)):
        if max_q[b] >= 0.9:
            sel[batch.idx_ulb[b]] = pseudo[b]
    assert torch.equal(method.selected_label, sel)
    counts, unused = _by_class_counts(sel)
    assert torch.allclose(method.beta, torch.tensor(counts, dtype=torch.float) / max(max(counts), unused))
    assert logs["unused"].item() == pytest.approx(unused / 60)
    # the test can tell: each bug gives another mask or other marks here
    q_s = torch.softmax(_fc(net, x_s).detach(), 1)
    assert not torch.equal((q_s.max(1).values >= thresholds[q_s.argmax(1)]).float(), mask)
    b_now = torch.tensor(counts, dtype=torch.float) / max(max(counts), unused)
    assert not torch.equal((max_q >= (0.9 * b_now / (2 - b_now))[pseudo]).float(), mask)
    c0, _ = _by_class_counts(sel0)
    b_nowarm = torch.tensor(c0, dtype=torch.float) / max(c0)
    assert not torch.equal((max_q >= (0.9 * b_nowarm / (2 - b_nowarm))[pseudo]).float(), mask)
    assert not torch.equal((max_q >= (0.9 * beta0)[pseudo]).float(), mask)  # linear instead of convex
    flexible = sel0.clone()
    keep = mask > 0
    flexible[batch.idx_ulb[keep]] = pseudo[keep]
    assert not torch.equal(flexible, sel)
    assert 0 < int((max_q >= 0.9).sum()) < len(max_q)


def test_flexmatch_step_first_steps_warm_up_from_zero(digits):
    """Bug guarded: the warm-up lost in the *step* (``thresh_warmup`` not passed on, or beta computed without the
    unused count): two steps from a fresh start. Step 1: beta = 0, T = 0, every image passes. Step 2 uses the
    marks of step 1, divided by the unused count (most of the 60 images), so its thresholds stay low."""
    net = _net(0, 8.0)
    batch, ctx = shuffled_batch_and_ctx(digits, b=4, mu=3, aug=TaggedAug(), num_unlabeled=60, seed=0)
    method = FlexMatch(tau=0.6, mu=3)
    method.setup(net, None, ctx)
    _, logs1 = method.step(net, batch, ctx)
    assert logs1["mask_rate"].item() == 1.0 and logs1["thresh_max"].item() == 0.0
    x_w = _views(ctx.aug)[1]
    max_q, pseudo = torch.softmax(_fc(net, x_w).detach(), 1).max(1)
    counts = [int(((max_q >= 0.6) & (pseudo == c)).sum()) for c in range(10)]
    unused = 60 - sum(counts)
    assert unused > max(counts) > 0
    beta = torch.tensor(counts, dtype=torch.float) / unused
    assert torch.allclose(method.beta, beta)
    ctx.aug.views.clear()
    ctx.aug.calls.update(weak=0, strong=0)  # the same views again
    _, logs2 = method.step(net, batch, ctx)
    t = 0.6 * beta / (2 - beta)
    assert logs2["thresh_max"].item() == pytest.approx(t.max().item(), rel=1e-5)
    mask = (max_q >= t[pseudo]).float()
    assert logs2["mask_rate"].item() == pytest.approx(mask.mean().item())
    b_nowarm = torch.tensor(counts, dtype=torch.float) / max(counts)
    assert not torch.equal((max_q >= (0.6 * b_nowarm / (2 - b_nowarm))[pseudo]).float(), mask)


# ============================================================================================ FreeMatch step
def _freematch_case(digits, **opts):
    net = _net(0, 8.0)
    batch, ctx = shuffled_batch_and_ctx(digits, b=4, mu=3, aug=TaggedAug(), num_unlabeled=40, seed=0)
    method = FreeMatch(mu=3, lambda_u=0.6, lambda_f=0.3, ema_p=0.7, **opts)
    method.setup(net, None, ctx)
    # statistics as a previous step left them: a high global threshold, a model that predicts class 5 most
    p = torch.full((10,), 0.05)
    p[5], p[1], p[9], p[7] = 0.35, 0.15, 0.1, 0.0
    p = p / p.sum()
    h = torch.full((10,), 0.06)
    h[5], h[1] = 0.3, 0.16
    h = h / h.sum()
    method.tau_t, method.p_t, method.hist_t = torch.tensor(0.95), p.clone(), h.clone()
    return method, net, batch, ctx, (torch.tensor(0.95), p, h)


def _freematch_by_hand(net, batch, views, state, m=0.7, lambda_u=0.6, lambda_f=0.3, temperature=None):
    x_lb, x_w, x_s = views
    tau0, p0, h0 = state
    q = torch.softmax(_fc(net, x_w).detach(), 1)
    max_q, pseudo = q.max(1)
    tau = m * tau0 + (1 - m) * max_q.mean()
    p = m * p0 + (1 - m) * q.mean(0)
    h = m * h0 + (1 - m) * torch.stack([(pseudo == c).float().mean() for c in range(10)])
    thresholds = tau * p / p.max()
    mask = (max_q >= thresholds[pseudo]).float()
    logits_s = _fc(net, x_s)
    if temperature is None:
        ce = F.cross_entropy(logits_s, pseudo, reduction="none")
    else:
        target = torch.softmax(_fc(net, x_w).detach() / temperature, 1)
        ce = -(target * F.log_softmax(logits_s, 1)).sum(1)
    loss_u = (ce * mask).mean()
    kept = torch.softmax(logits_s[mask > 0], 1)
    hbar = torch.stack([(kept.detach().argmax(1) == c).float().mean() for c in range(10)])
    a = p / h
    a = a / a.sum()
    inv = torch.where(hbar > 0, 1 / hbar.clamp_min(1e-12), torch.zeros_like(hbar))
    b = kept.mean(0) * inv
    b = b / b.sum()
    loss_f = (a * torch.log(b + 1e-12)).sum()
    loss_x = F.cross_entropy(_fc(net, x_lb), batch.y_lb)
    return {"tau": tau, "p": p, "h": h, "thresholds": thresholds, "mask": mask, "loss_u": loss_u,
            "loss_f": loss_f, "loss_x": loss_x, "total": loss_x + lambda_u * loss_u + lambda_f * loss_f,
            "max_q": max_q, "pseudo": pseudo}


def test_freematch_step_updates_its_statistics_from_this_batchs_weak_views_before_the_mask(digits):
    """Bugs guarded: the statistics updated *after* the mask (FreeMatch includes this batch, before the mask; the
    opposite of FlexMatch); computed from the strong view, from the labeled rows, or from the kept rows only;
    MaxNorm dropped; the fairness term on the weak view, with its sign flipped or its weight dropped (0.3 here).
    Values and gradients rebuilt by hand; momentum 0.7 so one batch moves the statistics visibly."""
    method, net, batch, ctx, state = _freematch_case(digits)
    loss, logs = method.step(net, batch, ctx)
    views = _views(ctx.aug)
    want = _freematch_by_hand(net, batch, views, state)
    assert 0 < want["mask"].sum() < len(want["mask"])
    assert method.tau_t.item() == pytest.approx(want["tau"].item(), rel=1e-6)
    assert torch.allclose(method.p_t, want["p"], atol=1e-7) and torch.allclose(method.hist_t, want["h"], atol=1e-7)
    assert logs["mask_rate"].item() == pytest.approx(want["mask"].mean().item())
    assert logs["tau_t"].item() == pytest.approx(want["tau"].item(), rel=1e-6)
    assert logs["thresh_min"].item() == pytest.approx(want["thresholds"].min().item(), rel=1e-5)
    assert logs["loss_u"].item() == pytest.approx(want["loss_u"].item(), rel=1e-5)
    assert logs["loss_fair"].item() == pytest.approx(want["loss_f"].item(), rel=1e-5)
    assert loss.item() == pytest.approx(want["total"].item(), rel=1e-5)
    _same_grads(_grad(loss, net), _grad(want["total"], net))
    # the test can tell: the old statistics, or statistics of another view / rows, give another mask or state
    tau0, p0, _ = state
    max_q, pseudo = want["max_q"], want["pseudo"]
    assert not torch.equal((max_q >= (tau0 * p0 / p0.max())[pseudo]).float(), want["mask"])
    assert not torch.equal((max_q >= (want["tau"] * want["p"])[pseudo]).float(), want["mask"])  # no MaxNorm
    q_s = torch.softmax(_fc(net, views[2]).detach(), 1)
    assert abs((0.7 * tau0 + 0.3 * q_s.max(1).values.mean()) - want["tau"]) > 1e-3
    q_lb = torch.softmax(_fc(net, views[0]).detach(), 1)
    assert abs((0.7 * tau0 + 0.3 * q_lb.max(1).values.mean()) - want["tau"]) > 1e-3


# ============================================================================================ SoftMatch step
def _softmatch_case(digits, **opts):
    net = _net(0, 8.0)
    batch, ctx = shuffled_batch_and_ctx(digits, b=4, mu=3, aug=TaggedAug(), num_unlabeled=40, seed=0)
    method = SoftMatch(mu=3, lambda_u=0.6, ema_p=0.7, n_sigma=3.0, **opts)
    method.setup(net, None, ctx)
    p_hat = torch.full((10,), 0.04)
    p_hat[5] = 0.64  # the model predicts class 5 far too often: alignment turns some predictions away from it
    state = (torch.tensor(0.75), torch.tensor(0.03), p_hat)
    method.mu_t, method.var_t, method.p_hat = (t.clone() for t in state)
    return method, net, batch, ctx, state


def _softmatch_by_hand(net, views, state, m=0.7, n_sigma=3.0, temperature=None):
    _, x_w, x_s = views
    mu0, var0, p0 = state
    q = torch.softmax(_fc(net, x_w).detach(), 1)
    p_hat = m * p0 + (1 - m) * q.mean(0)
    al = q * (0.1 + 1e-6) / (p_hat + 1e-6)
    al = al / al.sum(1, keepdim=True)
    conf = al.max(1).values
    n = len(conf)
    mu = m * mu0 + (1 - m) * conf.mean()
    var = m * var0 + (1 - m) * ((conf - conf.mean()) ** 2).sum() / (n - 1)
    w = torch.exp(-torch.clamp(conf - mu, max=0) ** 2 / (2 * var / n_sigma ** 2))
    pseudo = q.argmax(1)
    logits_s = _fc(net, x_s)
    if temperature is None:
        ce = F.cross_entropy(logits_s, pseudo, reduction="none")
    else:
        target = torch.softmax(_fc(net, x_w).detach() / temperature, 1)
        ce = -(target * F.log_softmax(logits_s, 1)).sum(1)
    return {"p_hat": p_hat, "mu": mu, "var": var, "w": w, "pseudo": pseudo, "loss_u": (w * ce).mean(),
            "aligned": al, "q": q, "conf": conf}


def test_softmatch_step_weights_this_batch_by_its_aligned_weak_confidence(digits):
    """Bugs guarded: the weight computed from the strong view; n_sigma dropped or hard-coded to 2 (3 here); the
    biased variance; the moments updated *after* the weight (SoftMatch includes this batch) or from the raw
    instead of the aligned confidences (USB's order); alignment dropped; the pseudo-label taken from the *aligned*
    prediction (it is the raw argmax). Rebuilt by hand, momentum 0.7."""
    method, net, batch, ctx, state = _softmatch_case(digits)
    loss, logs = method.step(net, batch, ctx)
    views = _views(ctx.aug)
    want = _softmatch_by_hand(net, views, state)
    assert torch.allclose(method.p_hat, want["p_hat"], atol=1e-7)
    assert method.mu_t.item() == pytest.approx(want["mu"].item(), rel=1e-6)
    assert method.var_t.item() == pytest.approx(want["var"].item(), rel=1e-6)
    assert logs["mask_rate"].item() == pytest.approx(want["w"].mean().item(), rel=1e-6)
    assert logs["loss_u"].item() == pytest.approx(want["loss_u"].item(), rel=1e-5)
    assert logs["mu_t"].item() == pytest.approx(want["mu"].item(), rel=1e-6)
    assert logs["sigma_t"].item() == pytest.approx(want["var"].sqrt().item(), rel=1e-6)
    loss_x = F.cross_entropy(_fc(net, views[0]), batch.y_lb)
    assert loss.item() == pytest.approx((loss_x + 0.6 * want["loss_u"]).item(), rel=1e-5)
    _same_grads(_grad(loss, net), _grad(loss_x + 0.6 * want["loss_u"], net))
    # the test can tell
    w, conf, mu, var = want["w"], want["conf"], want["mu"], want["var"]
    assert (w < 0.99).any() and (w > 0.999).any()
    assert not torch.allclose(torch.exp(-torch.clamp(conf - mu, max=0) ** 2 / (2 * var / 4)), w)  # n_sigma 2
    assert not torch.allclose(torch.exp(-torch.clamp(conf - state[0], max=0) ** 2 / (2 * state[1] / 9)), w)
    raw = want["q"].max(1).values
    assert abs((0.7 * state[0] + 0.3 * raw.mean()) - mu) > 1e-3  # moments from the raw confidences differ
    assert not torch.equal(want["aligned"].argmax(1), want["pseudo"])  # aligned argmax differs from the raw one
    n = len(conf)
    assert abs(0.3 * conf.var(unbiased=False) - 0.3 * conf.var() * (n - 1) / n) < 1e-9  # (sanity of the algebra)
    biased = 0.7 * state[1] + 0.3 * conf.var(unbiased=False)
    assert abs(biased.item() - var.item()) > 1e-5


# ============================================================================================ BatchNorm
@pytest.mark.parametrize("cls", [FlexMatch, FreeMatch, SoftMatch])
def test_one_training_mode_batchnorm_pass_over_the_three_views(digits, cls):
    """Bugs guarded: BatchNorm in evaluation mode for the step's forward (the network's running statistics would then
    normalise the batch and never move), the weak unlabeled view passed without gradient or on its own, the views
    normalised separately. As FixMatch: one pass, in training mode, with gradient, over [weak labeled, weak unlabeled,
    strong unlabeled]; the running statistics move once, by the statistics of that whole batch; and the unlabeled
    loss equals the one rebuilt from a training-mode BatchNorm over the concatenation."""
    torch.manual_seed(3)
    net = BNRecordingNet(d=8)
    net.train()
    batch, ctx = shuffled_batch_and_ctx(digits, b=4, mu=3, aug=TaggedAug(), num_unlabeled=60, seed=0)
    method = cls(mu=3)
    method.setup(net, None, ctx)
    running0 = (net.bn.running_mean.clone(), net.bn.running_var.clone())
    _, logs = method.step(net, batch, ctx)
    assert len(net.calls) == 1
    call = net.calls[0]
    assert call.training and call.grad
    x_lb, x_w, x_s = _views(ctx.aug)
    x_all = torch.cat([x_lb, x_w, x_s])
    assert torch.equal(call.x, x_all)
    h = x_all.flatten(1) @ net.body.weight.T + net.body.bias
    mean, var = bn_running_after(running0, h.detach())
    assert torch.allclose(net.bn.running_mean, mean, atol=1e-6) and torch.allclose(net.bn.running_var, var, atol=1e-5)
    logits, _ = net.logits_by_hand(x_all, train=True)
    logits_eval, _ = net.logits_by_hand(x_all, train=False, running=running0)
    assert torch.allclose(call.logits, logits, atol=1e-5) and not torch.allclose(call.logits, logits_eval, atol=1e-3)


# ============================================================================================ soft labels
@pytest.mark.parametrize("name", ["flexmatch", "freematch", "softmatch"])
def test_soft_pseudo_labels_use_the_temperature(digits, name):
    """Bug guarded: the temperature T dropped from the soft pseudo-labels (``hard_label=False``): the target must be
    softmax(logits_w / T) with T = 0.5 (not T = 1, not the hard argmax), while the mask / weight still comes from
    the untempered weak prediction."""
    if name == "flexmatch":
        method, net, batch, ctx, _, beta0 = _flexmatch_case(digits, hard_label=False, label_temperature=0.5)
    elif name == "freematch":
        method, net, batch, ctx, state = _freematch_case(digits, hard_label=False, label_temperature=0.5)
    else:
        method, net, batch, ctx, state = _softmatch_case(digits, hard_label=False, label_temperature=0.5)
    loss, logs = method.step(net, batch, ctx)
    views = _views(ctx.aug)
    x_w, x_s = views[1], views[2]

    def soft_loss(weight, t):
        target = torch.softmax(_fc(net, x_w).detach() / t, 1) if t else \
            F.one_hot(_fc(net, x_w).argmax(1), 10).float()
        return (-(target * F.log_softmax(_fc(net, x_s), 1)).sum(1) * weight).mean()

    if name == "flexmatch":
        max_q, pseudo = torch.softmax(_fc(net, x_w).detach(), 1).max(1)
        weight = (max_q >= (0.9 * beta0 / (2 - beta0))[pseudo]).float()
    elif name == "freematch":
        weight = _freematch_by_hand(net, batch, views, state, temperature=0.5)["mask"]
    else:
        weight = _softmatch_by_hand(net, views, state, temperature=0.5)["w"]
    want = soft_loss(weight, 0.5)
    assert logs["loss_u"].item() == pytest.approx(want.item(), rel=1e-5)
    # the soft target is a constant: no gradient reaches the weak unlabeled rows (the strong ones get one)
    (g,) = torch.autograd.grad(loss, net.logits)
    assert g[4:16].abs().sum() == 0 and g[16:].abs().sum() > 0
    assert abs(soft_loss(weight, 1.0).item() - want.item()) > 1e-3
    assert abs(soft_loss(weight, None).item() - want.item()) > 1e-3


# ============================================================================================ per-class diagnostics
@pytest.mark.parametrize("name", ["flexmatch", "softmatch"])
def test_per_class_diagnostics_compare_each_row_with_its_own_hidden_label(digits, name):
    """Bug guarded: the per-class mask rate / pseudo-label accuracy computed against hidden labels that are not
    the rows' own (``y_ulb`` reordered by image index, or the labels of another view): with a shuffled batch,
    ``class_stats`` must equal the per-class counts of (mask or weight, pseudo-label, y_ulb[b]) by position."""
    if name == "flexmatch":
        method, net, batch, ctx, _, beta0 = _flexmatch_case(digits)
    else:
        method, net, batch, ctx, state = _softmatch_case(digits)
    method.step(net, batch, ctx)  # total_steps = 10: every step closes a window
    stats = method.class_stats
    x_w = _views(ctx.aug)[1]
    q = torch.softmax(_fc(net, x_w).detach(), 1)
    max_q, pseudo = q.max(1)
    if name == "flexmatch":
        thresholds = 0.9 * beta0 / (2 - beta0)
        weight = (max_q >= thresholds[pseudo]).float()
        assert stats["threshold"] == pytest.approx(thresholds.tolist(), rel=1e-5)
    else:
        weight = _softmatch_by_hand(net, _views(ctx.aug), state)["w"]
        assert stats["threshold"] == pytest.approx([method.mu_t.item()] * 10, rel=1e-5)
    y = batch.y_ulb
    assert stats["step"] == 1 and len(method.class_trace) == 1
    for c in range(10):
        rows = y == c
        if rows.any():
            assert stats["mask_rate"][c] == pytest.approx(weight[rows].mean().item(), rel=1e-5)
            kept = weight[rows].sum()
            if kept > 0:
                right = (weight[rows] * (pseudo[rows] == c).float()).sum()
                assert stats["pseudo_acc"][c] == pytest.approx((right / kept).item(), rel=1e-5)
        else:
            assert math.isnan(stats["mask_rate"][c])
        labelled = pseudo == c
        if labelled.any():
            assert stats["weight"][c] == pytest.approx(weight[labelled].mean().item(), rel=1e-5)
    # the test can tell: the hidden labels in image-index order are other labels
    order = batch.y_ulb[batch.idx_ulb.argsort()]
    assert not torch.equal(order, y)


def test_the_per_class_trace_reaches_the_result_and_the_run_cache(tmp_path):
    """``result.extra["class_trace"]`` holds one per-class snapshot per window (and the last step), also when the
    run is read back from the run cache (the method object is rebuilt there, its trace is not)."""
    opts = {"steps": 8, "eval_every": 4, "batch_size": 8, "progress": False, "cache": tmp_path}
    a = sslteach.train("flexmatch", **opts)
    trace = a.extra["class_trace"]
    assert [s["step"] for s in trace] == list(range(1, 9))
    assert len(trace[-1]["threshold"]) == 10 and trace[0]["threshold"] == [0.0] * 10
    b = sslteach.train("flexmatch", **opts)
    assert b.from_cache and [s["step"] for s in b.extra["class_trace"]] == list(range(1, 9))
    assert torch.equal(b.method_obj.selected_label.cpu(), a.method_obj.selected_label.cpu())


# ============================================================================================ figures
def test_the_trace_figures_read_a_trace_a_result_or_a_method():
    """``viz_adaptive``: the trace as a table (a row per window, a column per class) and the figures of notebook 11
    drawn from it; a method without a trace is a one-line error."""
    trace = [{"step": s, "threshold": [0.1 * s, 0.2], "mask_rate": [1.0, float("nan")], "pseudo_acc": [0.5, 0.5],
              "weight": [1.0, 0.0], "pseudo_precision": [0.5, 1.0]} for s in (1, 2, 3)]
    df = viz_adaptive.trace_frame(trace, "threshold", class_names=["a", "b"])
    assert list(df.index) == [1, 2, 3] and list(df.columns) == ["a", "b"]
    assert df["a"].tolist() == pytest.approx([0.1, 0.2, 0.3])
    result = type("R", (), {"extra": {"class_trace": trace}, "per_class_accuracy": [0.9, 0.4]})()
    fig = viz_adaptive.plot_class_panels(result, class_names=["a", "b"], highlight=[1], smooth=2)
    assert len(fig.axes) == 3 and [line.get_label() for line in fig.axes[0].lines][1] == "b"
    ax = viz_adaptive.plot_recall_by_method({"fixmatch": result, "flexmatch": [0.8, 0.7]}, ["a", "b"], hard=[1])
    assert len(ax.containers) == 2 and all(len(c) == 2 for c in ax.containers)
    viz_adaptive.plot_flexmatch_mappings(0.95)
    viz_adaptive.plot_softmatch_weight(0.7, 0.1, 2.0)
    plt.close("all")
    with pytest.raises(ValueError, match="no per-class trace"):
        viz_adaptive.class_trace(sslteach.get_method("fixmatch"))
    with pytest.raises(ValueError, match="unknown key"):
        viz_adaptive.trace_frame(trace, "recall")


def test_the_mutants_of_tests_mutate_still_apply():
    """``python tests/mutate.py adaptive`` breaks these steps one line at a time (every mutant was caught when it was
    written); this keeps its patterns in step with the code: each one must still be found, and change the file."""
    import mutate

    path, _ = mutate.FILES["adaptive"]
    text = (mutate.ROOT / path).read_text()
    for name, spec in mutate.MUTANTS["adaptive"].items():
        assert mutate.apply(text, *spec) != text, name
