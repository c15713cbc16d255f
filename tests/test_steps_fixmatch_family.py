"""Step tests for the two bug classes of the FixMatch family that the earlier strict tests left open (issue 25):
a target left with its gradient, and SimMatch's instance similarity without its temperature (in one of its two
places). Same approach as ``test_steps_0509.py``: the real step on a network with BatchNorm
(:class:`steptools.BNRecordingNet`, as the usual small CNN has), expected values and gradients rebuilt by hand from
what the network received — not from the method's own loss functions, which a bug may share."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sslteach.data import balanced_split, to_float
from sslteach.methods.crmatch import CRMatch
from sslteach.methods.fixmatch import FixMatch
from sslteach.methods.simmatch import SimMatch, simmatch_instance_loss, simmatch_pseudo_labels, soft_unlabeled_loss
from sslteach.train import Batch, Context

from steptools import BNRecordingNet, TaggedAug, assert_same_grads, grads, shuffled_batch_and_ctx

CPU = torch.device("cpu")


def _mlp_by_hand(seq: nn.Sequential, x):
    for m in seq:
        x = x @ m.weight.T + m.bias if isinstance(m, nn.Linear) else x.clamp_min(0)
    return x


def _tau_between(conf, k):
    """A threshold strictly between the k-th and (k+1)-th smallest confidences."""
    c = conf.sort().values
    return float((c[k - 1] + c[k]) / 2)


# ----------------------------------------------------------------------------- FixMatch: distribution alignment
def test_fixmatch_distribution_alignment_keeps_no_graph_in_its_running_mean(digits):
    """Bug guarded: the weak-view prediction that feeds distribution alignment's running mean taken *with* its
    gradient (the ``.detach()`` dropped): the loss value does not change (the hard pseudo-label hides it), but
    ``p_model`` then holds the graph of every past step (memory grows with training) and is no longer a constant.
    Also: the weak view gets no gradient at all, the strong view does, and the running mean moves by exactly
    (1 - da_momentum) towards this batch's mean prediction (da_momentum = 0.7)."""
    torch.manual_seed(0)
    net = BNRecordingNet(d=8)
    batch, ctx = shuffled_batch_and_ctx(digits, b=4, mu=3, aug=TaggedAug())
    method = FixMatch(tau=0.0, mu=3, dist_align=True, da_momentum=0.7)
    method.setup(net, None, ctx)
    p0 = method.p_model.clone()
    for step in range(2):
        net.calls.clear()
        loss, _ = method.step(net, batch, ctx)
        assert not method.p_model.requires_grad and method.p_model.grad_fn is None, "p_model keeps a graph"
        logits = net.calls[0].logits
        g = torch.autograd.grad(loss, logits)[0]
        assert g[4: 16].abs().sum() == 0 and g[16:].abs().sum() > 0
        q = torch.softmax(logits[4:16].detach(), 1)
        p0 = 0.7 * p0 + 0.3 * q.mean(0)
        assert torch.allclose(method.p_model, p0, atol=1e-6)


# ----------------------------------------------------------------------------- SimMatch
def _simmatch(digits, seed=0, t=0.3, **options):
    torch.manual_seed(seed)
    split = balanced_split(digits, 2, seed=seed)
    net = BNRecordingNet(d=8)
    aug = TaggedAug()
    ctx = Context(aug, 0, 10, CPU, 10, len(split.y_ulb))
    opts = {"sim_temperature": t, "smoothing_alpha": 0.7, "tau": 0.0, "lambda_u": 0.6, "lambda_in": 0.8,
            "proj_dim": 6, **options}
    method = SimMatch(mu=3, **opts)
    method.setup(net, split, ctx)
    g = torch.Generator().manual_seed(seed + 1)
    i_lb = torch.randperm(len(split.y_lb), generator=g)[:4]
    i_ulb = torch.randperm(len(split.y_ulb), generator=g)[:12]
    batch = Batch(to_float(split.x_lb[i_lb]), split.y_lb[i_lb], to_float(split.x_ulb[i_ulb]), split.y_ulb[i_ulb],
                  i_ulb, idx_lb=i_lb)
    with torch.no_grad():  # a teacher that differs from the student
        for p in method.teacher.module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    net.calls.clear()
    aug.views.clear()
    aug.calls.update(weak=0, strong=0)
    return method, net, batch, ctx


def _simmatch_by_hand(method, net, batch, ctx, bank, t, tau, t_s=None):
    """SimMatch's loss rebuilt without the package's SimMatch functions: similarities to the bank divided by t in
    *both* places (the weak view's q_w and the strong view's q_s), unfolding, aggregation, the soft thresholded
    class loss."""
    views = dict(((k, i), v) for i, (k, v) in enumerate(ctx.aug.views))
    x_lb_w, x_ulb_w, x_ulb_s = views[("weak", 0)], views[("weak", 1)], views[("strong", 2)]
    B = len(x_lb_w)
    logits, feats = net.logits_by_hand(torch.cat([x_lb_w, x_ulb_s]), train=True)
    z = F.normalize(_mlp_by_hand(method.head, feats), dim=1)
    teacher = method.teacher.module
    with torch.no_grad():
        t_logits, t_feats = teacher.model.logits_by_hand(torch.cat([x_lb_w, x_ulb_w]), train=True)
        t_z = F.normalize(_mlp_by_hand(teacher.head, t_feats), dim=1)
        p_w = torch.softmax(t_logits[B:], 1)
        q_w = torch.softmax(t_z[B:] @ bank.T / t, 1)
        q_hat = q_w * p_w[:, method.bank_labels]
        q_hat = q_hat / q_hat.sum(1, keepdim=True)
        agg = torch.stack([q_w[:, method.bank_labels == c].sum(1) for c in range(10)], 1)
        p_hat = 0.7 * p_w + 0.3 * agg
    log_q_s = F.log_softmax(z[B:] @ bank.T / (t if t_s is None else t_s), 1)
    l_in = -(q_hat * log_q_s).sum(1).mean()
    mask = (p_hat.max(1).values >= tau).float()
    l_u = (-(p_hat * F.log_softmax(logits[B:], 1)).sum(1) * mask).mean()
    l_x = F.cross_entropy(logits[:B], batch.y_lb)
    return {"total": l_x + 0.6 * l_u + 0.8 * l_in, "l_in": l_in, "l_u": l_u, "l_x": l_x, "mask": mask,
            "q_w": q_w, "p_hat": p_hat, "t_z": t_z}


def test_simmatch_step_instance_similarities_use_the_temperature_in_both_places(digits):
    """Bug guarded: the temperature dropped from one of the two instance similarities — the weak view's q_w (the
    pseudo-label) or the strong view's q_s (inside L_in) — including *inside* the pure functions, which the earlier
    step test shares with the step (its expected value calls them) and whose own test uses t = 1. Here t = 0.3, the
    expected L_in, class loss and total are rebuilt by hand, and the gradient on every weight of the network and the
    projection head must match; the teacher runs in training mode (batch statistics, as the official non-EMAN
    teacher) without gradient, the student in training mode with it."""
    method, net, batch, ctx = _simmatch(digits)
    bank = method.bank.clone()
    # a threshold strictly between the soft pseudo-labels' confidences (computed first with tau = 0)
    method.step(net, batch, ctx)
    want0 = _simmatch_by_hand(method, net, batch, ctx, bank, 0.3, 0.0)
    tau = _tau_between(want0["p_hat"].max(1).values, 6)
    method.config.tau = tau
    method.bank = bank.clone()
    net.calls.clear(), method.teacher.module.model.calls.clear()
    ctx.aug.views.clear(), ctx.aug.calls.update(weak=0, strong=0)
    loss, logs = method.step(net, batch, ctx)
    want = _simmatch_by_hand(method, net, batch, ctx, bank, 0.3, tau)
    assert 0 < want["mask"].sum() < 12
    assert logs["loss_in"].item() == pytest.approx(want["l_in"].item(), rel=1e-5)
    assert logs["loss_u"].item() == pytest.approx(want["l_u"].item(), rel=1e-5)
    assert logs["loss_x"].item() == pytest.approx(want["l_x"].item(), rel=1e-5)
    assert loss.item() == pytest.approx(want["total"].item(), rel=1e-5)
    assert logs["mask_rate"].item() == pytest.approx(want["mask"].mean().item())
    params = list(net.parameters()) + list(method.head.parameters())
    assert_same_grads(grads(loss, params), grads(want["total"], params))
    # the passes
    (s_call,), (t_call,) = net.calls, method.teacher.module.model.calls
    assert s_call.training and s_call.grad and t_call.training and not t_call.grad
    # the diagnostic: the label of the most similar bank entry, against the batch's own hidden labels
    nn_acc = (method.bank_labels[want["q_w"].argmax(1)] == batch.y_ulb).float().mean()
    assert logs["bank_nn_acc"].item() == pytest.approx(nn_acc.item())
    # the test can tell: without the temperature in either place, L_in is another number
    for t_w, t_s in ((1.0, 0.3), (0.3, 1.0)):
        other = _simmatch_by_hand(method, net, batch, ctx, bank, t_w, tau, t_s=t_s)["l_in"]
        assert abs(other.item() - want["l_in"].item()) > 1e-3


def test_simmatch_targets_are_constants_even_if_the_teacher_could_learn(digits):
    """Bug guarded: a target left with its gradient. SimMatch's targets (p_hat, q_hat) and its bank must be
    constants: the step must not rely on the EMA copy's frozen weights alone. With the teacher's weights made
    trainable here, nothing may reach them, and the pure functions must return constants even for inputs that
    carry a gradient."""
    method, net, batch, ctx = _simmatch(digits, seed=1)
    for p in method.teacher.module.parameters():
        p.requires_grad_(True)
    loss, _ = method.step(net, batch, ctx)
    loss.backward()
    assert all(p.grad is None for p in method.teacher.module.parameters())
    assert not method.bank.requires_grad and method.bank.grad_fn is None
    # the pure functions, fed tensors with a gradient
    g = torch.Generator().manual_seed(0)
    p_w = torch.softmax(torch.randn(5, 3, generator=g), 1).requires_grad_(True)
    z = F.normalize(torch.randn(5, 4, generator=g), dim=1).requires_grad_(True)
    bank = F.normalize(torch.randn(6, 4, generator=g), dim=1).requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    p_hat, q_hat, q_w = simmatch_pseudo_labels(p_w, z, bank, labels, 0.3, 0.7)
    assert not (p_hat.requires_grad or q_hat.requires_grad or q_w.requires_grad)
    z_s = torch.randn(5, 4, generator=g, requires_grad=True)
    q_target = q_hat.clone().requires_grad_(True)
    l_in, _ = simmatch_instance_loss(z_s, bank, q_target, 0.3)
    g_zs, g_bank, g_q = torch.autograd.grad(l_in, [z_s, bank, q_target], allow_unused=True)
    assert g_zs.abs().sum() > 0 and g_bank is None and g_q is None
    logits = torch.randn(5, 3, generator=g, requires_grad=True)
    target = p_hat.clone().requires_grad_(True)
    l_u, _ = soft_unlabeled_loss(logits, target, 0.0)
    g_l, g_t = torch.autograd.grad(l_u, [logits, target], allow_unused=True)
    assert g_l.abs().sum() > 0 and g_t is None


# ----------------------------------------------------------------------------- CR-Match
def test_crmatch_feature_loss_trains_both_views_through_the_step(digits):
    """Bug guarded: a stop-gradient on one side of the feature distance loss (the reference implementation lets
    the gradient into both views), the loss on the wrong rows, lambda_feat or lambda_u dropped (0.7 and 0.6), the
    FixMatch target left with its gradient. Gradients of the real step against the loss rebuilt by hand; tau
    strictly between the weak-view confidences."""
    torch.manual_seed(0)
    net = BNRecordingNet(d=8)
    with torch.no_grad():
        net.head.weight.mul_(8)
    batch, ctx = shuffled_batch_and_ctx(digits, b=4, mu=3, aug=TaggedAug(), seed=2)
    method = CRMatch(tau=0.0, mu=3, lambda_u=0.6, lambda_feat=0.7, feat_mode="equivariance", feat_source="map")
    split = type("S", (), {"x_lb": batch.x_lb})()
    method.setup(net, split, ctx)
    with torch.no_grad():
        method.head.weight.mul_(3)
    net.calls.clear()
    method.step(net, batch, ctx)
    conf = torch.softmax(net.calls[0].logits[4:16].detach(), 1).max(1).values
    method.config.tau = _tau_between(conf, 6)
    net.calls.clear(), ctx.aug.views.clear(), ctx.aug.calls.update(weak=0, strong=0)
    loss, logs = method.step(net, batch, ctx)
    X = net.calls[0].x
    logits, _ = net.logits_by_hand(X, train=True)
    h = X.flatten(1) @ net.body.weight.T + net.body.bias  # the tapped map: the output of ``body``
    proj = h[4:] @ method.head.weight.T + method.head.bias
    h_w, h_s = proj[:12], proj[12:]
    q = torch.softmax(logits[4:16].detach(), 1)
    c, pl = q.max(1)
    mask = (c >= method.config.tau).float()
    assert 0 < mask.sum() < 12
    l_x = F.cross_entropy(logits[:4], batch.y_lb)
    l_u = (F.cross_entropy(logits[16:], pl, reduction="none") * mask).mean()
    cos = F.cosine_similarity(h_w, h_s, dim=1)
    l_feat = (cos.clamp_min(0) * mask).mean()
    assert (cos[mask > 0] > 0).all()  # every confident pair is inside the clamp: both views get a gradient
    want = l_x + 0.6 * l_u + 0.7 * l_feat
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert logs["loss_feat"].item() == pytest.approx(l_feat.item(), rel=1e-5)
    params = list(net.parameters()) + list(method.head.parameters())
    assert_same_grads(grads(loss, params), grads(want, params))
