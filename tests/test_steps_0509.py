"""Step tests for the methods of notebooks 05-09 (PAWS, SWWAE, inversion, CoSSL, OpenMatch) that a plausible
wiring bug cannot pass (issue 25).

Each test runs the method's real ``step`` on a tiny network that has BatchNorm wherever the method's default network
has it (:class:`steptools.BNRecordingNet`, or the method's own network), and checks against values computed in the
test from what the network received:

* **gradient paths**: the gradient of the step's loss on every parameter (autograd through the step) against the
  gradient of a loss rebuilt by hand, so a detached embedding or feature map, a stop-gradient on one side of a
  consistency term, or a target left with its gradient changes a number;
* **batch composition**: the exact images of every pass (count, origin, class balance, labeled set vs pool),
  read back from tagged views (:class:`steptools.TaggedAug`) with shuffled positions;
* **BatchNorm mode**: the mode, gradient mode and running statistics of every pass, auxiliary ones included;
* **temperatures, weights, thresholds** strictly between trivial values (never 0, 1 or a default);
* **diagnostics**: every logged number against a hand computation, with labels that tell a misaligned lookup apart.

The bug each test guards against, checked by breaking the code on purpose, is named in its docstring.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sslteach.data import Split, balanced_split, make_split, to_float
from sslteach.methods.cossl import CoSSL, tfe_probabilities
from sslteach.methods.inversion import Inversion, InversionCNN
from sslteach.methods.openmatch import OpenMatch, OpenSetNet
from sslteach.methods.paws import PAWS
from sslteach.methods.swwae import SWWAE, SWWAENet
from sslteach.train import Batch, Context

from steptools import (BNRecordingNet, TaggedAug, assert_same_grads, bn_running_after, grads, rows_in, untag)

CPU = torch.device("cpu")


def _entropy(p):
    return -(p * torch.log(p.clamp_min(1e-30))).sum(-1)


def _seq_by_hand(seq: nn.Sequential, x):
    """An ``nn.Sequential`` of Linear / BatchNorm1d / ReLU applied from its weights, BatchNorm with the batch's own
    statistics (training mode), whatever mode the module is in."""
    for m in seq:
        if isinstance(m, nn.Linear):
            x = x @ m.weight.T + m.bias
        elif isinstance(m, nn.BatchNorm1d):
            x = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + m.eps) * m.weight + m.bias
        elif isinstance(m, nn.ReLU):
            x = x.clamp_min(0)
        else:
            raise TypeError(type(m))
    return x


# ============================================================================= PAWS
PAWS_OPTS = dict(support_per_class=2, sim_temperature=0.3, sharpen_temperature=0.4, me_max_weight=0.7,
                 label_smoothing=0.2, multicrop=2, multicrop_aug="strong", view_aug="weak", proj_dim=6)


def _paws(digits, n_ulb=6, seed=0, **options):
    torch.manual_seed(seed)
    split = balanced_split(digits, 3, seed=seed)
    net = BNRecordingNet(d=8)
    aug = TaggedAug()
    ctx = Context(aug, 3, 10, CPU, 10, len(split.y_ulb))
    method = PAWS(**{**PAWS_OPTS, **options})
    method.setup(net, split, ctx)
    g = torch.Generator().manual_seed(seed + 1)
    idx = torch.randperm(len(split.y_ulb), generator=g)[:n_ulb]
    batch = Batch(to_float(split.x_lb[:4]), split.y_lb[:4], to_float(split.x_ulb[idx]), split.y_ulb[idx], idx)
    return method, net, batch, ctx, split


def _paws_by_hand(method, net, X, y_support, n, cfg, detach_support=False):
    """PAWS's loss rebuilt from the images the network received, ``X = [support views | unlabeled views]``, and the
    support labels *read from the support images themselves*."""
    C = 10
    n_s = len(y_support)
    feats = net.features_by_hand(X, train=True)
    z = _seq_by_hand(method.head, feats)
    zs, zu = z[:n_s], z[n_s:]
    if detach_support:
        zs = zs.detach()
    s = cfg.label_smoothing
    labels = torch.full((n_s, C), s / C)
    labels[torch.arange(n_s), y_support] = 1 - s + s / C
    tau, T = cfg.sim_temperature, cfg.sharpen_temperature

    def predict(q, support):
        sim = F.normalize(q, dim=1) @ F.normalize(support, dim=1).T
        return torch.softmax(sim / tau, dim=1) @ labels

    def sharpen(p):
        p = p ** (1 / T)
        return p / p.sum(1, keepdim=True)

    probs = predict(zu, zs)
    with torch.no_grad():
        v1, v2 = zu[:n].detach(), zu[n: 2 * n].detach()
        t1, t2 = sharpen(predict(v2, zs.detach())), sharpen(predict(v1, zs.detach()))  # each view <- the other
        targets = torch.cat([t1, t2] + [(t1 + t2) / 2] * cfg.multicrop)
        targets[targets < 1e-4] = 0
    ce = -(targets * torch.log(probs)).sum(1).mean()
    pbar = sharpen(probs).mean(0)
    me = (pbar * torch.log(pbar)).sum()
    probe = F.cross_entropy(feats[:n_s].detach() @ net.head.weight.T + net.head.bias, y_support)
    return {"ce": ce, "me": me, "probe": probe, "total": ce + cfg.me_max_weight * me + probe, "probs": probs,
            "targets": targets, "z_views": zu}


def _paws_support_labels(method, aug):
    """The labels of the support images, read from the first two views TaggedAug handed out."""
    kinds = [k for k, _ in aug.views]
    assert kinds[:2] == ["weak", "weak"]
    x1, x2 = untag("weak", 1, aug.views[0][1]), untag("weak", 2, aug.views[1][1])
    assert torch.allclose(x1, x2, atol=1e-6)  # the two support views are views of the same images, in order
    pos = rows_in(x1, method.x_labeled)
    assert (pos >= 0).all(), "a support image is not a labeled image"
    return pos, method.y_labeled[pos].repeat(2)  # view 1 of every support image, then view 2


def test_paws_step_one_train_mode_pass_over_a_class_balanced_support_and_every_view(digits):
    """Bugs guarded: a support batch that is not class-balanced or not in the order of the constant label matrix
    ([a, b, c, ..., a, b, c, ...]), drawn from the unlabeled set or not redrawn each step; too few or too many views
    (support views, the two large views, the extra views); support and unlabeled views in separate passes (BatchNorm
    then normalises them apart; the official code uses one)."""
    method, net, batch, ctx, split = _paws(digits)
    aug, n, K = ctx.aug, len(batch.x_ulb), 2 * 10
    _, logs = method.step(net, batch, ctx)
    assert len(net.calls) == 1, "support and unlabeled views must go through the network in one pass"
    call = net.calls[0]
    assert call.training and call.grad
    assert [k for k, _ in aug.views] == ["weak"] * 4 + ["strong"] * 2
    assert torch.equal(call.x, torch.cat([v for _, v in aug.views]))
    assert len(call.x) == 2 * K + (2 + 2) * n
    pos, y_s = _paws_support_labels(method, aug)
    assert y_s.tolist() == list(range(10)) * 4, "support not class-balanced in the label matrix's order"
    assert torch.equal(y_s, method.support_labels.argmax(1))
    assert len(set(pos.tolist())) == K  # no image twice (3 labeled images per class, 2 drawn)
    assert (rows_in(untag("weak", 1, aug.views[0][1]), to_float(split.x_ulb)) < 0).all()
    for k, (kind, v) in enumerate(aug.views[2:], start=3):  # the unlabeled views, each of the whole batch in order
        j = k if kind == "weak" else k - 4
        assert torch.allclose(untag(kind, j, v), batch.x_ulb, atol=1e-5), (kind, j)
    # BatchNorm saw the joint batch once: its running statistics moved by one update with that batch's statistics
    h = call.x.flatten(1) @ net.body.weight.T + net.body.bias
    mean, var = bn_running_after(call.running, h.detach())
    assert torch.allclose(net.bn.running_mean, mean, atol=1e-6) and torch.allclose(net.bn.running_var, var, atol=1e-5)
    # a new support is drawn at the next step
    aug.views.clear(), aug.calls.update(weak=0, strong=0)
    method.step(net, batch, ctx)
    pos2, y_s2 = _paws_support_labels(method, aug)
    assert y_s2.tolist() == list(range(10)) * 4 and not torch.equal(pos, pos2)


def test_paws_step_loss_and_gradients_match_an_independent_computation(digits):
    """Bugs guarded: support embeddings detached in the step (they must learn through the anchors' predictions),
    the probe reading features with their gradient (it must never reach the encoder) or with labels in the wrong
    order (repeat vs repeat_interleave over the two support views), a temperature dropped in one of its places
    (anchors, targets, ME-MAX's sharpening), the ME-MAX weight, the target view (each large view learns the
    *other* one). The gradient on every parameter of the encoder, the projection head and the probe must be that of
    the loss rebuilt by hand."""
    method, net, batch, ctx, _ = _paws(digits, seed=1)
    loss, logs = method.step(net, batch, ctx)
    X = net.calls[0].x
    _, y_s = _paws_support_labels(method, ctx.aug)
    want = _paws_by_hand(method, net, X, y_s, len(batch.x_ulb), method.config)
    assert loss.item() == pytest.approx(want["total"].item(), rel=1e-5)
    assert logs["loss_u"].item() == pytest.approx(want["ce"].item(), rel=1e-5)
    assert logs["me_max"].item() == pytest.approx(want["me"].item(), rel=1e-5)
    assert logs["loss_probe"].item() == pytest.approx(want["probe"].item(), rel=1e-5)
    names = [n for n, _ in net.named_parameters()] + [f"proj.{n}" for n, _ in method.head.named_parameters()]
    params = list(net.parameters()) + list(method.head.parameters())
    assert_same_grads(grads(loss, params), grads(want["total"], params), names)
    # the test can tell: support detached gives other encoder gradients
    cut = _paws_by_hand(method, net, X, y_s, len(batch.x_ulb), method.config, detach_support=True)
    assert not torch.allclose(grads(cut["total"], [net.body.weight])[0], grads(want["total"], [net.body.weight])[0],
                              rtol=1e-3)


def test_paws_step_logs_its_diagnostics_by_hand_with_each_views_own_label(digits):
    """Bugs guarded: ``pseudo_acc`` computed against labels repeated in the wrong order (``repeat_interleave`` where
    the views are stacked view by view), the entropies or the embedding spread over the wrong rows. The hidden
    labels are chosen so that the right and the misaligned lookups give different numbers."""
    method, net, batch, ctx, _ = _paws(digits, seed=2)
    torch.manual_seed(7)
    method.step(net, batch, ctx)
    X = net.calls[0].x
    _, y_s = _paws_support_labels(method, ctx.aug)
    n, V = len(batch.x_ulb), 4
    want = _paws_by_hand(method, net, X, y_s, n, method.config)
    top = want["targets"].argmax(1)
    batch.y_ulb = top[:n].clone()  # each image's "true" label: the top class of its first view's target
    right = (top == batch.y_ulb.repeat(V)).float().mean().item()
    wrong = (top == batch.y_ulb.repeat_interleave(V)).float().mean().item()
    assert abs(right - wrong) > 1e-3  # the two alignments differ here
    ctx.aug.views.clear(), ctx.aug.calls.update(weak=0, strong=0)
    net.calls.clear()
    torch.manual_seed(7)  # the same support again
    _, logs = method.step(net, batch, ctx)
    assert torch.equal(net.calls[0].x, X)
    assert logs["pseudo_acc"].item() == pytest.approx(right)
    p = want["probs"]
    assert logs["ent_mean_pred"].item() == pytest.approx(_entropy(p.mean(0)).item(), rel=1e-5)
    assert logs["ent_pred"].item() == pytest.approx(_entropy(p).mean().item(), rel=1e-5)
    u = F.normalize(want["z_views"], dim=1)
    spread = u.std(0, unbiased=False).mean() * math.sqrt(u.shape[1])
    assert logs["emb_spread"].item() == pytest.approx(spread.item(), rel=1e-5)


def test_paws_soft_nn_evaluation_uses_the_similarity_temperature(digits):
    """Bug guarded: the evaluation model (soft nearest neighbours over every labeled image) built without the
    configured temperature — the second place the temperature lives, which training never exercises."""
    method, net, batch, ctx, split = _paws(digits, sim_temperature=0.3)
    snn = method.eval_models()["snn"]
    net.eval(), method.head.eval()
    x = to_float(split.x_test[:6])
    with torch.no_grad():
        logp, _ = snn(x)

        def embed(v):
            return method.head(net(v)[1])

        sim = F.normalize(embed(x), dim=1) @ F.normalize(embed(to_float(split.x_lb)), dim=1).T
        want = torch.softmax(sim / 0.3, dim=1) @ F.one_hot(split.y_lb, 10).float()
        other = torch.softmax(sim / 0.1, dim=1) @ F.one_hot(split.y_lb, 10).float()
    assert torch.allclose(logp.exp(), want, atol=1e-5)
    assert not torch.allclose(want, other, atol=1e-3)


# ============================================================================= SWWAE
def _swwae(digits, b=4, mu=3, seed=0, **options):
    torch.manual_seed(seed)
    net = SWWAENet(1, 10, pool_layers=2, width=4)  # the method's own network: conv-BN-ReLU stages, BatchNorm decoder
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(300, generator=g)
    x, y = to_float(digits.x_train), digits.y_train
    i_lb, i_ulb = perm[:b], perm[b: b + mu * b]
    batch = Batch(x[i_lb], y[i_lb], x[i_ulb], y[i_ulb], idx_ulb=i_ulb)
    ctx = Context(TaggedAug(), 0, 10, CPU, 10, 300)
    method = SWWAE(mu=mu, **{"lambda_rec": 0.7, "lambda_m": 0.3, **options})
    return method, net, batch, ctx


def _swwae_by_hand(net, x, n_lb, y_lb, detach_encoder_maps=False):
    """SWWAE's terms rebuilt from the network's layers (training-mode BatchNorm, one pass over ``x``): max pooling
    with positions, the decoder unpooling at those positions, each middle term pairing a pooled map x_l with the
    decoder map of the same shape, every squared norm a mean."""
    whats, wheres, sizes = [], [], []
    h = x
    for block in net.enc:
        h = block(h)
        sizes.append(h.shape[-2:])
        h, where = F.max_pool2d(h, 2, return_indices=True)
        whats.append(h)
        wheres.append(where)
    z = net.enc_top(h)
    logits = net.head(z.mean(dim=(2, 3)))
    d = net.dec_top(z)
    pairs = [(whats[-1], d)]
    for layer in range(len(net.enc), 0, -1):
        d = net.dec[layer - 1](F.max_unpool2d(d, wheres[layer - 1], 2, output_size=sizes[layer - 1]))
        if layer > 1:
            pairs.append((whats[layer - 2], d))
    nll = F.cross_entropy(logits[:n_lb], y_lb)
    rec = ((d - x) ** 2).mean()
    mid = sum((((e.detach() if detach_encoder_maps else e) - dm) ** 2).mean() for e, dm in pairs)
    return nll, rec, mid


def test_swwae_step_one_train_mode_pass_over_the_labeled_and_every_unlabeled_view(digits):
    """Bugs guarded: too few unlabeled images in the reconstruction terms (B where mu B is meant, or none), the raw
    images instead of the views, the labeled images reconstructed twice or classified apart (a second pass: BatchNorm
    then sees another batch), the decoder skipped or run twice."""
    method, net, batch, ctx = _swwae(digits)
    seen, dec = [], []
    net.enc[0].register_forward_pre_hook(lambda m, inp: seen.append((inp[0].detach().clone(), m.training)))
    net.dec_top.register_forward_pre_hook(lambda m, inp: dec.append(m.training))
    method.step(net, batch, ctx)
    assert len(seen) == 1 and seen[0][1], "one training-mode encoder pass"
    assert dec == [True]
    x = seen[0][0]
    assert len(x) == len(batch.x_lb) + len(batch.x_ulb) == 16
    assert [k for k, _ in ctx.aug.views] == ["weak", "weak"]
    assert torch.allclose(untag("weak", 1, x[:4]), batch.x_lb, atol=1e-6)
    assert torch.allclose(untag("weak", 2, x[4:]), batch.x_ulb, atol=1e-6)


def test_swwae_step_terms_and_gradients_match_an_independent_computation(digits):
    """Bugs guarded: the encoder's pooled maps detached in the middle terms (or the decoder's), the NLL over the
    unlabeled rows, a weight dropped or swapped (lambda_rec = 0.7, lambda_M = 0.3, neither 0 nor 1), BatchNorm in
    the wrong mode or fed twice (its running statistics must move by exactly one training-mode pass over the joint
    batch), a log that is not its term. The gradient on every weight of the encoder, the classifier and the decoder
    must be that of the loss rebuilt by hand."""
    method, net, batch, ctx = _swwae(digits, seed=1)
    ref = copy.deepcopy(net)
    loss, logs = method.step(net, batch, ctx)
    x = torch.cat([v for _, v in ctx.aug.views])
    nll, rec, mid = _swwae_by_hand(ref, x, len(batch.x_lb), batch.y_lb)
    want = nll + 0.7 * rec + 0.3 * mid
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    for key, v in (("loss_x", nll), ("loss_rec", rec), ("loss_mid", mid), ("loss_u", 0.7 * rec + 0.3 * mid)):
        assert logs[key].item() == pytest.approx(v.item(), rel=1e-5), key
    names = [n for n, _ in net.named_parameters()]
    assert_same_grads(grads(loss, net.parameters()), grads(want, ref.parameters()), names)
    for (n, b_got), b_want in zip(net.named_buffers(), ref.buffers()):
        assert torch.allclose(b_got.float(), b_want.float(), atol=1e-6), f"BatchNorm buffer {n}"
    # the test can tell: the encoder maps detached in the middle terms give another encoder gradient
    ref = copy.deepcopy(net)
    _, _, mid_cut = _swwae_by_hand(ref, x, len(batch.x_lb), batch.y_lb, detach_encoder_maps=True)
    _, _, mid_ok = _swwae_by_hand(ref, x, len(batch.x_lb), batch.y_lb)
    w = [ref.enc[0][0].weight]
    assert not torch.allclose(grads(mid_cut, w)[0], grads(mid_ok, w)[0], rtol=1e-3)


# ============================================================================= inversion
def _inversion(digits, b=4, mu=2, seed=0, **options):
    from types import SimpleNamespace

    torch.manual_seed(seed)
    method = Inversion(mu=mu, **{"mode": "multiscale", "entropy_scale": 0.5, "recon_scale": 2.0, **options})
    # the method's own default network (the test must see BatchNorm if the method's network had it; it has none)
    net = method.build_model((1, 8, 8), 10, SimpleNamespace(model="auto", width=3, dropout=0.0))
    assert isinstance(net, InversionCNN)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(300, generator=g)
    x, y = to_float(digits.x_train), digits.y_train
    i_lb, i_ulb = perm[:b], perm[b: b + mu * b]
    batch = Batch(x[i_lb], y[i_lb], x[i_ulb], y[i_ulb], idx_ulb=i_ulb)
    ctx = Context(TaggedAug(), 0, 10, CPU, 10, 300)
    return method, net, batch, ctx


def _inversion_by_hand(net, x, n_lb, y_lb, cfg):
    """The inversion loss rebuilt image by image (each image alone through the network, so nothing can mix the
    images of a batch): the template of the predicted class at the input of every layer by a differentiable
    backward pass, R^(l) the mean over images of the summed squared error, weights 1, entropy_scale / log C and
    recon_scale / (L D^(l)) (multiscale) or recon_scale / D^(0) (global)."""
    logits, per_layer = [], None
    for xi in x:
        h = xi[None].clone().requires_grad_(True)
        hs = [h]
        for stage in net.stages:
            hs.append(stage(hs[-1]))
        li = net.head(hs[-1].mean(dim=(2, 3)))
        c = int(li.detach().argmax())
        gs = torch.autograd.grad(li[0, c], hs, create_graph=True)
        errs = [(((xi[None] if l == 0 else hl) - gl) ** 2).sum() for l, (hl, gl) in enumerate(zip(hs, gs))]
        per_layer = [[e] for e in errs] if per_layer is None else [a + [e] for a, e in zip(per_layer, errs)]
        logits.append(li)
    logits = torch.cat(logits)
    R = [torch.stack(e).mean() for e in per_layer]
    dims = [int(hl[0].numel()) for hl in hs]  # units per image of each layer's input
    ce = F.cross_entropy(logits[:n_lb], y_lb)
    p = torch.softmax(logits[n_lb:], 1)
    ent = -(p * torch.log(p)).sum(1).mean()
    L = len(R)
    betas = ([cfg.recon_scale / (L * d) for d in dims] if cfg.mode == "multiscale"
             else [cfg.recon_scale / dims[0]] + [0.0] * (L - 1))
    recon = sum(b * r for b, r in zip(betas, R))
    total = ce + cfg.entropy_scale / math.log(10) * ent + recon
    return {"total": total, "ce": ce, "ent": ent, "recon": recon, "R": R, "dims": dims}


def test_inversion_step_one_pass_over_the_labeled_and_every_unlabeled_view(digits):
    """Bugs guarded: too few unlabeled images (B where mu B is meant), the raw images instead of the views, a second
    forward pass for the templates (the template must be the gradient of the very logits that are trained)."""
    method, net, batch, ctx = _inversion(digits)
    seen = []
    net.stages[0].register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach().clone()))
    method.step(net, batch, ctx)
    assert len(seen) == 1
    x = seen[0]
    assert len(x) == 4 + 8 and [k for k, _ in ctx.aug.views] == ["weak", "weak"]
    assert torch.allclose(untag("weak", 1, x[:4]), batch.x_lb, atol=1e-6)
    assert torch.allclose(untag("weak", 2, x[4:]), batch.x_ulb, atol=1e-6)


@pytest.mark.parametrize("mode", ["multiscale", "global"])
def test_inversion_step_terms_gradients_and_per_layer_logs_match_an_image_by_image_computation(digits, mode):
    """Bugs guarded: a layer's representation detached in its reconstruction term, templates without
    ``create_graph`` (double back-propagation), the entropy over the labeled rows too, a weight dropped in one of
    its places (entropy_scale = 0.5, recon_scale = 2: neither 1 nor 0), BatchNorm (or anything else that mixes the
    images of a batch) in the method's own network, and per-layer logs ``recon_l{l}`` (the squared error per unit of
    layer l) divided by another layer's size or not at all. The reference runs every image *alone* through the
    default network."""
    method, net, batch, ctx = _inversion(digits, seed=1, mode=mode)
    net.train()
    loss, logs = method.step(net, batch, ctx)
    x = torch.cat([v for _, v in ctx.aug.views])
    want = _inversion_by_hand(net, x, len(batch.x_lb), batch.y_lb, method.config)
    assert loss.item() == pytest.approx(want["total"].item(), rel=1e-5)
    assert logs["loss_x"].item() == pytest.approx(want["ce"].item(), rel=1e-5)
    assert logs["loss_entropy"].item() == pytest.approx(want["ent"].item(), rel=1e-5)
    assert logs["loss_recon"].item() == pytest.approx(want["recon"].item(), rel=1e-5)
    assert logs["loss_u"].item() == pytest.approx((want["total"] - want["ce"]).item(), rel=1e-5)
    for l, (r, d) in enumerate(zip(want["R"], want["dims"])):
        assert logs[f"recon_l{l}"].item() == pytest.approx(r.item() / d, rel=1e-5), l
    assert len(set(want["dims"])) > 2  # the layers' sizes differ, so a misaligned division shows
    names = [n for n, _ in net.named_parameters()]
    assert_same_grads(grads(loss, net.parameters()), grads(want["total"], net.parameters()), names)


# ============================================================================= CoSSL
COSSL_B, COSSL_MU = 6, 2


@pytest.fixture(scope="module")
def lt_split(digits):
    return make_split(digits, kind="long_tailed", imbalance_ratio=50, seed=0)


def _cossl(lt_split, seed=0, **options):
    """CoSSL in its co-learning phase on the long-tailed digits (135 labeled images, 50 of class 0 down to 1 of
    classes 8 and 9; 219 unlabeled), with a hand-set balanced head, a student that differs from its EMA copy and an
    EMA encoder whose BatchNorm running statistics differ from any batch's."""
    torch.manual_seed(seed)
    net = BNRecordingNet(d=8)
    opts = {"tau": 0.3, "lambda_u": 0.6, "lam_min": 0.7, "head_view": "strong", "warmup": 0.5, **options}
    method = CoSSL(mu=COSSL_MU, **opts)
    ctx = Context(TaggedAug(), 6, 10, CPU, 10, len(lt_split.y_ulb))
    method.setup(net, lt_split, ctx)
    g = torch.Generator().manual_seed(seed + 10)
    with torch.no_grad():
        method.head.weight.copy_(3 * torch.randn(10, 8, generator=g))
        method.head.bias.copy_(torch.randn(10, generator=g))
        for p in net.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))
        ema = method.ema_encoder.module
        ema.bn.running_mean.copy_(0.3 * torch.randn(8, generator=g))
        ema.bn.running_var.copy_(0.5 + torch.rand(8, generator=g))
    method.started = torch.tensor(True)
    head_calls = []
    method.head.register_forward_hook(
        lambda m, inp, out: head_calls.append((inp[0].detach().clone(), torch.is_grad_enabled())))
    return method, net, ctx, head_calls


def _cossl_batch(lt_split, g):
    i_lb = torch.randperm(len(lt_split.y_lb), generator=g)[:COSSL_B]
    i_ulb = torch.randperm(len(lt_split.y_ulb), generator=g)[: COSSL_MU * COSSL_B]
    return Batch(to_float(lt_split.x_lb[i_lb]), lt_split.y_lb[i_lb], to_float(lt_split.x_ulb[i_ulb]),
                 lt_split.y_ulb[i_ulb], i_ulb, idx_lb=i_lb)


def _cossl_step(lt_split, method, net, ctx, head_calls, batch):
    """One step with a fresh TaggedAug; returns what every pass received, read back independently."""
    ctx.aug = TaggedAug()
    net.calls.clear()
    ema = method.ema_encoder.module
    ema.calls.clear()
    head_calls.clear()
    ema_running = [b.clone() for b in ema.buffers()]
    loss, logs = method.step(net, batch, ctx)
    views = ctx.aug.views
    assert [k for k, _ in views] == ["weak", "weak", "strong", "strong", "strong"]
    x_bal = untag("strong", 2, views[3][1])
    x_pool = untag("strong", 3, views[4][1])
    lb_pos = rows_in(x_bal, to_float(lt_split.x_lb))
    assert (lb_pos >= 0).all(), "the head's labeled batch holds an image that is not labeled"
    ulb_pos = rows_in(x_pool, to_float(lt_split.x_ulb))
    assert ((rows_in(x_pool, to_float(lt_split.x_lb)) >= 0) | (ulb_pos >= 0)).all()
    grad_head = [x for x, g in head_calls if g]
    assert len(grad_head) == 1
    return {"loss": loss, "logs": logs, "views": views, "y_bal": lt_split.y_lb[lb_pos], "from_ulb": ulb_pos >= 0,
            "f_new": grad_head[0], "ema_running": ema_running}


@pytest.fixture(scope="module")
def cossl_steps(lt_split):
    """25 co-learning steps (no optimizer: the weights stay put), each with its own batch; what each pass saw."""
    method, net, ctx, head_calls = _cossl(lt_split)
    g = torch.Generator().manual_seed(3)
    torch.manual_seed(11)
    out = []
    for _ in range(25):
        rec = _cossl_step(lt_split, method, net, ctx, head_calls, _cossl_batch(lt_split, g))
        ema = method.ema_encoder.module
        rec["f_x"] = ema.features_by_hand(ema.calls[1].x, train=False)
        rec["f_u"] = ema.features_by_hand(ema.calls[2].x, train=False)
        out.append(rec)
    return method, out


def test_cossl_head_batch_is_class_balanced_from_the_labeled_set_and_its_partners_from_the_whole_pool(
        lt_split, cossl_steps):
    """Bugs guarded: the head's labeled batch drawn uniformly over the labeled images (on a long-tailed set: mostly
    head classes) or taken from the step's own labeled batch, the TFE partners drawn from the labeled set only (the
    official pool is labeled + unlabeled, not class-filtered), a batch of the wrong size."""
    method, steps = cossl_steps
    y = torch.cat([s["y_bal"] for s in steps])
    from_ulb = torch.cat([s["from_ulb"] for s in steps])
    assert all(len(s["y_bal"]) == COSSL_B and len(s["from_ulb"]) == COSSL_B for s in steps)
    counts = torch.bincount(y, minlength=10)
    # 150 draws, 15 per class expected; uniform over the images would give class 0 about 56 and class 9 about 1
    assert counts.min() >= 5 and counts.max() <= 30, counts.tolist()
    share = from_ulb.float().mean().item()  # the pool is 135 labeled + 219 unlabeled images: 62 % unlabeled
    assert 0.45 <= share <= 0.8, share


def test_cossl_tfe_mixes_with_lambda_at_least_lam_min_and_p_c_per_class(lt_split, cossl_steps):
    """Bugs guarded: ``lam_min`` dropped where the step calls TFE (the function's default, 0.6, instead of the
    configured 0.7), the partner not the pool feature at the same position, the largest class mixed, a tail class
    rarely mixed (p_c = (N_max - N_c) / N_max). Each feature the head trains on is read back as
    lam f_x + (1 - lam) f_u from the EMA features of the two batches, computed here in eval mode."""
    method, steps = cossl_steps
    lams, ys = [], []
    for s in steps:
        f_new, f_x, f_u = s["f_new"], s["f_x"], s["f_u"]
        diff = f_x - f_u
        lam = ((f_new - f_u) * diff).sum(1) / (diff * diff).sum(1)
        assert torch.allclose(f_new, lam[:, None] * f_x + (1 - lam[:, None]) * f_u, atol=1e-5)
        lams.append(lam)
        ys.append(s["y_bal"])
    lam, y = torch.cat(lams), torch.cat(ys)
    mixed = (lam - 1).abs() > 1e-4
    assert lam[mixed].min() >= 0.7 - 1e-4 and lam.max() <= 1 + 1e-4
    assert lam[mixed].min() < 0.75  # the range is used down to lam_min
    assert not mixed[y == 0].any()  # N_c = N_max: never mixed
    p = tfe_probabilities(lt_split.info["labeled_counts"])
    rare = p[y] > 0.9
    assert mixed[rare].float().mean() > 0.75
    assert abs(mixed.float().mean() - p[y].mean()) < 0.15
    rates = torch.stack([s["logs"]["tfe_rate"] for s in steps])
    want = torch.stack([((l - 1).abs() > 1e-4).float().mean() for l in lams])
    assert torch.allclose(rates, want)


def test_cossl_co_learning_step_passes_modes_gradients_and_logs_by_hand(lt_split):
    """Bugs guarded: the EMA encoder's feature passes in training mode (batch statistics, and running statistics
    moved; the official code uses the EMA model in eval mode) or with gradient; a stop-gradient on the strong view
    (the encoder must learn from l_u), the head learning from anything but l_head, the student's features in l_head;
    the threshold or lambda_u dropped (tau strictly between the head's confidences, lambda_u = 0.6); the logs
    (mask rate, pseudo-label accuracy, the tail share of the *passing* pseudo-labels, the head's batch accuracy)."""
    method, net, ctx, head_calls = _cossl(lt_split, seed=1, tau=0.0)
    g = torch.Generator().manual_seed(4)
    batch = _cossl_batch(lt_split, g)
    ema = method.ema_encoder.module
    # tau strictly between the head's confidences on this batch's weak view (TaggedAug's weak call 2)
    with torch.no_grad():
        q = torch.softmax(method.head(ema.features_by_hand(batch.x_ulb + 0.02, train=False)), 1)
    conf = q.max(1).values.sort().values
    method.config.tau = float((conf[5] + conf[6]) / 2)
    rec = _cossl_step(lt_split, method, net, ctx, head_calls, batch)
    loss, logs, views = rec["loss"], rec["logs"], rec["views"]
    # the passes: one training-mode student pass with gradient; three eval-mode EMA passes without
    assert len(net.calls) == 1 and net.calls[0].training and net.calls[0].grad
    X = net.calls[0].x
    assert torch.equal(X, torch.cat([v for _, v in views[:3]]))
    assert len(ema.calls) == 3 and not any(c.training or c.grad for c in ema.calls)
    for c, v in zip(ema.calls, [views[1][1], views[3][1], views[4][1]]):
        assert torch.equal(c.x, v)
        assert torch.allclose(c.feats, ema.features_by_hand(c.x, train=False), atol=1e-6)
    for a, b in zip(ema.buffers(), rec["ema_running"]):
        assert torch.equal(a, b), "an EMA pass moved BatchNorm's running statistics"
    # the loss by hand
    n, B = COSSL_MU * COSSL_B, COSSL_B
    logits, _ = net.logits_by_hand(X, train=True)
    with torch.no_grad():
        q = torch.softmax(method.head(ema.features_by_hand(views[1][1], train=False)), 1)
    conf, pl = q.max(1)
    mask = (conf >= method.config.tau).float()
    assert 0 < mask.sum() < n
    l_s = F.cross_entropy(logits[:B], batch.y_lb)
    l_u = (F.cross_entropy(logits[B + n:], pl, reduction="none") * mask).mean()
    head_logits = method.head(rec["f_new"])
    l_head = F.cross_entropy(head_logits, rec["y_bal"])
    want = l_s + 0.6 * l_u + l_head
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    params = list(net.parameters()) + list(method.head.parameters())
    names = [n_ for n_, _ in net.named_parameters()] + ["head.weight", "head.bias"]
    assert_same_grads(grads(loss, params), grads(want, params), names)
    # the logs
    passed = mask > 0
    tail = torch.tensor(lt_split.info["tail_classes"])
    assert logs["mask_rate"].item() == pytest.approx(mask.mean().item())
    assert logs["loss_x"].item() == pytest.approx(l_s.item(), rel=1e-5)
    assert logs["loss_u"].item() == pytest.approx(l_u.item(), rel=1e-5)
    assert logs["loss_head"].item() == pytest.approx(l_head.item(), rel=1e-5)
    assert logs["pseudo_acc"].item() == pytest.approx((pl[passed] == batch.y_ulb[passed]).float().mean().item())
    right = torch.isin(pl[passed], tail).float().mean().item()
    assert logs["pl_tail_share"].item() == pytest.approx(right)
    assert abs(right - torch.isin(pl, tail).float().mean().item()) > 1e-3  # the mask matters here
    acc = (head_logits.argmax(1) == rec["y_bal"]).float().mean().item()
    assert logs["head_batch_acc"].item() == pytest.approx(acc)


# ============================================================================= OpenMatch
OM_B, OM_MU, OM_K = 4, 2, 6


@pytest.fixture(scope="module")
def open_split(digits):
    """The open-set digits split (6 known classes, 2 labels each) with 60 of its unlabeled images (known and
    unknown, hidden label -1), so a selection pass is small."""
    s = make_split(digits, kind="open_set", seed=0)
    g = torch.Generator().manual_seed(0)
    keep = torch.randperm(len(s.y_ulb), generator=g)[:60]
    return Split(s.dataset, s.x_lb, s.y_lb, s.x_ulb[keep], s.y_ulb[keep], s.x_test, s.y_test, s.kind, s.seed,
                 dict(s.info))


def _openmatch(open_split, seed=0, **options):
    torch.manual_seed(seed)
    net = OpenSetNet(BNRecordingNet(d=8, num_classes=OM_K), OM_K)
    opts = {"lambda_oem": 0.3, "lambda_socr": 0.7, "lambda_u": 0.4, "tau": 0.5, "fix_start": 0.1, **options}
    method = OpenMatch(mu=OM_MU, **opts)
    ctx = Context(TaggedAug(), 5, 10, CPU, OM_K, len(open_split.y_ulb))
    method.setup(net, open_split, ctx)
    g = torch.Generator().manual_seed(seed + 20)
    teacher = method.teacher.module
    with torch.no_grad():  # a teacher that differs from the student, with running statistics no batch has
        for p in teacher.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
        teacher.ova.weight.mul_(4.0)
        teacher.backbone.bn.running_mean.copy_(0.3 * torch.randn(8, generator=g))
        teacher.backbone.bn.running_var.copy_(0.5 + torch.rand(8, generator=g))
        net.ova.weight.mul_(3.0)
    i_lb = torch.randperm(len(open_split.y_lb), generator=g)[:OM_B]
    i_ulb = torch.randperm(len(open_split.y_ulb), generator=g)[: OM_MU * OM_B]
    batch = Batch(to_float(open_split.x_lb[i_lb]), open_split.y_lb[i_lb], to_float(open_split.x_ulb[i_ulb]),
                  open_split.y_ulb[i_ulb], i_ulb, idx_lb=i_lb)
    return method, net, batch, ctx


def _openmatch_step(method, net, ctx, batch, seed=5):
    """A step with a fresh TaggedAug and the pseudo-inlier sampler restarted from ``seed`` (the same step twice
    draws the same pseudo-inliers)."""
    ctx.aug = TaggedAug()
    net.backbone.calls.clear()
    method.teacher.module.backbone.calls.clear()
    method._gen, method._sampler = torch.Generator().manual_seed(seed), None
    running = [b.clone() for b in method.teacher.module.buffers()]
    loss, logs = method.step(net, batch, ctx)
    return loss, logs, running


def _ova_by_hand(ova_logits):
    return torch.softmax(ova_logits.view(len(ova_logits), 2, -1), dim=1)  # [N, 2, K]: 0 = out, 1 = in


def test_openmatch_step_passes_images_and_the_selection_by_hand(open_split):
    """Bugs guarded: the selection pass of the EMA teacher in training mode (batch statistics; running statistics
    moved) or with gradient; pseudo-inliers not the images whose outlier score (p_out of the predicted class) is
    below 0.5; the FixMatch batch drawn from all unlabeled images, or of B images where mu B are meant; the
    FixMatch views in the first pass (the official code gives them their own); the labeled views or the two weak
    views of *all* unlabeled images missing; the selection's diagnostics (share selected, outliers admitted,
    known-class recall) not computed by hand."""
    method, net, batch, ctx = _openmatch(open_split)
    loss, logs, running = _openmatch_step(method, net, ctx, batch)
    views = ctx.aug.views
    assert [k for k, _ in views] == ["weak"] * 4 + ["strong"]
    calls = net.backbone.calls
    assert len(calls) == 2 and all(c.training and c.grad for c in calls)
    B, n = OM_B, OM_MU * OM_B
    assert torch.equal(calls[0].x, torch.cat([batch.x_lb, views[0][1], views[1][1], views[2][1]]))
    assert torch.allclose(untag("weak", 1, views[0][1]), batch.x_lb, atol=1e-6)
    for k in (2, 3):
        assert torch.allclose(untag("weak", k, views[k - 1][1]), batch.x_ulb, atol=1e-6)
    assert torch.equal(calls[1].x, torch.cat([views[3][1], views[4][1]]))
    x_f = untag("weak", 4, views[3][1])
    assert torch.allclose(untag("strong", 1, views[4][1]), x_f, atol=1e-5)
    assert len(x_f) == n
    pos = rows_in(x_f, to_float(open_split.x_ulb))
    assert (pos >= 0).all() and torch.equal(pos, method.last_fix_index)
    # the selection: one eval-mode pass of the teacher, without gradient, over every unaugmented unlabeled image
    teacher = method.teacher.module
    tcalls = teacher.backbone.calls
    assert len(tcalls) == 1 and not tcalls[0].training and not tcalls[0].grad
    assert torch.equal(tcalls[0].x, to_float(open_split.x_ulb))
    for a, b in zip(teacher.buffers(), running):
        assert torch.equal(a, b), "the selection moved the teacher's BatchNorm running statistics"
    with torch.no_grad():
        t_logits, t_feats = teacher.backbone.logits_by_hand(to_float(open_split.x_ulb), train=False)
        p = _ova_by_hand(t_feats @ teacher.ova.weight.T)
        score = p[torch.arange(len(p)), 0, t_logits.argmax(1)]
    selected = score < 0.5
    assert 0 < selected.sum() < len(selected)
    assert torch.equal(method.pseudo_inlier, selected)
    assert selected[pos].all(), "a FixMatch image that is not a pseudo-inlier"
    known = open_split.y_ulb >= 0
    assert 0 < (selected & ~known).sum() < (~known).sum()
    assert logs["inlier_rate"].item() == pytest.approx(selected.float().mean().item())
    assert logs["outlier_admit"].item() == pytest.approx(selected[~known].float().mean().item())
    assert logs["inlier_recall"].item() == pytest.approx(selected[known].float().mean().item())


def test_openmatch_step_loss_gradients_and_logs_match_an_independent_computation(open_split):
    """Bugs guarded: a stop-gradient on one side of SOCR (both views must learn), the OVA head reading detached
    features, L_oem over one of its two views, the labels of the two labeled views misaligned (repeat vs
    repeat_interleave), a weight or the threshold dropped (lambda_oem = 0.3, lambda_socr = 0.7, lambda_u = 0.4; tau
    strictly between the pseudo-inliers' confidences: the official default 0 keeps everything), the FixMatch
    target left with its gradient, and ``pseudo_acc`` measured against the labels of another batch (the step's own
    unlabeled batch) instead of those of the pseudo-inliers it trained on."""
    method, net, batch, ctx = _openmatch(open_split, seed=1)
    _openmatch_step(method, net, ctx, batch)
    n = OM_MU * OM_B
    with torch.no_grad():  # tau strictly between the confidences of the pseudo-inliers' weak views
        q0 = torch.softmax(net.backbone.calls[1].logits[:n], 1)
    conf0 = q0.max(1).values.sort().values
    method.config.tau = float((conf0[3] + conf0[4]) / 2)
    # hidden labels that tell the pseudo-inliers' labels from the step's own batch's: the first half of the
    # pseudo-inliers is "right", the second half wrong; every image of the step's batch looks right
    pl0, idx0 = q0.argmax(1), method.last_fix_index
    y_hidden = method._data["y_ulb"].clone()
    y_hidden[idx0] = torch.where(torch.arange(n) < n // 2, pl0, (pl0 + 1) % OM_K)
    method._data["y_ulb"] = y_hidden
    batch.y_ulb = pl0.clone()
    loss, logs, _ = _openmatch_step(method, net, ctx, batch)
    assert torch.equal(method.last_fix_index, idx0)
    calls, views = net.backbone.calls, ctx.aug.views
    B = OM_B
    X1, X2 = calls[0].x, calls[1].x
    y2 = torch.cat([batch.y_lb[rows_in(X1[:B], batch.x_lb)], batch.y_lb[rows_in(untag("weak", 1, X1[B: 2 * B]),
                                                                                     batch.x_lb)]])
    bb = net.backbone
    logits1, f1 = bb.logits_by_hand(X1, train=True)
    ova1 = f1 @ net.ova.weight.T
    l_x = F.cross_entropy(logits1[: 2 * B], y2)
    p_lb = _ova_by_hand(ova1[: 2 * B])
    rows = torch.arange(2 * B)
    nll_in = -torch.log(p_lb[rows, 1, y2])
    nll_out = -torch.log(p_lb[:, 0, :])
    others = torch.ones_like(nll_out, dtype=torch.bool)
    others[rows, y2] = False
    l_o = nll_in.mean() + torch.stack([nll_out[i][others[i]].max() for i in range(2 * B)]).mean()
    p1, p2 = _ova_by_hand(ova1[2 * B: 2 * B + n]), _ova_by_hand(ova1[2 * B + n:])

    def binary_entropy(p):
        return -(p * torch.log(p)).sum(1).mean()

    l_oem = 0.5 * (binary_entropy(p1) + binary_entropy(p2))
    l_socr = ((p1 - p2) ** 2).sum(dim=(1, 2)).mean()
    logits2, _ = bb.logits_by_hand(X2, train=True)
    q = torch.softmax(logits2[:n].detach(), 1)
    conf, pl = q.max(1)
    mask = (conf >= method.config.tau).float()
    assert 0 < mask.sum() < n
    l_fix = (F.cross_entropy(logits2[n:], pl, reduction="none") * mask).mean()
    want = l_x + l_o + 0.3 * l_oem + 0.7 * l_socr + 0.4 * l_fix
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    for key, v in (("loss_x", l_x), ("loss_o", l_o), ("loss_oem", l_oem), ("loss_socr", l_socr), ("loss_u", l_fix)):
        assert logs[key].item() == pytest.approx(v.item(), rel=1e-5), key
    names = [n_ for n_, _ in net.named_parameters()]
    assert_same_grads(grads(loss, net.parameters()), grads(want, net.parameters()), names)
    # the FixMatch target is a constant: no gradient on the weak view's logits, some on the strong view's
    g = torch.autograd.grad(loss, calls[1].logits, retain_graph=True)[0]
    assert g[:n].abs().sum() == 0 and g[n:][mask > 0].abs().sum() > 0
    y_f = y_hidden[rows_in(untag("weak", 4, X2[:n]), to_float(open_split.x_ulb))]
    passed = mask > 0
    right = (pl[passed] == y_f[passed]).float().mean().item()
    assert logs["pseudo_acc"].item() == pytest.approx(right)
    assert abs(right - (pl[passed] == batch.y_ulb[passed]).float().mean().item()) > 1e-3
    assert logs["mask_rate"].item() == pytest.approx(mask.mean().item())
