"""SWWAE (Zhao, Mathieu, Goroshin & LeCun, ICLR 2016 workshop): pooling into "what" and "where" and unpooling on a
hand-made 4x4, the soft what/where, the loss terms against hand-computed values (mean normalisation), the layer
pairing of the middle terms, the gradient flow (NLL from labeled images only, reconstruction terms from every image,
no stop-gradient), the step, config validation, the command line, the run cache, the notebook's helpers, the claims
and notebook 06."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from sslteach import train
from sslteach.augment import Augmenter
from sslteach.methods.swwae import (SWWAE, SWWAEConfig, SWWAENet, default_pool_layers, max_pool_what_where,
                                    reconstruction_error, reconstruction_terms, shift_images, soft_max_pool,
                                    swwae_loss, unpool, what_where_under_shift)
from sslteach.train import Batch, Context

from steptools import CountingAug, TaggedAug

# ----------------------------------------------------------------------------- pooling and unpooling, by hand
# Four 2x2 windows; their maxima 4, 5, 7, 9 sit at (1, 1), (0, 2), (3, 0), (2, 3): flat indices 5, 2, 12, 11.
X44 = torch.tensor([[1.0, 2.0, 5.0, 0.0],
                    [3.0, 4.0, 1.0, 1.0],
                    [0.0, 0.0, 2.0, 9.0],
                    [7.0, 1.0, 3.0, 3.0]]).view(1, 1, 4, 4)


def test_pooling_splits_into_what_and_where_on_a_hand_made_4x4():
    what, where = max_pool_what_where(X44)
    assert what.view(2, 2).tolist() == [[4.0, 5.0], [7.0, 9.0]]
    assert where.view(2, 2).tolist() == [[5, 2], [12, 11]]


def test_unpooling_puts_values_back_at_the_recorded_positions():
    _, where = max_pool_what_where(X44)
    # the decoder's values differ from the encoder's: unpooling must use the positions, not look for the values
    what_dec = torch.tensor([[10.0, 20.0], [30.0, 40.0]]).view(1, 1, 2, 2)
    out = unpool(what_dec, where, (4, 4), "where")
    assert out.view(4, 4).tolist() == [[0.0, 0.0, 20.0, 0.0],
                                       [0.0, 10.0, 0.0, 0.0],
                                       [0.0, 0.0, 0.0, 40.0],
                                       [30.0, 0.0, 0.0, 0.0]]


def test_upsampling_without_where_copies_each_value_into_its_window():
    what_dec = torch.tensor([[10.0, 20.0], [30.0, 40.0]]).view(1, 1, 2, 2)
    out = unpool(what_dec, None, (4, 4), "upsample")
    assert out.view(4, 4).tolist() == [[10.0, 10.0, 20.0, 20.0],
                                       [10.0, 10.0, 20.0, 20.0],
                                       [30.0, 30.0, 40.0, 40.0],
                                       [30.0, 30.0, 40.0, 40.0]]


def test_unpooling_an_odd_side_restores_its_size():
    x = torch.arange(49.0).view(1, 1, 7, 7)
    what, where = max_pool_what_where(x)  # 7 -> 3: the last row and column are dropped by the pooling
    assert what.shape[-2:] == (3, 3)
    back = unpool(what, where, (7, 7), "where")
    assert back.shape[-2:] == (7, 7)
    assert back[0, 0, 5, 5].item() == 40.0 and back[0, 0, 6].abs().sum() == 0  # max of the last full window
    up = unpool(what, where, (7, 7), "upsample")
    assert up.shape[-2:] == (7, 7) and up[0, 0, 6].abs().sum() == 0 and up[0, 0, 5, 5].item() == 40.0


def test_unpool_bad_arguments():
    what, where = max_pool_what_where(X44)
    with pytest.raises(ValueError, match="unpool mode must be one of where, upsample; got 'switches'"):
        unpool(what, where, (4, 4), "switches")
    with pytest.raises(ValueError, match="needs the recorded positions"):
        unpool(what, None, (4, 4), "where")


# ----------------------------------------------------------------------------- soft what and where
def test_soft_pooling_by_hand():
    # one window [[0, ln 3], [0, 0]], beta = 1: weights exp(z) / sum = [1, 3, 1, 1] / 6
    x = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]]).view(1, 1, 2, 2)
    what, where = soft_max_pool(x, beta=1.0)
    assert what.item() == pytest.approx(3 * math.log(3.0) / 6)
    # expected row = (0*1 + 0*3 + 1*1 + 1*1) / 6, expected column = (0*1 + 1*3 + 0*1 + 1*1) / 6
    assert where.view(2).tolist() == pytest.approx([2 / 6, 4 / 6])


def test_soft_pooling_limits():
    what, where = soft_max_pool(X44, beta=100.0)  # beta -> infinity: max pooling and the arg-max position
    assert torch.allclose(what.view(2, 2), torch.tensor([[4.0, 5.0], [7.0, 9.0]]), atol=1e-4)
    assert torch.allclose(where.view(2, 2, 2), torch.tensor([[[1.0, 1.0], [0.0, 2.0]], [[3.0, 0.0], [2.0, 3.0]]]),
                          atol=1e-4)
    what0, where0 = soft_max_pool(X44, beta=1e-6)  # beta -> 0: the window mean, at the window centre
    assert torch.allclose(what0, F.avg_pool2d(X44, 2), atol=1e-4)
    assert torch.allclose(where0.view(2, 2, 2), torch.tensor([[[0.5, 0.5], [0.5, 2.5]], [[2.5, 0.5], [2.5, 2.5]]]),
                          atol=1e-4)
    with pytest.raises(ValueError, match="beta must be > 0"):
        soft_max_pool(X44, beta=0.0)


# ----------------------------------------------------------------------------- the loss, by hand
def test_reconstruction_terms_are_means_by_hand():
    x = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])          # [1, 1, 2, 2]
    x_rec = torch.tensor([[[[0.5, 0.0], [0.0, 0.0]]]])      # squared errors 0.25, 0, 0, 1 -> mean 1.25 / 4
    e1, d1 = torch.zeros(1, 2, 1, 1), torch.tensor([1.0, 3.0]).view(1, 2, 1, 1)        # mean (1 + 9) / 2 = 5
    e2, d2 = torch.ones(2, 1, 1, 2), torch.ones(2, 1, 1, 2)                              # 0
    e2 = e2.clone()
    e2[1, 0, 0, 1] = 3.0                                                                   # one error of 4 in 4 -> 1
    rec, mid = reconstruction_terms(x, x_rec, [(e1, d1), (e2, d2)])
    assert rec.item() == pytest.approx(1.25 / 4)
    assert mid.item() == pytest.approx(5.0 + 1.0)  # a sum over layers of per-layer means
    rec0, mid0 = reconstruction_terms(x, x_rec, [])
    assert mid0.item() == 0.0 and rec0.item() == pytest.approx(1.25 / 4)


def test_swwae_loss_total_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 0])
    nll = (-(2.0 - math.log(math.exp(2.0) + 1.0)) - (0.0 - math.log(1.0 + math.exp(1.0)))) / 2
    x = torch.zeros(3, 1, 2, 2)
    x_rec = torch.full((3, 1, 2, 2), 0.5)                                   # rec = 0.25
    pairs = [(torch.zeros(3, 4, 1, 1), torch.full((3, 4, 1, 1), 2.0))]     # mid = 4
    loss, l_nll, l_rec, l_mid = swwae_loss(logits, y, x, x_rec, pairs, lambda_rec=0.7, lambda_m=0.3)
    assert l_nll.item() == pytest.approx(nll, abs=1e-6)
    assert (l_rec.item(), l_mid.item()) == pytest.approx((0.25, 4.0))
    assert loss.item() == pytest.approx(nll + 0.7 * 0.25 + 0.3 * 4.0, abs=1e-6)


def test_middle_terms_have_no_stop_gradient():
    """d L_M / d x_l = 2 (x_l - x~_l) / D and d L_M / d x~_l = -2 (x_l - x~_l) / D: both sides move."""
    enc = torch.tensor([[[[1.0, 2.0]]]], requires_grad=True)
    dec = torch.tensor([[[[0.0, 4.0]]]], requires_grad=True)
    _, mid = reconstruction_terms(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), [(enc, dec)])
    mid.backward()
    assert enc.grad.flatten().tolist() == pytest.approx([1.0, -2.0])  # 2 * (x_l - x~_l) / 2
    assert dec.grad.flatten().tolist() == pytest.approx([-1.0, 2.0])


def test_loss_shape_checks_and_bad_lambdas():
    with pytest.raises(ValueError, match="same shape"):
        reconstruction_terms(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 2, 2), [])
    with pytest.raises(ValueError, match="middle pair 1: encoder map"):
        reconstruction_terms(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2),
                             [(torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 1, 1))])
    with pytest.raises(ValueError, match="lambda_m must be >= 0"):
        swwae_loss(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), torch.zeros(1, 1, 2, 2),
                   torch.zeros(1, 1, 2, 2), [], 1.0, -0.5)


# ----------------------------------------------------------------------------- the network and its layer pairing
@pytest.mark.parametrize("size, layers, shapes", [(8, 2, [(8, 4, 4), (16, 2, 2)]),
                                                  (28, 3, [(8, 14, 14), (16, 7, 7), (16, 3, 3)])])
def test_network_shapes_and_pairs(size, layers, shapes):
    torch.manual_seed(0)
    assert default_pool_layers(size) == layers
    net = SWWAENet(1, 10, layers, width=8)
    x = torch.rand(5, 1, size, size)
    logits, feats = net(x)
    assert logits.shape == (5, 10) and feats.shape == (5, 16)
    x_rec, pairs, logits2 = net.reconstruct(x)
    assert x_rec.shape == x.shape and torch.allclose(logits2, logits)
    assert [tuple(e.shape[1:]) for e, _ in pairs] == shapes
    assert all(e.shape == d.shape for e, d in pairs)


def test_each_middle_term_pairs_the_same_layer():
    """pairs[l-1] = (encoder's pooled map of layer l, the decoder map that mirrors it), recomputed by hand: the
    decoder starts from the top code, and each of its stages unpools with the *same* layer's where."""
    torch.manual_seed(1)
    net = SWWAENet(1, 10, 2, width=4).eval()
    x = torch.rand(3, 1, 8, 8)
    _, pairs, _ = net.reconstruct(x)
    h1, w1 = F.max_pool2d(net.enc[0](x), 2, return_indices=True)            # layer 1: [3, 4, 4, 4]
    h2, w2 = F.max_pool2d(net.enc[1](h1), 2, return_indices=True)           # layer 2: [3, 8, 2, 2]
    z = net.enc_top(h2)
    d2 = net.dec_top(z)                                                      # mirrors layer 2
    d1 = net.dec[1](F.max_unpool2d(d2, w2, 2, output_size=(4, 4)))          # mirrors layer 1
    x_rec = net.dec[0](F.max_unpool2d(d1, w1, 2, output_size=(8, 8)))
    assert torch.allclose(pairs[0][0], h1) and torch.allclose(pairs[0][1], d1, atol=1e-6)
    assert torch.allclose(pairs[1][0], h2) and torch.allclose(pairs[1][1], d2, atol=1e-6)
    rec, _, _ = net.reconstruct(x)
    assert torch.allclose(rec, x_rec, atol=1e-6)


def test_reconstruction_from_a_lower_layer_and_without_where():
    torch.manual_seed(2)
    net = SWWAENet(1, 10, 2, width=4).eval()
    x = torch.rand(3, 1, 8, 8)
    h1, w1 = F.max_pool2d(net.enc[0](x), 2, return_indices=True)
    rec1, pairs1, _ = net.reconstruct(x, start=1)  # from the encoder's own layer-1 map, through stage 1 only
    assert torch.allclose(rec1, net.dec[0](F.max_unpool2d(h1, w1, 2, output_size=(8, 8))), atol=1e-6)
    assert pairs1 == []  # no decoder map was made for a layer above the start
    rec_up, _, _ = net.reconstruct(x, mode="upsample", start=1)
    assert torch.allclose(rec_up, net.dec[0](F.interpolate(h1, scale_factor=2, mode="nearest")), atol=1e-6)
    with pytest.raises(ValueError, match=r"start must be in \[1, 2\]"):
        net.reconstruct(x, start=3)


def test_network_bad_arguments():
    with pytest.raises(ValueError, match="unpool must be one of where, upsample"):
        SWWAENet(unpool="nearest")
    with pytest.raises(ValueError, match="pool_layers must be an integer >= 1"):
        SWWAENet(pool_layers=0)


# ----------------------------------------------------------------------------- gradient flow
class _Same(Augmenter):
    """No augmentation: the step sees the images as given (so a test can hold them fixed)."""

    def __init__(self):
        super().__init__("image")

    def weak(self, x):
        return x

    def strong(self, x):
        return x


def _net_and_batches(digits, seed=0):
    torch.manual_seed(seed)
    net = SWWAENet(1, 10, 2, width=4).eval()  # eval mode: BatchNorm's running statistics, no mixing of images
    x, y = digits.x_train, digits.y_train
    b1 = Batch(x[:4].clone(), y[:4], x[10:18].clone(), y[10:18])
    b2 = Batch(x[:4].clone(), y[:4], x[40:48].clone(), y[40:48])  # same labeled images, other unlabeled ones
    ctx = Context(_Same(), 0, 10, torch.device("cpu"), 10, 100)
    return net, b1, b2, ctx


def _grads(net, term):
    net.zero_grad()
    term.backward(retain_graph=True)
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in net.named_parameters()}


def test_nll_depends_on_the_labeled_images_only(digits):
    """In eval mode (no BatchNorm batch statistics, which in training mix every image of the batch, as in any method
    that forwards labeled and unlabeled images together), the NLL's gradient is the same whatever the unlabeled
    images are, and it never reaches the decoder."""
    net, b1, b2, ctx = _net_and_batches(digits)
    method = SWWAE(mu=2)
    g1 = _grads(net, method.losses(net, b1, ctx)["nll"])
    g2 = _grads(net, method.losses(net, b2, ctx)["nll"])
    for n in g1:
        assert torch.equal(g1[n], g2[n]), f"the NLL gradient of {n} changed with the unlabeled images"
    assert all(g1[n].abs().sum() == 0 for n in g1 if n.startswith("dec")), "NLL reached the decoder"
    assert g1["enc.0.0.weight"].abs().sum() > 0 and g1["head.weight"].abs().sum() > 0


def test_nll_sends_no_gradient_into_the_unlabeled_images(digits):
    net, b1, _, ctx = _net_and_batches(digits)
    b1.x_lb.requires_grad_(True)
    b1.x_ulb.requires_grad_(True)
    t = SWWAE(mu=2).losses(net, b1, ctx)
    t["nll"].backward(retain_graph=True)
    assert b1.x_lb.grad.abs().sum() > 0
    assert b1.x_ulb.grad is None or b1.x_ulb.grad.abs().sum() == 0


@pytest.mark.parametrize("term", ["rec", "mid"])
def test_reconstruction_terms_learn_from_unlabeled_images_through_encoder_and_decoder(digits, term):
    net, b1, b2, ctx = _net_and_batches(digits)
    method = SWWAE(mu=2)
    g1 = _grads(net, method.losses(net, b1, ctx)[term])
    g2 = _grads(net, method.losses(net, b2, ctx)[term])
    assert not torch.allclose(g1["enc.0.0.weight"], g2["enc.0.0.weight"]), "the unlabeled images do not matter"
    # no stop-gradient: the term trains the encoder (that is how it regularises the classifier) and the decoder
    assert g1["enc.0.0.weight"].abs().sum() > 0
    assert g1["dec_top.0.weight"].abs().sum() > 0
    assert g1["head.weight"].abs().sum() == 0  # the classifier head plays no part in reconstruction
    if term == "rec":
        assert g1["dec.0.weight"].abs().sum() > 0  # the output layer
    # an unlabeled image alone moves the reconstruction loss: its pixels get a gradient through the network
    b1.x_ulb.requires_grad_(True)
    t = method.losses(net, b1, ctx)
    x_grad = torch.autograd.grad(t[term], b1.x_ulb)[0]
    assert x_grad.abs().sum() > 0


# ----------------------------------------------------------------------------- the method's step
def _train_net(digits, layers=2, width=4, seed=0):
    torch.manual_seed(seed)
    return SWWAENet(1, 10, layers, width=width)


def test_step_total_is_nll_plus_weighted_reconstruction_terms(digits):
    net = _train_net(digits)
    x, y = digits.x_train, digits.y_train
    batch = Batch(x[:4], y[:4], x[4:16], y[4:16])
    ctx = Context(Augmenter("image"), 0, 10, torch.device("cpu"), 10, 12)
    method = SWWAE(lambda_rec=0.7, lambda_m=0.3, mu=3)
    torch.manual_seed(5)
    loss, logs = method.step(net, batch, ctx)
    assert set(logs) == {"loss_x", "loss_u", "loss_rec", "loss_mid"}
    assert logs["loss_rec"] > 0 and logs["loss_mid"] > 0
    want_u = 0.7 * logs["loss_rec"].item() + 0.3 * logs["loss_mid"].item()
    assert logs["loss_u"].item() == pytest.approx(want_u, rel=1e-6)
    assert loss.item() == pytest.approx(logs["loss_x"].item() + want_u, rel=1e-6)


def test_step_reconstructs_the_weak_views_it_encoded(digits):
    """The targets of every term are the augmented views the encoder saw (labeled, then unlabeled), not the raw
    images: recomputed by hand from the views the augmenter handed out."""
    net = _train_net(digits).eval()
    x, y = digits.x_train, digits.y_train
    batch = Batch(x[:4], y[:4], x[20:28], y[20:28])
    aug = TaggedAug()  # weak call 1 adds 0.01 (labeled), call 2 adds 0.02 (unlabeled)
    ctx = Context(aug, 0, 10, torch.device("cpu"), 10, 8)
    t = SWWAE(mu=2).losses(net, batch, ctx)
    assert aug.calls == {"weak": 2, "strong": 0}
    views = torch.cat([v for _, v in aug.views])
    assert torch.allclose(views[:4], x[:4] + 0.01) and torch.allclose(views[4:], x[20:28] + 0.02)
    x_rec, pairs, logits = net.reconstruct(views)
    assert t["rec"].item() == pytest.approx(F.mse_loss(x_rec, views).item(), rel=1e-5)
    assert t["mid"].item() == pytest.approx(sum(F.mse_loss(d, e).item() for e, d in pairs), rel=1e-5)
    assert t["nll"].item() == pytest.approx(F.cross_entropy(logits[:4], y[:4]).item(), rel=1e-5)
    assert t["rec"].item() != pytest.approx(F.mse_loss(net.reconstruct(torch.cat([x[:4], x[20:28]]))[0],
                                                       torch.cat([x[:4], x[20:28]])).item(), rel=1e-3)


def test_step_uses_the_configured_unpooling(digits):
    net = _train_net(digits).eval()
    x, y = digits.x_train, digits.y_train
    batch = Batch(x[:4], y[:4], x[4:8], y[4:8])
    ctx = Context(_Same(), 0, 10, torch.device("cpu"), 10, 4)
    views = torch.cat([x[:4], x[4:8]])
    for mode in ("where", "upsample"):
        t = SWWAE(mu=1, unpool=mode).losses(net, batch, ctx)
        want = F.mse_loss(net.reconstruct(views, mode=mode)[0], views).item()
        assert t["rec"].item() == pytest.approx(want, rel=1e-5), mode


def test_lambdas_zero_is_supervised_on_the_same_network(digits):
    method = SWWAE(lambda_rec=0.0, lambda_m=0.0, mu=3)
    assert method.unlabeled_ratio() == 0.0  # the trainer draws no unlabeled images
    net = _train_net(digits)
    aug = CountingAug()
    x, y = digits.x_train, digits.y_train
    batch = Batch(x[:4], y[:4], x[4:16], y[4:16])
    calls = []
    net.dec_top.register_forward_hook(lambda *a: calls.append("decoder"))
    loss, logs = method.step(net, batch, Context(aug, 0, 10, torch.device("cpu"), 10, 12))
    assert calls == [] and aug.calls == {"weak": 1, "strong": 0}
    assert logs["loss_rec"] == 0 and logs["loss_mid"] == 0 and loss.item() == pytest.approx(logs["loss_x"].item())
    assert SWWAE(mu=3).unlabeled_ratio() == 3.0 and SWWAE(lambda_rec=0.0, mu=2).unlabeled_ratio() == 2.0


def test_step_without_unlabeled_images(digits):
    """mu = 0: the reconstruction terms on the labeled images alone."""
    net = _train_net(digits)
    x, y = digits.x_train, digits.y_train
    loss, logs = SWWAE(mu=0).step(net, Batch(x[:4], y[:4]), Context(Augmenter("image"), 0, 10,
                                                                      torch.device("cpu"), 10, 0))
    assert logs["loss_rec"] > 0 and math.isfinite(loss.item())


def test_step_needs_the_swwae_network(digits):
    from sslteach.models import make_model

    net = make_model("auto", (1, 8, 8), 10)
    x, y = digits.x_train, digits.y_train
    with pytest.raises(ValueError, match="swwae needs its own network"):
        SWWAE().step(net, Batch(x[:4], y[:4], x[4:8]), Context(Augmenter("image"), 0, 10, torch.device("cpu"), 10, 4))


# ----------------------------------------------------------------------------- configuration
def test_defaults_and_build_model():
    cfg = SWWAEConfig()
    assert (cfg.lambda_rec, cfg.lambda_m, cfg.mu, cfg.unpool, cfg.pool_layers) == (1.0, 0.2, 1, "where", 0)
    from sslteach.train import TrainConfig

    net = SWWAE(unpool="upsample").build_model((1, 28, 28), 10, TrainConfig(width=8, dropout=0.3))
    assert isinstance(net, SWWAENet) and net.pool_layers == 3 and net.unpool_mode == "upsample"
    assert net.channels == [1, 8, 16, 16] and net.dropout.p == 0.3
    assert SWWAE(pool_layers=1).build_model((1, 8, 8), 10, TrainConfig()).pool_layers == 1


@pytest.mark.parametrize("option, value, pattern", [
    ("lambda_rec", -0.1, r"lambda_rec must be in \[0(\.0)?, 10(\.0)?\]"),
    ("lambda_m", 11.0, r"lambda_m must be in \[0(\.0)?, 10(\.0)?\]"),
    ("mu", 17, r"mu must be in \[0, 16\]"),
    ("unpool", "nearest", r"unknown unpool .nearest.; valid values: where, upsample"),
    ("pool_layers", 5, r"pool_layers must be in \[0, 4\]"),
    ("lambda", 1.0, r"unknown option.*lambda_rec, lambda_m, mu, unpool, pool_layers"),
])
def test_bad_arguments_raise_clear_errors(option, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        SWWAE(**{option: value})


def test_build_model_rejects_points_and_too_many_poolings():
    from sslteach.train import TrainConfig

    with pytest.raises(ValueError, match="swwae needs images"):
        SWWAE().build_model((2,), 2, TrainConfig())
    with pytest.raises(ValueError, match="pool_layers=4 halves a 8x8 image below 1 pixel; use at most 3"):
        SWWAE(pool_layers=4).build_model((1, 8, 8), 10, TrainConfig())


def test_command_line_trains_swwae(capsys, tmp_path):
    from sslteach.cli import main

    out = tmp_path / "run.json"
    rc = main(["train", "swwae", "--lambda-rec", "0.5", "--lambda-m", "0.1", "--unpool", "upsample", "--mu", "2",
               "--steps", "6", "--eval-every", "3", "--no-progress", "--no-cache", "--out", str(out)])
    assert rc == 0
    assert "swwae on digits (2 labels/class, seed 0): test accuracy" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["method_config"] == {"lambda_rec": 0.5, "lambda_m": 0.1, "mu": 2, "unpool": "upsample",
                                     "pool_layers": 0, "augment": False, "mid_stop_grad": False,
                                     "encode_unlabeled": False, "separate_passes": True}  # digits' defaults
    assert all(k in data["history"][0] for k in ("loss_x", "loss_u", "loss_rec", "loss_mid"))


def test_command_line_rejects_bad_unpool(capsys):
    from sslteach.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "swwae", "--unpool", "switches", "--steps", "2", "--no-progress"])
    assert e.value.code == 2


# ----------------------------------------------------------------------------- training, the run cache
def test_a_short_run_learns_to_reconstruct_and_logs_every_term():
    r = train("swwae", steps=60, eval_every=30, seed=0, progress=False)
    for k in ("loss_x", "loss_u", "loss_rec", "loss_mid"):
        assert k in r.history.keys()
    s, rec = r.history.series("loss_rec")
    assert rec[-1] < rec[0]
    assert r.train_config["width"] == 16 and isinstance(r.model, SWWAENet)
    from sslteach import load_dataset

    err = reconstruction_error(r.report_model(), load_dataset("digits").x_test[:200])
    assert 0 < err < 0.1  # pixels in [0, 1]: a mean squared error of 0.1 is a poor reconstruction


def test_run_cache_restores_the_decoder(tmp_path):
    a = train("swwae", steps=5, eval_every=5, seed=1, progress=False, cache=tmp_path)
    b = train("swwae", steps=5, eval_every=5, seed=1, progress=False, cache=tmp_path)
    assert b.from_cache and not a.from_cache
    x = torch.rand(4, 1, 8, 8)
    ra, rb = a.report_model().eval(), b.report_model().eval()
    assert torch.allclose(ra.reconstruct(x)[0], rb.reconstruct(x)[0], atol=1e-6)


# ----------------------------------------------------------------------------- the notebook's helpers
def test_shift_images_by_hand():
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    assert shift_images(x, dx=1).view(3, 3).tolist() == [[0, 1, 2], [0, 4, 5], [0, 7, 8]]
    assert shift_images(x, dy=-1).view(3, 3).tolist() == [[4, 5, 6], [7, 8, 9], [0, 0, 0]]
    assert shift_images(x, dx=3).abs().sum() == 0 and torch.equal(shift_images(x), x)


class _PoolOnly(SWWAENet):
    """An encoder whose layer-1 map is the image itself (identity conv, no BatchNorm, ReLU): pooling alone."""

    def __init__(self):
        super().__init__(1, 10, 1, width=1)
        conv = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1] = 1.0
        self.enc[0] = torch.nn.Sequential(conv, torch.nn.ReLU())


def test_what_is_invariant_and_where_equivariant_for_pure_pooling():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3, 2] = 1.0  # one bright pixel
    res = what_where_under_shift(_PoolOnly(), x, shifts=(0, 1, 2, 3), layer=1)
    assert res["shift"] == [0, 1, 2, 3]
    assert res["global_what_cos"] == pytest.approx([1.0, 1.0, 1.0, 1.0])  # the strongest value never changes
    assert res["where_shift"] == pytest.approx([0.0, 1.0, 2.0, 3.0])     # its position follows the shift
    assert res["pixel_cos"] == pytest.approx([1.0, 0.0, 0.0, 0.0])       # the pixels do not overlap at all
    # the pooled map: a 1-pixel shift inside the same 2x2 window (columns 2-3) keeps "what" (cos 1); 2 and 3 pixels
    # move the pixel into the next window (cos 0)
    assert res["what_cos"] == pytest.approx([1.0, 1.0, 0.0, 0.0])
    assert res["where_changed"][:2] == pytest.approx([0.0, 1 / 16])  # only that window's where changed


class _PoolOnly2(SWWAENet):
    """Two poolings of the image itself: layer 1 and the first channel of layer 2 are identity convs + ReLU."""

    def __init__(self):
        super().__init__(1, 10, 2, width=1)
        convs = []
        for cin, cout in ((1, 1), (1, 2)):
            conv = torch.nn.Conv2d(cin, cout, 3, padding=1, bias=False)
            with torch.no_grad():
                conv.weight.zero_()
                conv.weight[0, 0, 1, 1] = 1.0
            convs.append(torch.nn.Sequential(conv, torch.nn.ReLU()))
        self.enc[0], self.enc[1] = convs


def test_where_of_a_deeper_layer_is_measured_in_input_pixels():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3, 2] = 1.0
    res = what_where_under_shift(_PoolOnly2(), x, shifts=(0, 2, 4), layer=2)
    # layer 2 sees the 4x4 pooled plane: a 2-pixel shift moves the pixel one column there, i.e. 2 input pixels
    assert res["where_shift"] == pytest.approx([0.0, 2.0, 4.0])
    assert res["global_what_cos"] == pytest.approx([1.0, 1.0, 1.0])


def test_model_view_panel_redraws_during_training():
    from matplotlib.figure import Figure

    from sslteach.widgets import DIAGNOSTICS, ModelViewPanel

    assert "loss_rec" in DIAGNOSTICS and "loss_mid" in DIAGNOSTICS
    seen = []

    def view(model):
        if not hasattr(model, "reconstruct"):
            return None
        seen.append(model.training)
        fig = Figure(figsize=(2, 1))
        fig.add_subplot(1, 1, 1).plot([0, 1])
        return fig

    panel = ModelViewPanel(["swwae", "supervised"], view=view, view_title="reconstructions", steps=20,
                           train_options={"eval_every": 10})
    assert panel.view in panel.widget.children
    r = panel.run()
    assert r.method == "swwae" and panel.view_count == 3  # evaluations at step 10 and 20, then the report model
    assert panel.view.value[:4] == b"\x89PNG"
    n = panel.view_count
    panel.method.value = "supervised"
    panel.run()  # the baseline's network has no decoder: the picture is left as it was
    assert panel.view_count == n and len(panel.table.rows) == 2


# ----------------------------------------------------------------------------- the claims (3 seeds, claim scale)
@pytest.mark.notebook
def test_notebook_06_results(notebook_results):
    res = notebook_results("06_swwae")
    chance = 1 / res["num_classes"]
    for key in ("swwae_accuracy", "same_net_supervised_accuracy"):
        assert math.isfinite(res[key]) and 0 <= res[key] <= 1, key
    assert res["same_net_supervised_accuracy"] > chance  # even a tiny quick run learns from its labels
    toy = res["toy_4x4"]  # section 1a prints these numbers
    assert toy["what"] == [[[[4.0, 5.0], [7.0, 9.0]]]] and toy["where"] == [[[[5, 2], [12, 11]]]]
    assert toy["unpool_where"][0][0][0] == [0.0, 0.0, 5.0, 0.0] and toy["upsample"][0][0][0] == [4.0, 4.0, 5.0, 5.0]
    seeds = res["reconstruction"]["seeds"]
    assert seeds and len(res["reconstruction"]["where"]) == len(res["reconstruction"]["upsample"]) == len(seeds)
    assert all(0 < e < 1 for m in ("where", "upsample") for e in res["reconstruction"][m])
    assert res["reconstruction_ratio"] < 1  # where reconstructs better than upsampling, even in a tiny run
    depth = res["reconstruction_by_depth"]
    assert len(depth["starts"]) == len(depth["where"]) == len(depth["upsample"]) == res["pool_layers"] + 1
    for layer, sh in res["shift"].items():
        assert sh["shift"] == [0, 1, 2, 3] and sh["global_what_cos"][0] == pytest.approx(1.0)
        assert sh["where_shift"][0] == 0.0 and all(-1 <= c <= 1.0001 for c in sh["what_cos"])
    cls = res["classification"]
    for arm in ("swwae", "upsample", "lm0", "labels_only", "supervised"):
        assert len(cls[arm]) == len(cls["seeds"]) and all(0 <= a <= 1 for a in cls[arm]), arm
    assert all(len(v) == 3 for v in res["naive_pool_unpool_mse"].values())  # 8x8: 1, 2, 3 poolings
    assert set(res["exercises_solved"]) == {"reconstruction_terms", "soft_pool"}
    assert res["notebook_seconds"] > 0 and res["notebook_cpu_seconds"] > 0


def test_the_command_line_on_digits_runs_the_regime_where_reconstruction_helps(capsys, tmp_path):
    """``train swwae --dataset digits`` with no method flag: the digits defaults of LEVERS-24 (BatchNorm apart, the
    input reconstruction alone, no augmentation), printed as defaults; a flag given wins over them."""
    from sslteach.cli import main
    from sslteach.train import SWWAE_DIGITS

    out = tmp_path / "run.json"
    assert main(["train", "swwae", "--dataset", "digits", "--steps", "4", "--eval-every", "4", "--no-progress",
                 "--no-cache", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "--separate-passes True" in printed and "--lambda-m 0.0" in printed and "--augment False" in printed
    cfg = json.loads(out.read_text())["method_config"]
    assert {k: cfg[k] for k in SWWAE_DIGITS} == SWWAE_DIGITS == {"separate_passes": True, "lambda_m": 0.0,
                                                                 "augment": False}
    assert main(["train", "swwae", "--dataset", "digits", "--lambda-m", "0.2", "--steps", "4", "--eval-every", "4",
                 "--no-progress", "--no-cache", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["method_config"]["lambda_m"] == 0.2
