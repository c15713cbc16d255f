"""PAWS (Assran et al., ICCV 2021): the soft nearest-neighbour classifier, sharpening, label smoothing and ME-MAX
against hand-computed values; which view is whose target and the stop-gradient on it; multi-crop targets; the
class-balanced support batch; one training step recomputed independently; the probe that must not reach the
encoder; the soft-NN evaluation model; the run cache, the command line, the panel's diagnostics; the claims (PAWS
beats the supervised baseline, and without sharpening or without ME-MAX it collapses) and notebook 05."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn

from sslteach import balanced_split, get_method, train
from sslteach.augment import Augmenter, for_dataset
from sslteach.data import to_float
from sslteach.methods import METHODS
from sslteach.methods.paws import (PAWS, PAWSConfig, SoftNNClassifier, embedding_spread, entropy, paws_loss,
                                   random_resized_crop, sharpen, smoothed_labels, snn_probs, swap_views)
from sslteach.train import Batch, Context


LOG10 = math.log(10)


# ----------------------------------------------------------------------------- by-hand references (plain Python)
def _snn_by_hand(q, supports, labels, tau):
    """softmax_j(cos(q, s_j) / tau) . y_j, written out with math (no torch)."""
    nq = math.sqrt(sum(v * v for v in q))
    sims = []
    for s in supports:
        ns = math.sqrt(sum(v * v for v in s))
        sims.append(sum(a * b for a, b in zip(q, s)) / (nq * ns))
    e = [math.exp(v / tau) for v in sims]
    w = [v / sum(e) for v in e]
    return [sum(w[j] * labels[j][c] for j in range(len(supports))) for c in range(len(labels[0]))]


def _sharpen_by_hand(p, T):
    s = [v ** (1 / T) for v in p]
    return [v / sum(s) for v in s]


def _ce_by_hand(target, p):
    return -sum(t * math.log(v) for t, v in zip(target, p) if t > 0)


# The notebook's hand-made batch: 2 classes, 4 support embeddings [a, b, a, b], 2 unlabeled images with 2 views each.
SUPPORT = [[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [-0.6, 0.8]]
SUPPORT_Y = [0, 1, 0, 1]
VIEW1 = [[0.9, 0.3], [-0.2, 1.0]]
VIEW2 = [[0.6, 0.7], [0.1, 0.9]]
ONE_HOT = [[1.0, 0.0] if y == 0 else [0.0, 1.0] for y in SUPPORT_Y]


def _toy(requires_grad=False):
    z = torch.tensor(VIEW1 + VIEW2, requires_grad=requires_grad)
    zs = torch.tensor(SUPPORT, requires_grad=requires_grad)
    return z, zs, torch.tensor(ONE_HOT)


# ----------------------------------------------------------------------------- the pure functions, by hand
def test_snn_probs_by_hand():
    z, zs, y = _toy()
    p = snn_probs(z, zs, y, temperature=0.5)
    for i, q in enumerate(VIEW1 + VIEW2):
        assert p[i].tolist() == pytest.approx(_snn_by_hand(q, SUPPORT, ONE_HOT, 0.5), abs=1e-6)
    assert torch.allclose(p.sum(1), torch.ones(4))
    # view 1 of image 1 points at class 0's supports (cosine 0.95 and 0.94 vs 0.32 and -0.32): mostly class 0
    assert p[0, 0] > 0.6


def test_snn_probs_use_cosines_and_the_temperature():
    z, zs, y = _toy()
    p = snn_probs(z, zs, y, 0.1)
    assert torch.allclose(snn_probs(7.0 * z, 0.3 * zs, y, 0.1), p, atol=1e-6)  # lengths do not matter
    assert not torch.allclose(snn_probs(z, zs, y, 0.5), p, atol=1e-3)  # the temperature does
    # a tiny temperature: the nearest support alone decides (image 1, view 1: support 0 at cosine 0.949)
    assert snn_probs(z, zs, y, 0.001)[0].tolist() == pytest.approx([1.0, 0.0], abs=1e-6)


def test_sharpen_by_hand():
    p = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    assert sharpen(p, 0.5)[0].tolist() == pytest.approx([0.36 / 0.46, 0.09 / 0.46, 0.01 / 0.46], abs=1e-6)
    assert sharpen(p, 0.25)[1].tolist() == pytest.approx(_sharpen_by_hand([0.2, 0.2, 0.6], 0.25), abs=1e-6)
    assert torch.allclose(sharpen(p, 1.0), p)  # T = 1: unchanged
    flat = torch.full((1, 4), 0.25)
    assert torch.allclose(sharpen(flat, 0.1), flat)  # a flat prediction stays flat, whatever T


def test_smoothed_labels_by_hand():
    y = smoothed_labels(torch.tensor([2, 0]), num_classes=4, smoothing=0.1)
    assert y[0].tolist() == pytest.approx([0.025, 0.025, 0.925, 0.025])  # 1 - 0.1 + 0.1/4 and 0.1/4
    assert y[1].tolist() == pytest.approx([0.925, 0.025, 0.025, 0.025])
    assert torch.allclose(y.sum(1), torch.ones(2))
    assert smoothed_labels(torch.tensor([1]), 3, 0.0).tolist() == [[0.0, 1.0, 0.0]]


def test_swap_views():
    x = torch.arange(6).view(6, 1)
    assert swap_views(x).flatten().tolist() == [3, 4, 5, 0, 1, 2]
    with pytest.raises(ValueError, match="even number of rows"):
        swap_views(torch.zeros(3, 2))


def test_paws_loss_by_hand_each_view_predicts_the_other_sharpened():
    tau, T = 0.5, 0.5
    z, zs, y = _toy()
    ce, me_max, probs, targets = paws_loss(z, zs, y, temperature=tau, T=T)
    views = VIEW1 + VIEW2
    other = VIEW2 + VIEW1  # row i's target comes from the other view of the same image
    p = [_snn_by_hand(q, SUPPORT, ONE_HOT, tau) for q in views]
    rho = [_sharpen_by_hand(_snn_by_hand(q, SUPPORT, ONE_HOT, tau), T) for q in other]
    for i in range(4):
        assert targets[i].tolist() == pytest.approx(rho[i], abs=1e-6), i
        assert probs[i].tolist() == pytest.approx(p[i], abs=1e-6), i
    assert ce.item() == pytest.approx(sum(_ce_by_hand(rho[i], p[i]) for i in range(4)) / 4, abs=1e-6)
    pbar = [sum(_sharpen_by_hand(p[i], T)[c] for i in range(4)) / 4 for c in range(2)]
    assert me_max.item() == pytest.approx(sum(v * math.log(v) for v in pbar), abs=1e-6)
    # ME-MAX is minus an entropy: negative, and at least -log C
    assert -math.log(2) <= me_max.item() < 0


def test_target_is_neither_the_same_view_nor_unsharpened():
    """The mistakes the official code warns about: the target must come from the *other* view and be sharpened."""
    z, zs, y = _toy()
    _, _, probs, targets = paws_loss(z, zs, y, temperature=0.5, T=0.25)
    same_view = sharpen(probs.detach(), 0.25)
    unsharpened = swap_views(probs.detach())
    assert not torch.allclose(targets, same_view, atol=1e-3)
    assert not torch.allclose(targets, unsharpened, atol=1e-3)
    assert torch.allclose(targets, sharpen(unsharpened, 0.25), atol=1e-6)


def test_me_max_uses_the_sharpened_anchor_predictions():
    _, zs, y = _toy()
    # views leaning to class 0, so that the mean prediction is not uniform
    z = torch.tensor([[0.9, 0.3], [0.8, 0.5], [0.6, 0.7], [0.95, 0.1]], requires_grad=True)
    _, me_max, probs, _ = paws_loss(z, zs, y, temperature=0.5, T=0.25)
    pbar_sharp = sharpen(probs.detach(), 0.25).mean(0)
    assert me_max.item() == pytest.approx(-entropy(pbar_sharp).item(), abs=1e-6)
    assert me_max.item() != pytest.approx(-entropy(probs.detach().mean(0)).item(), abs=1e-3)  # not unsharpened
    # with gradient (the mean of the *targets* would be the same numbers here, but a constant)
    assert me_max.requires_grad


def test_me_max_value_at_its_extremes():
    y = torch.eye(2)
    zs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # half of the views on class 0, half on class 1 (near one-hot): pbar uniform, ME-MAX = -log 2
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    _, me_max, _, _ = paws_loss(z, zs, y, temperature=0.01, T=0.25)
    assert me_max.item() == pytest.approx(-math.log(2), abs=1e-5)
    # every view on class 0: pbar one-hot, ME-MAX = 0 (its maximum: the term penalises this)
    z = torch.tensor([[1.0, 0.0]] * 4)
    _, me_max, _, _ = paws_loss(z, zs, y, temperature=0.01, T=0.25)
    assert me_max.item() == pytest.approx(0.0, abs=1e-5)


def test_small_target_entries_are_set_to_zero():
    y = torch.eye(2)
    zs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z = torch.tensor([[1.0, 0.05], [1.0, 0.3], [1.0, 0.3], [1.0, 0.05]])
    _, _, _, targets = paws_loss(z, zs, y, temperature=0.1, T=0.25)
    raw = sharpen(snn_probs(swap_views(z), zs, y, 0.1), 0.25)
    assert 0 < raw[0, 1] < 1e-4  # tiny but not zero before the floor ...
    assert targets[0, 1].item() == 0.0  # ... exactly zero after it
    assert targets[1, 1].item() == pytest.approx(raw[1, 1].item())  # larger entries are kept


def test_gradient_flows_into_anchors_and_supports_but_not_through_the_target():
    """The loss's gradient must equal that of CE(rho, p) with rho a *constant* (plus ME-MAX), and reach both the
    anchor views and the support embeddings."""
    tau, T = 0.5, 0.25
    z, zs, y = _toy(requires_grad=True)
    ce, me_max, _, _ = paws_loss(z, zs, y, tau, T)
    (ce + me_max).backward()
    # the reference: targets computed first, as constants
    z2, zs2, _ = _toy(requires_grad=True)
    with torch.no_grad():
        rho = sharpen(snn_probs(swap_views(z2), zs2, y, tau), T)
    p = snn_probs(z2, zs2, y, tau)
    pbar = sharpen(p, T).mean(0)
    (-(rho * torch.log(p)).sum(1).mean() + (pbar * torch.log(pbar)).sum()).backward()
    assert torch.allclose(z.grad, z2.grad, atol=1e-6)
    assert torch.allclose(zs.grad, zs2.grad, atol=1e-6)
    assert zs.grad.abs().sum() > 0 and z.grad.abs().sum() > 0
    # and it is not the gradient we would get if the target were differentiated too
    z3, zs3, _ = _toy(requires_grad=True)
    p3 = snn_probs(z3, zs3, y, tau)
    rho3 = sharpen(swap_views(p3), T)  # no stop-gradient: the mistake
    pbar3 = sharpen(p3, T).mean(0)
    (-(rho3 * torch.log(p3)).sum(1).mean() + (pbar3 * torch.log(pbar3)).sum()).backward()
    assert not torch.allclose(z.grad, z3.grad, atol=1e-4)


def test_ce_gradient_moves_a_view_towards_its_target():
    """One gradient step on CE alone makes each anchor's prediction closer to its (fixed) target."""
    z, zs, y = _toy(requires_grad=True)
    ce, _, _, targets = paws_loss(z, zs, y, 0.5, 0.25)
    ce.backward()
    with torch.no_grad():
        after = -(targets * torch.log(snn_probs(z - 0.05 * z.grad, zs - 0.05 * zs.grad, y, 0.5))).sum(1).mean()
    assert after < ce  # the same targets are matched better


def test_multicrop_targets_are_the_mean_of_the_two_large_views():
    torch.manual_seed(0)
    n, m = 3, 2
    z = torch.randn((2 + m) * n, 5)
    zs, y = torch.randn(6, 5), smoothed_labels(torch.tensor([0, 1, 2, 0, 1, 2]), 3, 0.1)
    _, _, probs, targets = paws_loss(z, zs, y, 0.3, 0.25, multicrop=m)
    rho = sharpen(snn_probs(swap_views(z[: 2 * n]), zs, y, 0.3), 0.25)
    mean = 0.5 * (rho[:n] + rho[n:])  # averaged before the 1e-4 floor, as in the official code
    rho[rho < 1e-4] = 0
    mean[mean < 1e-4] = 0
    assert torch.allclose(targets[: 2 * n], rho, atol=1e-6)
    for k in range(m):
        assert torch.allclose(targets[2 * n + k * n: 2 * n + (k + 1) * n], mean, atol=1e-6)
    assert probs.shape == ((2 + m) * n, 3)
    with pytest.raises(ValueError, match="4 views of each image"):
        paws_loss(z[:-1], zs, y, 0.3, 0.25, multicrop=m)


def test_entropy_and_embedding_spread_by_hand():
    assert entropy(torch.tensor([0.5, 0.5])).item() == pytest.approx(math.log(2))
    assert entropy(torch.tensor([1.0, 0.0])).item() == 0.0
    assert embedding_spread(torch.ones(5, 3)).item() == pytest.approx(0.0, abs=1e-7)  # one point: collapse
    # the 4 unit vectors of R^4: per-dimension std sqrt(1/4 - 1/16) = sqrt(3)/4; x sqrt(4) -> sqrt(3)/2
    assert embedding_spread(3.0 * torch.eye(4)).item() == pytest.approx(math.sqrt(3) / 2, abs=1e-6)


@pytest.mark.parametrize("call, match", [
    (lambda: snn_probs(torch.zeros(2, 3), torch.zeros(4, 2), torch.eye(4)), "must share D"),
    (lambda: snn_probs(torch.ones(2, 3), torch.ones(4, 3), torch.eye(3)), "one row per support"),
    (lambda: snn_probs(torch.ones(2, 3), torch.ones(4, 3), torch.eye(4), temperature=0.0),
     "sim_temperature must be a positive number"),
    (lambda: sharpen(torch.ones(1, 2) / 2, T=-1.0), "sharpen_temperature must be a positive number"),
    (lambda: smoothed_labels(torch.tensor([0]), 3, 1.0), r"label_smoothing must be in \[0, 1\)"),
])
def test_pure_functions_reject_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_random_resized_crop_keeps_shape_range_and_draws_per_image():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 8, 8).expand(6, 1, 8, 8).clone()
    c = random_resized_crop(x, scale=(0.3, 0.75))
    assert c.shape == x.shape and c.min() >= 0 and c.max() <= 1
    assert len({tuple(v.flatten().tolist()) for v in c}) == 6
    # a crop of the whole image is the image itself
    assert torch.allclose(random_resized_crop(x, scale=(1.0, 1.0), ratio=(1.0, 1.0)), x, atol=1e-5)


# ----------------------------------------------------------------------------- the method: setup and step
class TinyNet(nn.Module):
    """A linear body with a tanh and a linear classifier: ``(logits, features)``, with ``feature_dim``."""

    def __init__(self, in_dim=64, d=6, num_classes=10):
        super().__init__()
        self.body = nn.Linear(in_dim, d)
        self.head = nn.Linear(d, num_classes)
        self.feature_dim = d

    def forward(self, x):
        h = torch.tanh(self.body(x.flatten(1)))
        return self.head(h), h


class OffsetAug(Augmenter):
    """Deterministic, distinct views: call k returns ``x + 0.01 k`` (weak) or ``x - 0.01 k`` (strong)."""

    def __init__(self):
        super().__init__("image")
        self.calls = []

    def weak(self, x):
        self.calls.append("weak")
        return x + 0.01 * len(self.calls)

    def strong(self, x):
        self.calls.append("strong")
        return x - 0.01 * len(self.calls)


def _setup(digits, labels_per_class=3, n_ulb=5, aug=None, seed=0, net=None, **options):
    torch.manual_seed(seed)
    split = balanced_split(digits, labels_per_class, seed=seed)
    net = net or TinyNet()
    ctx = Context(aug or for_dataset(digits), 0, 10, torch.device("cpu"), digits.num_classes, len(split.y_ulb))
    method = get_method("paws", **options)
    method.setup(net, split, ctx)
    idx = torch.randperm(len(split.y_ulb))[:n_ulb]
    batch = Batch(to_float(split.x_lb[:4]), split.y_lb[:4], to_float(split.x_ulb[idx]), split.y_ulb[idx], idx)
    return method, net, batch, ctx, split


def test_setup_builds_the_head_and_one_constant_label_matrix(digits):
    method, net, *_ = _setup(digits, support_per_class=2, label_smoothing=0.2, proj_dim=16)
    head = method.head
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert head[0].in_features == net.feature_dim and head[-1].out_features == 16
    assert method.extra_parameters() and all(p.requires_grad for p in method.extra_parameters())
    y = method.support_labels
    assert y.shape == (2 * 2 * 10, 10)  # support_per_class x views x classes
    assert y.argmax(1).tolist() == list(range(10)) * 4  # a, b, c, ... repeated
    assert y.max().item() == pytest.approx(1 - 0.2 + 0.02) and y.min().item() == pytest.approx(0.02)


def test_support_batch_is_class_balanced_in_class_order(digits):
    method, *_ = _setup(digits, labels_per_class=3, support_per_class=2)
    torch.manual_seed(1)
    idx = method.sample_support()
    y = method.y_labeled[idx]
    assert y.tolist() == list(range(10)) * 2
    assert len(set(idx.tolist())) == 20  # without replacement within a class
    draws = {tuple(method.sample_support().tolist()) for _ in range(5)}
    assert len(draws) > 1  # a new draw each step (3 labeled images per class, 2 used)


def test_support_with_more_slots_than_labeled_images_holds_all_of_them(digits):
    method, *_ = _setup(digits, labels_per_class=2, support_per_class=3)
    idx = method.sample_support()
    assert method.y_labeled[idx].tolist() == list(range(10)) * 3
    assert set(idx.tolist()) == set(range(20))  # every labeled image is in the support


def test_setup_refuses_a_class_without_labeled_images(digits):
    split = balanced_split(digits, 1, seed=0)
    keep = split.y_lb != 3
    split.x_lb, split.y_lb = split.x_lb[keep], split.y_lb[keep]
    ctx = Context(for_dataset(digits), 0, 10, torch.device("cpu"), 10, len(split.y_ulb))
    with pytest.raises(ValueError, match=r"classes \[3\] have no labeled image"):
        PAWS().setup(TinyNet(), split, ctx)


def _expected_step_loss(method, net, batch, idx_s, me_max_weight, tau, T, smoothing, multicrop):
    """The step's loss recomputed from scratch with Python loops over images. OffsetAug's views, in call order:
    support view 1, support view 2, unlabeled view 1, unlabeled view 2 (weak: + 0.01 k), then the extra views
    (strong: - 0.01 k)."""
    x_s = method.x_labeled[idx_s]
    y_s = method.y_labeled[idx_s]
    x_u = batch.x_ulb
    extra = [x_u - 0.01 * (5 + e) for e in range(multicrop)]
    _, feats = net(torch.cat([x_s + 0.01, x_s + 0.02, x_u + 0.03, x_u + 0.04] + extra))
    z = nn.functional.normalize(method.head(feats), dim=1)
    k, n = len(x_s), len(x_u)
    zs = z[: 2 * k]
    zu = [z[2 * k + v * n: 2 * k + (v + 1) * n] for v in range(2 + multicrop)]  # one block per view
    labels = torch.full((2 * k, 10), smoothing / 10)
    for j, c in enumerate(y_s.repeat(2).tolist()):
        labels[j, c] = 1 - smoothing + smoothing / 10

    def predict(q):
        w = torch.softmax(zs @ q / tau, dim=0)
        return (w[:, None] * labels).sum(0)

    def sharp(p):
        s = p ** (1 / T)
        return s / s.sum()

    terms, sharpened = [], []
    for i in range(n):
        with torch.no_grad():
            t1, t2 = sharp(predict(zu[1][i])), sharp(predict(zu[0][i]))  # view 1 learns view 2's, and back
            t_extra = 0.5 * (t1 + t2)
        for v in range(2 + multicrop):
            t = (t1 if v == 0 else t2 if v == 1 else t_extra).clone()
            t[t < 1e-4] = 0
            p = predict(zu[v][i])
            terms.append(-(t * torch.log(p)).sum())
            sharpened.append(sharp(p))
    ce = torch.stack(terms).mean()
    pbar = torch.stack(sharpened).mean(0)
    me_max = (pbar * torch.log(pbar)).sum()
    probe = nn.functional.cross_entropy(net.head(feats[: 2 * k].detach()), y_s.repeat(2))
    return ce, me_max, probe, ce + me_max_weight * me_max + probe


@pytest.mark.parametrize("multicrop", [0, 2])
def test_one_step_recomputed_independently(digits, multicrop):
    opts = dict(support_per_class=2, sim_temperature=0.3, sharpen_temperature=0.4, me_max_weight=0.7,
                label_smoothing=0.2, multicrop=multicrop, multicrop_aug="strong", proj_dim=8)
    aug = OffsetAug()
    method, net, batch, ctx, _ = _setup(digits, labels_per_class=3, aug=aug, **opts)
    torch.manual_seed(5)
    idx_s = method.sample_support()
    torch.manual_seed(5)  # the step draws the same support
    loss, logs = method.step(net, batch, ctx)
    assert aug.calls == ["weak"] * 4 + ["strong"] * multicrop  # 2 support views, 2 unlabeled views, extra views
    ce, me_max, probe, total = _expected_step_loss(method, net, batch, idx_s, 0.7, 0.3, 0.4, 0.2, multicrop)
    assert logs["loss_u"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert logs["me_max"].item() == pytest.approx(me_max.item(), rel=1e-5)
    assert logs["loss_probe"].item() == pytest.approx(probe.item(), rel=1e-5)
    assert loss.item() == pytest.approx(total.item(), rel=1e-5)
    assert set(logs) >= {"loss_u", "me_max", "ent_mean_pred", "ent_pred", "emb_spread", "pseudo_acc", "loss_probe"}


def test_step_views_and_multicrop_augmentations(digits):
    aug = OffsetAug()
    method, net, batch, ctx, _ = _setup(digits, aug=aug, multicrop=3, multicrop_aug="strong", view_aug="weak")
    method.step(net, batch, ctx)
    assert aug.calls == ["weak", "weak", "weak", "weak", "strong", "strong", "strong"]
    aug.calls.clear()
    method, net, batch, ctx, _ = _setup(digits, aug=aug, multicrop=0, view_aug="strong")
    method.step(net, batch, ctx)
    assert aug.calls == ["strong"] * 4  # the support views use the same augmentation as the unlabeled ones


def test_probe_never_reaches_the_encoder_and_paws_never_reaches_the_probe(digits):
    method, net, batch, ctx, _ = _setup(digits, multicrop=1, seed=3)
    torch.manual_seed(7)
    loss, logs = method.step(net, batch, ctx)
    loss.backward()
    g_body = net.body.weight.grad.clone()
    g_probe = net.head.weight.grad.clone()
    g_head = [p.grad.clone() for p in method.head.parameters()]
    # the same step with the probe switched off (a classifier that is not an nn.Linear is left alone)
    net.zero_grad(), method.head.zero_grad()
    probe = net.head
    net.head = nn.Sequential(probe)
    torch.manual_seed(7)
    loss2, logs2 = method.step(net, batch, ctx)
    loss2.backward()
    assert "loss_probe" not in logs2
    assert torch.allclose(net.body.weight.grad, g_body, atol=1e-7)  # the probe adds nothing to the encoder ...
    for a, p in zip(g_head, method.head.parameters()):
        assert torch.allclose(p.grad, a, atol=1e-7)  # ... nor to the projection head
    assert probe.weight.grad is None  # and PAWS's own terms never touch the classifier
    assert g_probe.abs().sum() > 0 and g_body.abs().sum() > 0
    assert loss.item() == pytest.approx(loss2.item() + logs["loss_probe"].item(), rel=1e-6)


def test_step_logs_pseudo_label_accuracy_against_the_hidden_labels(digits):
    method, net, batch, ctx, _ = _setup(digits, n_ulb=6)
    _, logs = method.step(net, batch, ctx)
    assert 0.0 <= logs["pseudo_acc"].item() <= 1.0
    assert 0.0 <= logs["ent_pred"].item() <= LOG10 + 1e-5 and 0.0 <= logs["ent_mean_pred"].item() <= LOG10 + 1e-5
    batch.y_ulb = None
    _, logs = method.step(net, batch, ctx)
    assert "pseudo_acc" not in logs


def test_step_before_setup_raises(digits):
    batch = Batch(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), torch.zeros(2, 1, 8, 8))
    with pytest.raises(RuntimeError, match="setup"):
        PAWS().step(TinyNet(), batch, None)


# ----------------------------------------------------------------------------- evaluation: soft nearest neighbours
def test_soft_nn_classifier_votes_with_every_labeled_image(digits):
    method, net, _, _, split = _setup(digits, labels_per_class=2, proj_dim=8)
    snn = method.eval_models()["snn"]
    assert isinstance(snn, SoftNNClassifier) and method.report == "snn"
    x = to_float(split.x_test[:7])
    snn.eval()
    with torch.no_grad():
        log_p, z = snn(x)
        method.head.eval()
        zq = method.head(net(x)[1])
        zl = method.head(net(to_float(split.x_lb))[1])
    want = snn_probs(zq, zl, nn.functional.one_hot(split.y_lb, 10).float(), method.config.sim_temperature)
    assert torch.allclose(log_p.exp(), want, atol=1e-5)  # one-hot labels (no smoothing) and all 20 labeled images
    assert torch.allclose(z.norm(dim=1), torch.ones(7), atol=1e-5)
    # on pixels (an identity network), a labeled image is its own nearest neighbour: with a tiny temperature it
    # gets its own label
    sharp = SoftNNClassifier(PixelNet(), nn.Identity(), method.x_labeled, method.y_labeled, 10, 1e-3).eval()
    with torch.no_grad():
        pred = sharp(method.x_labeled)[0].argmax(1)
    assert torch.equal(pred, method.y_labeled)


class PixelNet(nn.Module):
    def forward(self, x):
        return x.flatten(1), x.flatten(1)


def test_training_reports_soft_nn_and_the_cache_restores_the_head(tmp_path):
    opts = dict(steps=6, eval_every=3, progress=False, seed=1, multicrop=1, proj_dim=16)
    r1 = train("paws", "digits", labels_per_class=2, cache=tmp_path, **opts)
    assert r1.extra["report"] == "test_acc_snn" and not r1.from_cache
    rec = r1.history.records[-1]
    assert {"test_acc", "test_acc_ema", "test_acc_snn"} <= set(rec)
    assert rec["test_acc_snn"] == r1.test_accuracy
    r2 = train("paws", "digits", labels_per_class=2, cache=tmp_path, **opts)
    assert r2.from_cache and r2.test_accuracy == r1.test_accuracy
    assert all(torch.equal(a, b) for a, b in zip(r1.method_obj.head.state_dict().values(),
                                                   r2.method_obj.head.state_dict().values()))
    from sslteach.data import load_dataset
    from sslteach.evaluation import evaluate

    ds = load_dataset("digits")
    split = balanced_split(ds, 2, seed=1)
    acc = evaluate(r2.report_model(), split.x_test, split.y_test)
    assert acc == pytest.approx(r1.test_accuracy, abs=1e-6)


def test_paws_runs_on_two_moons():
    r = train("paws", "two_moons", labels_per_class=2, steps=4, eval_every=2, progress=False, cache=False,
              multicrop=1)
    assert 0.0 <= r.test_accuracy <= 1.0
    with pytest.raises(ValueError, match="needs images"):
        train("paws", "two_moons", labels_per_class=2, steps=2, progress=False, cache=False, view_aug="crop")


# ----------------------------------------------------------------------------- configuration, CLI, panel
def test_defaults_follow_the_official_code_where_they_can():
    cfg = PAWSConfig()
    assert (cfg.sim_temperature, cfg.sharpen_temperature, cfg.me_max_weight, cfg.label_smoothing) == (0.1, 0.25,
                                                                                                     1.0, 0.1)
    assert cfg.proj_dim == 128 and PAWS.SUPPORT_VIEWS == 2
    from dataclasses import fields

    paper = {f.name: f.metadata.get("paper") for f in fields(PAWSConfig)}
    assert paper["multicrop"] == 6 and paper["support_per_class"] == 64  # CPU-scaled, the paper's values recorded


@pytest.mark.parametrize("option, value, pattern", [
    ("sharpen_temperature", 0.0, r"sharpen_temperature must be in \[0.05, 1(\.0)?\]"),
    ("sharpen_temperature", 1.5, r"sharpen_temperature must be in \[0.05, 1(\.0)?\]"),
    ("sim_temperature", 0.0, r"sim_temperature must be in \[0.01, 1(\.0)?\]"),
    ("me_max_weight", -0.1, r"me_max_weight must be in \[0(\.0)?, 5(\.0)?\]"),
    ("support_per_class", 0, r"support_per_class must be in \[1, 64\]"),
    ("multicrop", 9, r"multicrop must be in \[0, 8\]"),
    ("view_aug", "huge", r"view_aug"),
    ("tau", 0.1, r"unknown option.*sim_temperature"),
])
def test_bad_config_raises_a_clear_error(option, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        PAWS(**{option: value})


def test_command_line_trains_paws_with_its_knobs(tmp_path, capsys):
    from sslteach.cli import main

    out = tmp_path / "run.json"
    rc = main(["train", "paws", "--dataset", "digits", "--labels-per-class", "2", "--sim-temperature", "0.2",
               "--sharpen-temperature", "0.5", "--me-max-weight", "0.5", "--support-per-class", "2",
               "--multicrop", "1", "--steps", "4", "--eval-every", "2", "--no-progress", "--no-cache",
               "--out", str(out)])
    assert rc == 0
    assert "paws on digits (2 labels/class, seed 0): test accuracy" in capsys.readouterr().out
    data = json.loads(out.read_text())
    cfg = data["method_config"]
    assert (cfg["sim_temperature"], cfg["sharpen_temperature"], cfg["me_max_weight"], cfg["support_per_class"],
            cfg["multicrop"]) == (0.2, 0.5, 0.5, 2, 1)
    assert any("me_max" in r and "ent_mean_pred" in r for r in data["history"])
    assert "paws" in METHODS


def test_panel_has_sliders_for_the_knobs_and_draws_the_collapse_diagnostics():
    from sslteach import widgets

    panel = widgets.TrainingPanel(["paws", "supervised"], steps=10)
    for knob in ("sim_temperature", "sharpen_temperature", "me_max_weight", "support_per_class"):
        assert knob in panel.knobs
    assert {"me_max", "ent_mean_pred", "ent_pred", "emb_spread"} <= set(widgets.DIAGNOSTICS)
    r = panel.run(steps=4, eval_every=2, multicrop=0)
    names = {t.name for t in panel.plot.fig.data}
    assert {"me_max", "ent_mean_pred", "ent_pred"} <= names
    assert r.method == "paws"


# ----------------------------------------------------------------------------- the claims (slow)
# ----------------------------------------------------------------------------- notebook 05
@pytest.mark.notebook
def test_notebook_05_results(notebook_results):
    res = notebook_results("05_paws")
    chance = 1 / res["num_classes"]
    for key in ("supervised_accuracy", "paws_accuracy", "paws_probe_accuracy"):
        assert math.isfinite(res[key]) and chance < res[key] <= 1, key
    for key in ("paws_seconds", "supervised_seconds", "notebook_seconds"):
        assert math.isfinite(res[key]) and res[key] > 0, key
    toy = res["toy"]
    assert toy["me_max"] < 0 and toy["ce"] > 0
    abl = res["ablation"]
    for arm in ("paws", "no_sharpening", "no_me_max", "supervised"):
        assert len(abl[arm]) == len(abl["seeds"]) >= 1, arm
        assert all(0 <= v <= 1 for v in abl[arm])
    for arm in ("paws", "no_sharpening", "no_me_max"):
        d = abl["diagnostics"][arm]
        assert all(0 <= v <= LOG10 + 1e-4 for v in d["ent_pred"] + d["ent_mean_pred"]), arm
        assert all(0 <= v <= 1 + 1e-6 for v in d["emb_spread"]), arm
    assert res["exercises_solved"]["snn"] in (True, False)
