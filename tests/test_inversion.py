"""Semi-supervised learning by (multiscale) deep network inversion (Balestriero et al., arXiv:1711.04313 and
arXiv:1802.10172): the template of a hand-made ReLU network against A[x] computed by hand, templates against an
independent Jacobian, template matching (z = <A[x], x> without biases), no coupling between the images of a batch,
double back-propagation (finite differences; no gradient without create_graph), the loss weights 1 / log C and
1 / (L D^(l)) by hand, every layer covered with its D^(l), the step against an independent recomputation (values and
gradients), config validation, the command line, the run cache, the claims and notebook 07."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from sslteach import train
from sslteach.data import to_float
from sslteach.methods import get_method
from sslteach.methods.inversion import (Inversion, InversionCNN, InversionMLP, entropy, inversion_loss, loss_weights,
                                        reconstruction_errors, templates)
from sslteach.train import Batch, Context

from steptools import TaggedAug


# ----------------------------------------------------------------------------- a ReLU network by hand
def hand_mlp(dtype=torch.float32) -> InversionMLP:
    """2 inputs, two hidden ReLU layers of 3 units, 2 classes, with hand-set weights (see the notebook, section 3)."""
    net = InversionMLP(2, 2, hidden=3).to(dtype)
    with torch.no_grad():
        net.stages[0][0].weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 1.0], [-1.0, 0.5]]))
        net.stages[0][0].bias.copy_(torch.tensor([0.5, -1.0, 0.2]))
        net.stages[1][0].weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.5, -1.0, 1.0], [-1.0, 1.0, 0.0]]))
        net.stages[1][0].bias.copy_(torch.tensor([0.0, 0.5, -0.1]))
        net.head.weight.copy_(torch.tensor([[1.0, 2.0, -1.0], [0.5, 0.0, 1.0]]))
        net.head.bias.copy_(torch.tensor([0.1, -0.2]))
    return net


X_HAND = torch.tensor([[1.0, 2.0]])
# By hand, at x = (1, 2): pre-activations (-0.5, 3, 0.2) -> ReLU mask (0, 1, 1), h1 = (0, 3, 0.2);
# (0.4, -2.3, 2.9) -> mask (1, 0, 1), h2 = (0.4, 0, 2.9); logits z = (-2.4, 2.9): predicted class 1.
# A[x] = W3 D2 W2 D1 W1 = [[-4, 0], [1, 1.5]],  b[x] = W3 D2 (W2 D1 b1 + b2) + b3 = (1.6, -1.1).
A_HAND = [[-4.0, 0.0], [1.0, 1.5]]
B_HAND = [1.6, -1.1]
H1, H2 = [0.0, 3.0, 0.2], [0.4, 0.0, 2.9]
G1 = [-0.5, 1.0, 1.0]  # dz_1 / dh1 = (W3 D2 W2)_1
G2 = [0.5, 0.0, 1.0]   # dz_1 / dh2 = (W3)_1


def test_template_is_the_row_of_A_of_the_predicted_class_by_hand():
    net = hand_mlp()
    logits, hs, gs, c_hat = templates(net, X_HAND)
    assert logits[0].tolist() == pytest.approx([-2.4, 2.9], abs=1e-6)
    assert c_hat.tolist() == [1]
    assert gs[0][0].tolist() == pytest.approx(A_HAND[1], abs=1e-6)  # the reconstruction of x
    # the affine map of the region: z = A[x] x + b[x], for both classes
    A, b = torch.tensor(A_HAND), torch.tensor(B_HAND)
    assert (A @ X_HAND[0] + b).tolist() == pytest.approx(logits[0].tolist(), abs=1e-6)
    # every layer: the representation and its template
    assert hs[1][0].tolist() == pytest.approx(H1, abs=1e-6) and hs[2][0].tolist() == pytest.approx(H2, abs=1e-6)
    assert gs[1][0].tolist() == pytest.approx(G1, abs=1e-6) and gs[2][0].tolist() == pytest.approx(G2, abs=1e-6)


def test_sum_template_adds_the_rows_of_A():
    _, _, gs, _ = templates(hand_mlp(), X_HAND, template="sum")
    assert gs[0][0].tolist() == pytest.approx([A_HAND[0][0] + A_HAND[1][0], A_HAND[0][1] + A_HAND[1][1]], abs=1e-6)


def test_reconstruction_errors_by_hand_and_the_decomposition():
    _, hs, gs, _ = templates(hand_mlp(), X_HAND)
    R = reconstruction_errors(hs, gs)
    # ||x - g0||^2 = 0^2 + 0.5^2; ||h1 - g1||^2 = 0.5^2 + 2^2 + 0.8^2; ||h2 - g2||^2 = 0.1^2 + 0 + 1.9^2
    assert [r.item() for r in R] == pytest.approx([0.25, 4.89, 3.62], abs=1e-5)
    # ||x - g||^2 = ||x||^2 - 2 (z_c - b_c) + ||g||^2: the template-matching identity the notebook shows
    assert 5.0 - 2 * (2.9 - B_HAND[1]) + (1.0 + 2.25) == pytest.approx(R[0].item(), abs=1e-5)


def test_templates_match_an_independent_jacobian_on_a_cnn():
    torch.manual_seed(0)
    net = InversionCNN(1, 10, 8, width=3)
    x = torch.rand(5, 1, 8, 8)
    logits, hs, gs, c_hat = templates(net, x)
    for i in range(len(x)):
        J = torch.autograd.functional.jacobian(lambda xi: net(xi[None])[0][0], x[i])  # [10, 1, 8, 8]
        assert torch.allclose(gs[0][i], J[c_hat[i]], atol=1e-5)
        assert c_hat[i] == logits[i].argmax()
    assert [tuple(h.shape) for h in hs] == [tuple(g.shape) for g in gs]


def test_without_biases_the_logit_is_the_inner_product_with_the_template():
    """Template matching: with every bias at 0 a ReLU / max-pool network is positively homogeneous, so
    z_c(x) = <A[x]_c, x> exactly (b[x] = 0)."""
    torch.manual_seed(1)
    net = InversionCNN(1, 10, 8, width=4)
    with torch.no_grad():
        for m in net.modules():
            if hasattr(m, "bias") and m.bias is not None:
                m.bias.zero_()
    x = torch.rand(6, 1, 8, 8)
    logits, _, gs, c_hat = templates(net, x)
    z = logits.gather(1, c_hat[:, None])[:, 0]
    assert torch.allclose(z, (gs[0] * x).flatten(1).sum(1), atol=1e-5)
    # and the map is affine around x: a small step moves the logit by <template, step>
    v = 1e-4 * torch.randn_like(x)
    z2 = net(x + v)[0].gather(1, c_hat[:, None])[:, 0]
    assert torch.allclose(z2 - z, (gs[0] * v).flatten(1).sum(1), atol=1e-6)


def test_an_images_template_does_not_depend_on_the_rest_of_the_batch():
    """No BatchNorm: one backward pass of sum_i z_{i, c_i} gives each image its own template."""
    torch.manual_seed(2)
    net = InversionCNN(1, 10, 8, width=3)
    x = torch.rand(4, 1, 8, 8)
    _, _, g_batch, _ = templates(net, x)
    _, _, g_alone, _ = templates(net, x[2:3])
    _, _, g_other, _ = templates(net, torch.cat([x[2:3], torch.rand(7, 1, 8, 8)]))
    assert torch.allclose(g_batch[0][2], g_alone[0][0], atol=1e-6)
    assert torch.allclose(g_other[0][0], g_alone[0][0], atol=1e-6)


# ----------------------------------------------------------------------------- double back-propagation
def test_reconstruction_loss_trains_the_weights_through_the_template():
    """R^(0) = ||x - dz_c/dx||^2 depends on the weights only through the template (x is data): its weight gradient
    exists only with double back-propagation, and it equals central finite differences (float64, the ReLU masks
    do not change for steps of 1e-6)."""
    net = hand_mlp(torch.float64)
    x = X_HAND.double()
    _, hs, gs, _ = templates(net, x, create_graph=True)
    r0 = reconstruction_errors(hs[:1], gs[:1])[0]
    auto = dict(zip([n for n, _ in net.named_parameters()],
                    torch.autograd.grad(r0, list(net.parameters()), allow_unused=True)))

    def r0_at_current_weights():
        g0 = templates(net, x, create_graph=False)[2][0]
        return ((x - g0) ** 2).sum().item()

    eps = 1e-6
    for name, p in net.named_parameters():
        g = torch.zeros_like(p) if auto[name] is None else auto[name]
        fd = torch.zeros_like(p)
        flat = p.data.view(-1)
        for idx in range(p.numel()):
            old = flat[idx].item()
            flat[idx] = old + eps
            up = r0_at_current_weights()
            flat[idx] = old - eps
            down = r0_at_current_weights()
            flat[idx] = old
            fd.view(-1)[idx] = (up - down) / (2 * eps)
        assert torch.allclose(g, fd, atol=1e-6), (name, g, fd)
        if name.endswith("weight"):  # every weight matrix shapes the template A[x] = W3 D2 W2 D1 W1 ...
            assert fd.abs().sum() > 0, name
        else:  # ... and no bias does (the ReLU masks stay put)
            assert fd.abs().sum() == 0, name


def test_without_create_graph_the_reconstruction_loss_has_no_gradient():
    net = hand_mlp()
    _, hs, gs, _ = templates(net, X_HAND, create_graph=False)
    r0 = reconstruction_errors(hs[:1], gs[:1])[0]
    assert not r0.requires_grad  # a constant: x is data and the template was detached
    _, hs, gs, _ = templates(net, X_HAND, create_graph=True)
    r0 = reconstruction_errors(hs[:1], gs[:1])[0]
    grads = torch.autograd.grad(r0, list(net.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


# ----------------------------------------------------------------------------- the weights, by hand
def test_loss_weights_by_hand_on_the_digits_network():
    dims = [64, 1024, 256, 512, 512]  # the digits network at width 16, see the next test
    w = loss_weights("multiscale", dims, 10)
    assert w["ce"] == 1.0
    assert w["entropy"] == pytest.approx(0.4342945, abs=1e-7)  # 1 / ln 10
    assert w["recon"] == pytest.approx([1 / 320, 1 / 5120, 1 / 1280, 1 / 2560, 1 / 2560], rel=1e-12)
    assert w["recon"][0] == pytest.approx(0.003125)
    g = loss_weights("global", dims, 10)
    assert g["recon"] == pytest.approx([1 / 64, 0, 0, 0, 0]) and g["entropy"] == w["entropy"]
    e = loss_weights("entropy", dims, 10)
    assert e["recon"] == [0.0] * 5 and e["entropy"] == w["entropy"]
    s = loss_weights("supervised", dims, 10)
    assert s["recon"] == [0.0] * 5 and s["entropy"] == 0.0
    scaled = loss_weights("multiscale", dims, 2, entropy_scale=0.5, recon_scale=3.0)
    assert scaled["entropy"] == pytest.approx(0.5 / math.log(2))
    assert scaled["recon"] == pytest.approx([3 / (5 * d) for d in dims])


def test_loss_weights_bad_arguments():
    with pytest.raises(ValueError, match="unknown mode 'local'"):
        loss_weights("local", [4], 10)
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        loss_weights("entropy", [4], 1)


@pytest.mark.parametrize("size, width, dims", [
    (8, 16, [64, 1024, 256, 512, 512]),                  # digits: x, 16x8x8, 16x4x4 (pooled), 32x4x4, 32x4x4
    (8, 4, [64, 256, 64, 128, 128]),
    (28, 2, [784, 1568, 392, 784, 196, 392, 392]),       # 28x28: one more conv, conv+pool stage
])
def test_multiscale_terms_cover_every_layer_with_its_dimension(size, width, dims):
    torch.manual_seed(0)
    net = InversionCNN(1, 10, size, width=width)
    x = torch.rand(3, 1, size, size)
    batch = Batch(x[:1], torch.tensor([4]), x[1:], torch.tensor([0, 1]))
    ctx = Context(TaggedAug(), 0, 10, torch.device("cpu"), 10, 2)
    t = Inversion(mode="multiscale").losses(net, batch, ctx)
    assert t["dims"] == dims and net.num_layers == len(dims)
    assert len(t["R"]) == len(dims) and all(r.item() > 0 for r in t["R"])
    L = len(dims)
    assert t["weights"]["recon"] == pytest.approx([1 / (L * d) for d in dims])
    assert t["recon"].item() == pytest.approx(sum(r.item() / (L * d) for r, d in zip(t["R"], dims)), rel=1e-5)


def test_entropy_and_total_loss_by_hand():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # p = (1/2, 1/2) and (3/4, 1/4)
    h = (math.log(2) + (-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))) / 2
    assert entropy(logits).item() == pytest.approx(h, abs=1e-6)
    assert entropy(torch.zeros(0, 3)).item() == 0.0
    logits_lb = torch.tensor([[2.0, 0.0]])
    ce = math.log(1 + math.exp(-2.0))
    w = {"ce": 1.0, "entropy": 1 / math.log(2), "recon": [0.5, 0.25]}
    loss, t = inversion_loss(logits_lb, torch.tensor([0]), logits, [torch.tensor(2.0), torch.tensor(4.0)], w)
    assert t["ce"].item() == pytest.approx(ce, abs=1e-6)
    assert t["recon"].item() == pytest.approx(0.5 * 2 + 0.25 * 4)
    assert loss.item() == pytest.approx(ce + h / math.log(2) + 2.0, abs=1e-5)


# ----------------------------------------------------------------------------- the step
def _mlp_and_batch(digits, b=4, mu=2, seed=3):
    torch.manual_seed(seed)
    net = InversionMLP(64, 10, hidden=12)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(200, generator=g)
    x, y = to_float(digits.x_train), digits.y_train
    i_lb, i_ulb = idx[:b], idx[b: b + mu * b]
    batch = Batch(x[i_lb], y[i_lb], x[i_ulb], y[i_ulb], idx_ulb=i_ulb)
    ctx = Context(TaggedAug(), 0, 10, torch.device("cpu"), 10, 200)
    return net, batch, ctx


def _expected(net, x_lb, y_lb, x_ulb, mode, recon_on="all", template="predicted", entropy_scale=1.0,
              recon_scale=1.0):
    """The loss recomputed independently: per-image Jacobians of the network's tail at every layer."""
    x = torch.cat([x_lb, x_ulb]).flatten(1)
    hs = [x]
    for stage in net.stages:
        hs.append(stage(hs[-1]))
    logits = net.head(hs[-1])
    n_lb = len(x_lb)
    ce = F.cross_entropy(logits[:n_lb], y_lb)
    p = logits[n_lb:].softmax(1)
    ent = -(p * p.log()).sum(1).mean()
    total = ce + (0.0 if mode == "supervised" else entropy_scale / math.log(10) * ent)
    if mode in ("global", "multiscale"):
        L = len(hs)
        layers = range(L) if mode == "multiscale" else [0]
        imgs = range(n_lb) if recon_on == "labeled" else range(len(x))
        for l in layers:
            def tail(h, l=l):
                for stage in net.stages[l:]:
                    h = stage(h)
                return net.head(h)
            errs = []
            for i in imgs:
                J = torch.autograd.functional.jacobian(tail, hs[l][i].detach(), create_graph=True)  # [C, D]
                c = int(logits[i].argmax())
                g = J[c] if template == "predicted" else J.sum(0)
                errs.append(((hs[l][i] - g) ** 2).sum())
            D = hs[l].shape[1]
            beta = recon_scale / (L * D) if mode == "multiscale" else recon_scale / D
            total = total + beta * torch.stack(errs).mean()
    return total


@pytest.mark.parametrize("mode, opts", [
    ("multiscale", {}),
    ("global", {}),
    ("multiscale", {"recon_on": "labeled"}),
    ("global", {"template": "sum", "entropy_scale": 0.5, "recon_scale": 2.0}),
    ("entropy", {"entropy_scale": 1.5}),
    ("supervised", {}),
])
def test_step_matches_an_independent_recomputation_values_and_gradients(digits, mode, opts):
    """The views are distinct and recognisable (TaggedAug: weak call 1 -> labeled, call 2 -> unlabeled); the
    expected loss is rebuilt from those views with per-image Jacobians (no call to ``templates``), and its gradient
    on every weight — through the templates, i.e. double back-propagation — must match the step's."""
    net, batch, ctx = _mlp_and_batch(digits)
    method = Inversion(mode=mode, mu=2, **opts)
    if mode == "supervised":
        batch.x_ulb = batch.y_ulb = None  # unlabeled_ratio() is 0: the loop draws none
    loss, logs = method.step(net, batch, ctx)
    views = [v for kind, v in ctx.aug.views]
    assert [k for k, _ in ctx.aug.views] == ["weak"] * len(views)
    x_lb = views[0]
    x_ulb = views[1] if len(views) > 1 else batch.x_lb[:0]
    assert torch.equal(x_lb, batch.x_lb + 0.01)
    if mode != "supervised":
        assert torch.equal(x_ulb, batch.x_ulb + 0.02)
    want = _expected(net, x_lb, batch.y_lb, x_ulb, mode, **opts)
    assert loss.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)
    params = list(net.parameters())
    g_step = torch.autograd.grad(loss, params, allow_unused=True)
    g_want = torch.autograd.grad(want, params, allow_unused=True)
    for p, a, b in zip(params, g_step, g_want):
        a = torch.zeros_like(p) if a is None else a
        b = torch.zeros_like(p) if b is None else b
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), p.shape
    assert logs["loss_x"].item() == pytest.approx(F.cross_entropy(net(x_lb)[0], batch.y_lb).item(), rel=1e-5)


def test_step_logs_every_term_per_layer(digits):
    net, batch, ctx = _mlp_and_batch(digits)
    loss, logs = Inversion(mode="multiscale", mu=2).step(net, batch, ctx)
    assert {"loss_x", "loss_u", "loss_entropy", "loss_recon", "recon_l0", "recon_l1", "recon_l2"} <= set(logs)
    assert logs["loss_u"].item() == pytest.approx(loss.item() - logs["loss_x"].item(), rel=1e-5)
    _, logs_e = Inversion(mode="entropy", mu=2).step(net, batch, ctx)
    assert "recon_l0" not in logs_e and logs_e["loss_recon"].item() == 0.0


def test_reconstruction_learns_from_unlabeled_images_and_entropy_only_from_them(digits):
    net, batch, ctx = _mlp_and_batch(digits)
    batch.x_ulb = batch.x_ulb.clone().requires_grad_(True)
    t = Inversion(mode="global", mu=2).losses(net, batch, ctx)
    # an unlabeled image moves both unlabeled terms (its template is a function of the image)
    for term in ("entropy", "recon"):
        g = torch.autograd.grad(t[term], batch.x_ulb, retain_graph=True)[0]
        assert g.abs().sum() > 0, term
    g_ce = torch.autograd.grad(t["ce"], batch.x_ulb, retain_graph=True, allow_unused=True)[0]
    assert g_ce is None or g_ce.abs().sum() == 0
    t_lab = Inversion(mode="global", mu=2, recon_on="labeled").losses(net, batch, ctx)
    g = torch.autograd.grad(t_lab["recon"], batch.x_ulb, allow_unused=True)[0]
    assert g is None or g.abs().sum() == 0  # recon_on="labeled": the unlabeled images feed the entropy only


def test_supervised_mode_draws_no_unlabeled_images():
    assert Inversion(mode="supervised").unlabeled_ratio() == 0.0
    assert Inversion(mode="entropy", mu=3).unlabeled_ratio() == 3.0


# ----------------------------------------------------------------------------- config, network, CLI, cache
def test_defaults_and_build_model():
    m = get_method("inversion")
    assert m.config_dict() == {"mode": "multiscale", "entropy_scale": 1.0, "recon_scale": 1.0, "recon_on": "all",
                               "template": "predicted", "mu": 1, "augment": True}
    from sslteach.train import TrainConfig

    net = m.build_model((1, 8, 8), 10, TrainConfig(width=4))
    assert isinstance(net, InversionCNN) and not any(isinstance(x, torch.nn.BatchNorm2d) for x in net.modules())
    assert isinstance(m.build_model((2,), 2, TrainConfig()), InversionMLP)
    with pytest.raises(ValueError, match="inversion builds its own BatchNorm-free network"):
        m.build_model((3, 32, 32), 10, TrainConfig(model="wrn28_2"))


@pytest.mark.parametrize("option, value, pattern", [
    ("mode", "local", r"unknown mode 'local'; valid values: supervised, entropy, global, multiscale"),
    ("template", "label", r"unknown template 'label'; valid values: predicted, sum"),
    ("recon_on", "unlabeled", r"unknown recon_on 'unlabeled'; valid values: all, labeled"),
    ("entropy_scale", -0.1, r"entropy_scale must be in \[0(\.0)?, 10(\.0)?\]"),
    ("recon_scale", 11.0, r"recon_scale must be in \[0(\.0)?, 10(\.0)?\]"),
    ("mu", 0, r"mu must be in \[1, 16\]"),
    ("alpha", 0.5, r"unknown option.*mode, entropy_scale, recon_scale, recon_on, template, mu"),
])
def test_bad_arguments_raise_clear_errors(option, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        Inversion(**{option: value})


def test_templates_need_the_methods_network():
    from sslteach.models import SmallCNN

    with pytest.raises(ValueError, match="layer_inputs"):
        templates(SmallCNN(1, 10, 8, width=4), torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="unknown template 'max'"):
        templates(hand_mlp(), X_HAND, template="max")


def test_command_line_trains_inversion(capsys, tmp_path):
    from sslteach.cli import main

    out = tmp_path / "run.json"
    rc = main(["train", "inversion", "--dataset", "digits", "--labels-per-class", "5", "--mode", "global",
               "--steps", "6", "--eval-every", "3", "--no-progress", "--out", str(out)])
    assert rc == 0
    assert "inversion on digits (5 labels/class, seed 0): test accuracy" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["method_config"]["mode"] == "global"
    assert any("recon_l0" in r for r in data["history"]) and not any("recon_l1" in r and r["recon_l1"] is None
                                                                     for r in data["history"])


def test_command_line_rejects_bad_mode(capsys):
    from sslteach.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "inversion", "--mode", "local", "--steps", "2", "--no-progress"])
    assert e.value.code == 2


def test_run_cache_restores_the_network(tmp_path):
    a = train("inversion", steps=5, eval_every=5, seed=1, progress=False, cache=tmp_path, mode="global")
    b = train("inversion", steps=5, eval_every=5, seed=1, progress=False, cache=tmp_path, mode="global")
    assert b.from_cache and not a.from_cache and isinstance(b.model, InversionCNN)
    x = torch.rand(3, 1, 8, 8)
    ga = templates(a.report_model(), x, create_graph=False)[2][0]
    gb = templates(b.report_model(), x, create_graph=False)[2][0]
    assert torch.allclose(ga, gb, atol=1e-6)


def test_panel_draws_the_inversion_terms():
    from sslteach import widgets

    assert {"loss_entropy", "loss_recon", "recon_l0"} <= set(widgets.DIAGNOSTICS)


# ----------------------------------------------------------------------------- the claims (claim scale, 3 seeds)
# ----------------------------------------------------------------------------- the notebook
@pytest.mark.notebook
def test_notebook_07_results(notebook_results):
    res = notebook_results("07_multiscale_inversion")
    chance = 1 / res["num_classes"]
    acc = res["accuracy"]
    for mode in ("supervised", "entropy", "global", "multiscale"):
        assert math.isfinite(acc[mode]) and 0 <= acc[mode] <= 1, mode
    assert max(acc.values()) > chance
    toy = res["hand_network"]  # section 3 prints these numbers
    assert toy["template"] == pytest.approx(A_HAND[1], abs=1e-5)
    assert toy["R"] == pytest.approx([0.25, 4.89, 3.62], abs=1e-4)
    assert toy["beta_e"] == pytest.approx(1 / math.log(2), abs=1e-6)
    assert res["digits_dims"] == [64, 1024, 256, 512, 512]
    assert all(math.isfinite(v) and v > 0 for v in res["step_ms"].values())  # a timing: no comparison asserted
    per_mode = res["mode_accuracy"]
    for mode in ("supervised", "entropy", "global", "multiscale", "global_labeled_only"):
        assert len(per_mode[mode]) == len(per_mode["seeds"]) >= 1, mode


def test_papermill_commands_in_the_notebook_name_real_parameters():
    """Every ``papermill 07_...`` command written in the notebook's text names parameters of its parameters cell, and
    list values go through ``-y`` as YAML lists."""
    import itertools
    import re
    import shlex

    import nbformat
    import yaml
    from conftest import NOTEBOOKS

    nb = nbformat.read(NOTEBOOKS / "07_multiscale_inversion.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    names = {m.group(1) for m in re.finditer(r"^(\w+):", cell.source, re.MULTILINE)}
    lists = {m.group(1) for m in re.finditer(r"^(\w+): list", cell.source, re.MULTILINE)}
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown").replace("\\\n", " ")
    commands = re.findall(r"papermill 07_multiscale_inversion\.ipynb [^`\n]*", text)
    assert len(commands) >= 2
    for cmd in commands:
        words = shlex.split(cmd)
        for flag, value in itertools.pairwise(words):
            if flag == "-p":
                assert value in names and value not in lists, cmd
            if flag == "-y":
                parsed = yaml.safe_load(value)
                assert set(parsed) <= names and all(isinstance(parsed[k], list) for k in parsed if k in lists), cmd
