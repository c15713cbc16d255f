"""The options added for the lever search of issue 24 (benchmarks/levers/LEVERS-24.md), each off by default:
SWWAE's ``augment``, ``mid_stop_grad`` and ``encode_unlabeled`` (the BatchNorm control arm), the inversion's
``augment``. Fast unit tests on a handful of random 8x8 images."""
from __future__ import annotations

import pytest
import torch

from sslteach.methods.inversion import Inversion, InversionCNN
from sslteach.methods.swwae import SWWAE, SWWAEConfig, SWWAENet
from sslteach.train import Batch, Context

from steptools import CountingAug


def _batch_ctx(aug, b=4, mu=2):
    """``b`` labeled and ``mu * b`` unlabeled random 8x8 images in [0, 1] (fixed seed), and a CPU context."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(b + mu * b, 1, 8, 8, generator=g), torch.randint(0, 10, (b + mu * b,), generator=g)
    batch = Batch(x[:b], y[:b], x[b:], y[b:], idx_ulb=torch.arange(mu * b))
    return batch, Context(aug, 0, 10, torch.device("cpu"), 10, mu * b)


def _net(seed=0):
    torch.manual_seed(seed)
    return SWWAENet(1, 10, 2, width=4)


def test_new_swwae_options_default_to_todays_behaviour():
    cfg = SWWAEConfig()
    assert cfg.augment is True and cfg.mid_stop_grad is False and cfg.encode_unlabeled is False
    assert SWWAE(lambda_rec=0.0, lambda_m=0.0, mu=3).unlabeled_ratio() == 0.0
    with pytest.raises(ValueError, match="augment"):
        SWWAE(augment=1)


def test_swwae_augment_false_asks_for_no_view_and_reconstructs_the_images():
    aug = CountingAug()
    batch, ctx = _batch_ctx(aug)
    net = _net()
    t = SWWAE(mu=2, augment=False).losses(net, batch, ctx)
    assert aug.calls == {"weak": 0, "strong": 0}
    x = torch.cat([batch.x_lb, batch.x_ulb])
    want = torch.nn.functional.mse_loss(net.reconstruct(x)[0], x)
    assert t["rec"].item() == pytest.approx(want.item(), rel=1e-5)
    SWWAE(mu=2).losses(net, batch, ctx)
    assert aug.calls["weak"] == 2  # the default still augments labeled and unlabeled images


def test_swwae_encode_unlabeled_lets_batchnorm_see_unlabeled_images_without_a_loss():
    method = SWWAE(lambda_rec=0.0, lambda_m=0.0, mu=2, encode_unlabeled=True, augment=False)
    assert method.unlabeled_ratio() == 2.0  # the trainer draws unlabeled images for this arm
    batch, ctx = _batch_ctx(CountingAug())
    net = _net()
    seen = []
    net.enc[0][1].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    decoded = []
    net.dec_top.register_forward_hook(lambda *a: decoded.append(1))
    loss, logs = method.step(net, batch, ctx)
    assert seen == [12] and decoded == []  # BatchNorm saw 4 labeled + 8 unlabeled images; no decoder pass
    # the loss is the labeled NLL only, with the logits of the joint pass (BatchNorm statistics over all 12)
    net2 = _net()
    logits, _ = net2(torch.cat([batch.x_lb, batch.x_ulb]))
    want = torch.nn.functional.cross_entropy(logits[:4], batch.y_lb)
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert logs["loss_rec"] == 0 and logs["loss_mid"] == 0
    # the unlabeled images get no gradient through the loss (but do change the labeled logits via BatchNorm)
    net3 = _net()
    alone, _ = net3(batch.x_lb)
    assert not torch.allclose(alone, logits[:4])


def test_swwae_mid_stop_grad_detaches_only_the_encoder_side():
    batch, ctx = _batch_ctx(CountingAug())
    grads = {}
    for sg in (False, True):
        net = _net()
        t = SWWAE(mu=2, augment=False, mid_stop_grad=sg).losses(net, batch, ctx)
        net.zero_grad()
        t["mid"].backward()
        grads[sg] = {n: (p.grad.abs().sum().item() if p.grad is not None else 0.0) for n, p in net.named_parameters()}
        # the value of the term does not change with the stop-gradient
        grads[sg]["value"] = t["mid"].item()
    assert grads[True]["value"] == pytest.approx(grads[False]["value"], rel=1e-6)
    enc_first = "enc.0.0.weight"  # an encoder weight below every pooled map: only the encoder side reaches it...
    assert grads[False][enc_first] > 0
    # ...through x_1 (its target side) and through the decoder input z; with the stop-gradient only via z remains,
    # so the gradient changes but the decoder still gets one
    assert grads[True][enc_first] != pytest.approx(grads[False][enc_first])
    assert grads[True]["dec.1.0.weight"] > 0 and grads[True]["dec_top.0.weight"] > 0


def test_swwae_mid_stop_grad_on_a_single_pair_has_no_encoder_gradient():
    # with the decoder's maps constant, the stopped term gives the encoder no gradient at all
    from sslteach.methods.swwae import reconstruction_terms
    enc = torch.randn(2, 3, 4, 4, requires_grad=True)
    dec = torch.randn(2, 3, 4, 4, requires_grad=True)
    x = torch.rand(2, 1, 8, 8)
    _, mid = reconstruction_terms(x, x.clone(), [(enc.detach(), dec)])
    mid.backward()
    assert enc.grad is None and dec.grad is not None and dec.grad.abs().sum() > 0


def test_inversion_augment_false_uses_the_images_as_they_are():
    aug = CountingAug()
    batch, ctx = _batch_ctx(aug)
    torch.manual_seed(0)
    net = InversionCNN(1, 10, 8, width=4)
    assert Inversion().config.augment is True
    t = Inversion(mode="global", augment=False, mu=2).losses(net, batch, ctx)
    assert aug.calls == {"weak": 0, "strong": 0}
    x = torch.cat([batch.x_lb, batch.x_ulb])
    x_in = x.clone().requires_grad_(True)
    logits = net(x_in)[0]
    g, = torch.autograd.grad(logits.gather(1, logits.argmax(1, keepdim=True)).sum(), x_in)
    want = (x - g).pow(2).flatten(1).sum(1).mean()
    assert t["R"][0].item() == pytest.approx(want.item(), rel=1e-4)
    Inversion(mode="global", mu=2).losses(net, batch, ctx)
    assert aug.calls["weak"] == 2


def test_swwae_separate_passes_normalises_the_labeled_batch_on_its_own():
    batch, ctx = _batch_ctx(CountingAug())
    net = _net()
    seen = []
    net.enc[0][1].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    t = SWWAE(mu=2, augment=False, separate_passes=True).losses(net, batch, ctx)
    assert seen == [4, 8]  # two encoder passes: the labeled batch, then the unlabeled one
    net2 = _net()
    logits_alone, _ = net2(batch.x_lb)  # the labeled logits are those of a labeled-only pass (train-mode BN)
    want_nll = torch.nn.functional.cross_entropy(logits_alone, batch.y_lb)
    assert t["nll"].item() == pytest.approx(want_nll.item(), rel=1e-5)
    # the reconstruction terms are still means over all 12 images, each reconstructed within its own pass
    rec_l = net2.reconstruct(batch.x_lb)[0]
    rec_u = net2.reconstruct(batch.x_ulb)[0]
    x = torch.cat([batch.x_lb, batch.x_ulb])
    want_rec = torch.nn.functional.mse_loss(torch.cat([rec_l, rec_u]), x)
    assert t["rec"].item() == pytest.approx(want_rec.item(), rel=1e-5)
    assert SWWAEConfig().separate_passes is False
