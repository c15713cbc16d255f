"""CoSSL (Fan et al., CVPR 2022): TFE's mixing probabilities, draws and kept labels against hand-computed values;
class-balanced sampling; the step (phase 1 is FixMatch bit for bit; in co-learning the pseudo-labels come from the
balanced head on the EMA encoder's weak-view features; the head's loss sends no gradient into the encoder); the
test-time model (EMA encoder + EMA head); the run cache; config and command line; the claim (FixMatch vs
FixMatch + cRT vs CoSSL on long-tailed digits) and notebook 08."""
from __future__ import annotations

import json
import statistics

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sslteach import train
from sslteach.augment import Augmenter
from sslteach.data import make_split, to_float
from sslteach.methods import METHODS, get_method
from sslteach.methods import cossl as cossl_mod
from sslteach.methods.cossl import (CoSSL, CoSSLConfig, CoSSLNet, class_balanced_indices, tfe_features,
                                    tfe_probabilities)
from sslteach.methods.fixmatch import FixMatch

from sslteach.train import Batch, Context


# ----------------------------------------------------------------------------- TFE probabilities
def test_tfe_probabilities_by_hand():
    # N_max = 50: p_c = (50 - N_c) / 50
    p = tfe_probabilities([50, 32, 20, 1])
    assert torch.allclose(p, torch.tensor([0.0, 18 / 50, 30 / 50, 49 / 50]))
    assert torch.allclose(tfe_probabilities(torch.tensor([7, 7])), torch.zeros(2))  # balanced: never mixed


@pytest.mark.parametrize("bad", [[], [3, 0], [-1, 4]])
def test_tfe_probabilities_bad_counts(bad):
    with pytest.raises(ValueError, match="counts must be a non-empty list of class sizes >= 1"):
        tfe_probabilities(bad)


def test_tfe_probabilities_of_the_default_digits_split():
    split = make_split("digits", kind="long_tailed", imbalance_ratio=50)
    counts = split.info["labeled_counts"]
    assert counts == [50, 32, 20, 13, 8, 5, 3, 2, 1, 1]
    p = tfe_probabilities(counts)
    assert p[0] == 0 and p[-1] == pytest.approx(0.98) and p[3] == pytest.approx(37 / 50)


# ----------------------------------------------------------------------------- class-balanced sampling
def test_class_balanced_indices_balance_an_imbalanced_set():
    labels = torch.tensor([0] * 50 + [1] * 5 + [2] * 1)[torch.randperm(56, generator=torch.Generator().manual_seed(1))]
    g = torch.Generator().manual_seed(0)
    idx = class_balanced_indices(labels, 30000, 3, generator=g)
    freq = torch.bincount(labels[idx], minlength=3).float() / 30000
    assert torch.allclose(freq, torch.full((3,), 1 / 3), atol=0.015), freq  # uniform sampling: 0.89 / 0.09 / 0.02
    # within a class every image is equally likely: the 5 images of class 1 each get about 1/5 of its draws
    pos1 = torch.nonzero(labels == 1).flatten()
    per_image = torch.stack([(idx == i).sum() for i in pos1]).float() / (labels[idx] == 1).sum()
    assert torch.allclose(per_image, torch.full((5,), 0.2), atol=0.03), per_image


def test_class_balanced_indices_bad_arguments():
    with pytest.raises(ValueError, match="labels must be a non-empty 1-D tensor"):
        class_balanced_indices(torch.zeros(0, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="n must be >= 1"):
        class_balanced_indices(torch.tensor([0, 1]), 0)


# ----------------------------------------------------------------------------- TFE mixing
def test_tfe_features_by_hand_on_fixed_draws():
    """Five features of classes [0, 1, 2, 1, 2] with p = [0, 0.5, 1] and lam_min = 0.6, generator seed 0.
    Its draws: r = [0.496, 0.768, 0.088, 0.132, 0.307] (mixed where r < p_y: rows 2, 3, 4; row 1 has r = 0.768 >
    0.5, row 0 is the largest class), s = [0.634, 0.490, 0.896, 0.456, 0.632], so lam = 0.6 + 0.4 s =
    [., ., 0.95858, 0.78225, 0.85292]. Each row is mixed with the pool feature at its own position."""
    f_x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [4.0, -1.0], [-2.0, 1.0]])
    f_u = torch.tensor([[10.0, 10.0], [-10.0, 0.0], [0.0, -10.0], [5.0, 5.0], [1.0, 1.0], [9.0, 9.0]])
    y = torch.tensor([0, 1, 2, 1, 2])
    p = torch.tensor([0.0, 0.5, 1.0])
    new, y_new, mixed, lam = tfe_features(f_x, y, f_u, p, lam_min=0.6, generator=torch.Generator().manual_seed(0))
    assert mixed.tolist() == [False, False, True, True, True]
    assert y_new.tolist() == [0, 1, 2, 1, 2]  # the labeled label is kept
    assert torch.allclose(lam, torch.tensor([1.0, 1.0, 0.95858, 0.78225, 0.85292]), atol=1e-5)
    want = torch.tensor([[1.0, 0.0],                   # class 0: never mixed
                         [0.0, 2.0],                   # r = 0.768 >= 0.5: kept
                         [2.87573, 2.46151],           # 0.95858 (3, 3) + 0.04142 (0, -10)
                         [4.21775, 0.30649],           # 0.78225 (4, -1) + 0.21775 (5, 5)
                         [-1.55877, 1.0]])             # 0.85292 (-2, 1) + 0.14708 (1, 1)
    assert torch.allclose(new, want, atol=1e-4)
    assert torch.equal(new[:2], f_x[:2])  # unmixed rows are exactly the labeled features


def test_tfe_features_statistics():
    """Many draws: each class is mixed with probability p_c, lam ~ U(0.6, 1), labels never change."""
    n = 30000
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 4, (n,), generator=g)
    p = torch.tensor([0.0, 0.25, 0.5, 0.9])
    f_x = torch.randn(n, 3, generator=g)
    f_u = torch.randn(n, 3, generator=g)
    new, y_new, mixed, lam = tfe_features(f_x, y, f_u, p, lam_min=0.6, generator=g)
    assert torch.equal(y_new, y)
    for c in range(4):
        assert mixed[y == c].float().mean().item() == pytest.approx(p[c].item(), abs=0.02), c
    lm = lam[mixed]
    assert lm.min() >= 0.6 and lm.max() <= 1.0
    assert lm.mean().item() == pytest.approx(0.8, abs=0.01)  # the mean of U(0.6, 1)
    assert lm.quantile(0.25).item() == pytest.approx(0.7, abs=0.01)
    assert torch.equal(new[~mixed], f_x[~mixed])


def test_tfe_features_bad_arguments():
    f = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"lam_min must be in \[0, 1\]"):
        tfe_features(f, torch.zeros(4, dtype=torch.long), f, torch.zeros(1), lam_min=1.5)
    with pytest.raises(ValueError, match="must share D"):
        tfe_features(f, torch.zeros(4, dtype=torch.long), torch.zeros(4, 2), torch.zeros(1))
    with pytest.raises(ValueError, match="at least 4 pool features"):
        tfe_features(f, torch.zeros(4, dtype=torch.long), torch.zeros(3, 3), torch.zeros(1))


# ----------------------------------------------------------------------------- the step, by hand
class FeatNet(nn.Module):
    """A tiny encoder with its own head: features tanh(W x) [B, 8], logits [B, 10]. Keeps its last logits that
    carry a gradient (the student's forward pass; the EMA copy is a separate object)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(64, 8)
        self.head = nn.Linear(8, 10)
        self.feature_dim = 8
        self.logits = None

    def forward(self, x):
        h = torch.tanh(self.body(x.flatten(1)))
        logits = self.head(h)
        if logits.requires_grad:
            logits.retain_grad()
            self.logits = logits
        return logits, h


class FixedAug(Augmenter):
    """Deterministic, different views: weak = 0.5 x, strong = 1 - x (so expectations can be computed by hand)."""

    def __init__(self):
        super().__init__("image")

    def weak(self, x):
        return 0.5 * x

    def strong(self, x):
        return 1.0 - x


@pytest.fixture(scope="module")
def lt_split(digits):
    return make_split(digits, kind="long_tailed", imbalance_ratio=50, seed=0)


def _setup(lt_split, step=6, total=10, aug=None, b=6, mu=2, **options):
    """CoSSL set up on the long-tailed digits split, a batch of distinct images (shuffled positions), a context."""
    torch.manual_seed(0)
    net = FeatNet()
    method = CoSSL(mu=mu, **options)
    ctx = Context(aug or FixedAug(), step, total, torch.device("cpu"), 10, len(lt_split.y_ulb))
    method.setup(net, lt_split, ctx)
    g = torch.Generator().manual_seed(3)
    i_lb = torch.randperm(len(lt_split.y_lb), generator=g)[:b]
    i_ulb = torch.randperm(len(lt_split.y_ulb), generator=g)[: mu * b]
    batch = Batch(to_float(lt_split.x_lb[i_lb]), lt_split.y_lb[i_lb], to_float(lt_split.x_ulb[i_ulb]),
                  lt_split.y_ulb[i_ulb], i_ulb, idx_lb=i_lb)
    return method, net, batch, ctx


def _start_with_head(method, net, weight_scale=3.0):
    """Co-learning already begun, with a hand-set head, and an EMA encoder that differs from the student."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        method.head.weight.copy_(weight_scale * torch.randn(10, 8, generator=g))
        method.head.bias.copy_(torch.randn(10, generator=g))
        for p in net.parameters():  # the student moves away from its EMA copy
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    method.started = torch.tensor(True)


def test_phase_one_is_the_fixmatch_step(lt_split):
    method, net, batch, ctx = _setup(lt_split, step=3, total=10, warmup=0.5, tau=0.157)
    fm = FixMatch(mu=2, tau=0.157)
    net2 = FeatNet()
    net2.load_state_dict(net.state_dict())
    loss, logs = method.step(net, batch, ctx)
    loss2, logs2 = fm.step(net2, batch, ctx)
    assert loss.item() == loss2.item()
    for k in ("loss_x", "loss_u", "mask_rate"):
        assert logs[k].item() == logs2[k].item(), k
    assert 0 < logs["mask_rate"] < 1 and logs["loss_u"] > 0  # confidences 0.141-0.167: tau = 0.157 keeps 4 of 12
    assert not bool(method.started) and "loss_head" not in logs


def test_co_learning_pseudo_labels_come_from_the_balanced_head_on_ema_features(lt_split):
    tau = 0.5
    method, net, batch, ctx = _setup(lt_split, tau=tau, lambda_u=1.0)
    _start_with_head(method, net)
    ema = method.ema_encoder.module
    with torch.no_grad():
        q = torch.softmax(method.head(ema(0.5 * batch.x_ulb)[1]), 1)  # head(EMA features of the weak view)
    conf, want_pl = q.max(1)
    want_mask = (conf >= tau).float()
    assert 0 < want_mask.sum() < len(want_mask)  # tau falls strictly between the confidences
    assert (conf - tau).abs().min() > 1e-3
    loss, logs = method.step(net, batch, ctx)
    n_lb, n_ulb = len(batch.y_lb), len(batch.y_ulb)
    strong_logits = net.logits[n_lb + n_ulb:]
    want_lu = (F.cross_entropy(strong_logits, want_pl, reduction="none") * want_mask).mean()
    assert logs["mask_rate"].item() == pytest.approx(want_mask.mean().item())
    assert logs["loss_u"].item() == pytest.approx(want_lu.item(), rel=1e-5)
    # the student's own weak-view predictions would give other pseudo-labels: the test can tell them apart
    assert not torch.equal(net.logits[n_lb: n_lb + n_ulb].argmax(1), want_pl)
    # and the total is l_s + lambda_u l_u + l_head
    assert loss.item() == pytest.approx((logs["loss_x"] + logs["loss_u"] + logs["loss_head"]).item(), rel=1e-5)


def test_co_learning_off_keeps_fixmatchs_own_pseudo_labels(lt_split):
    tau = 0.2
    method, net, batch, ctx = _setup(lt_split, tau=tau, co_learning=False)
    _start_with_head(method, net)
    _, logs = method.step(net, batch, ctx)
    n_lb, n_ulb = len(batch.y_lb), len(batch.y_ulb)
    w = net.logits[n_lb: n_lb + n_ulb].detach()
    conf, pl = torch.softmax(w, 1).max(1)
    mask = (conf >= tau).float()
    want = (F.cross_entropy(net.logits[n_lb + n_ulb:].detach(), pl, reduction="none") * mask).mean()
    assert logs["loss_u"].item() == pytest.approx(want.item(), rel=1e-5)
    assert "loss_head" in logs  # the head still trains (it is the test-time classifier)


VIEWS = {"strong": lambda x: 1.0 - x, "weak": lambda x: 0.5 * x, "none": lambda x: x}  # FixedAug's views


@pytest.mark.parametrize("head_view", ["strong", "weak", "none"])
def test_head_loss_on_tfe_features_of_the_ema_encoder(lt_split, monkeypatch, head_view):
    """The head's batch: a class-balanced labeled batch and a pool batch, both in the ``head_view`` view, through
    the EMA encoder; TFE mixes them with p_c; the loss is CE(head(f'), y) with the labeled labels."""
    method, net, batch, ctx = _setup(lt_split, lam_min=0.6, head_view=head_view)
    _start_with_head(method, net)
    seen = {}
    real = cossl_mod.tfe_features

    def spy(f_x, y_x, f_u, prob, lam_min, generator=None):
        out = real(f_x, y_x, f_u, prob, lam_min, generator)
        seen.update(f_x=f_x, y_x=y_x, f_u=f_u, prob=prob, lam_min=lam_min, out=out)
        return out

    fixed = {}
    real_batch = method.balanced_batch

    def batch_spy(n, aug):
        out = real_batch(n, aug)
        fixed["out"] = out
        return out

    monkeypatch.setattr(cossl_mod, "tfe_features", spy)
    monkeypatch.setattr(method, "balanced_batch", batch_spy)
    _, logs = method.step(net, batch, ctx)
    x_bal, y_bal, x_pool = fixed["out"]
    assert len(y_bal) == len(batch.y_lb)  # B labeled images for the head
    ema = method.ema_encoder.module
    with torch.no_grad():
        assert torch.allclose(seen["f_x"], ema(x_bal)[1])  # EMA features, not the student's
        assert torch.allclose(seen["f_u"], ema(x_pool)[1])
        assert not torch.allclose(seen["f_x"], net(x_bal)[1])
    assert torch.equal(seen["y_x"], y_bal) and seen["lam_min"] == 0.6
    assert torch.allclose(seen["prob"], tfe_probabilities(lt_split.info["labeled_counts"]))
    f_new, y_new, mixed, _ = seen["out"]
    want = F.cross_entropy(method.head(f_new), y_new)
    assert logs["loss_head"].item() == pytest.approx(want.item(), rel=1e-5)
    assert logs["tfe_rate"].item() == pytest.approx(mixed.float().mean().item())
    # the balanced batch is made of views of labeled images, with those images' labels; the pool batch of views of
    # labeled or unlabeled images
    d = method._data
    view = VIEWS[head_view]
    for xb, yb in zip(x_bal, y_bal):
        j = torch.nonzero((view(to_float(d["x_lb"])) - xb).flatten(1).abs().sum(1) < 1e-6).flatten()
        assert len(j) >= 1 and d["y_lb"][j[0]] == yb
    for xp in x_pool:
        assert ((view(to_float(d["x_pool"])) - xp).flatten(1).abs().sum(1) < 1e-6).any()


def test_tfe_off_trains_the_head_on_unmixed_features(lt_split):
    method, net, batch, ctx = _setup(lt_split, tfe=False)
    _start_with_head(method, net)
    _, logs = method.step(net, batch, ctx)
    assert logs["tfe_rate"].item() == 0.0


def test_head_loss_sends_no_gradient_into_the_encoder(lt_split):
    """With lambda_u = 0 the encoder's gradient must be that of l_s alone: l_head (on EMA features) adds nothing;
    the head gets a gradient, the EMA encoder none."""
    method, net, batch, ctx = _setup(lt_split, lambda_u=0.0)
    _start_with_head(method, net)
    loss, logs = method.step(net, batch, ctx)
    loss.backward(retain_graph=True)
    g_total = [p.grad.clone() for p in net.parameters()]
    assert method.head.weight.grad is not None and method.head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in method.ema_encoder.module.parameters())
    net.zero_grad()
    F.cross_entropy(net.logits[: len(batch.y_lb)], batch.y_lb).backward()
    for a, b in zip(g_total, net.parameters()):
        assert torch.allclose(a, b.grad, atol=1e-7)
    assert logs["loss_head"].item() > 0


def test_co_learning_starts_at_the_switch_step_with_a_fitted_head(lt_split):
    method, net, batch, ctx = _setup(lt_split, step=4, total=10, warmup=0.5, head_init_steps=30)
    assert method.switch_step(10) == 5
    before = method.head.weight.detach().clone()
    method.step(net, batch, ctx)
    assert not bool(method.started) and torch.equal(method.head.weight, before)
    ctx.step = 5
    _, logs = method.step(net, batch, ctx)
    assert bool(method.started) and "loss_head" in logs
    assert not torch.equal(method.head.weight, before)  # fitted before the step
    for a, b in zip(method.ema_head.module.parameters(), method.head.parameters()):
        assert torch.equal(a, b)  # the EMA head restarts from the fitted head


@pytest.mark.parametrize("tfe", [True, False])
def test_the_switch_fits_the_head_on_fixed_ema_features(lt_split, monkeypatch, tfe):
    """At the switch the head is fitted (the paper's tfe_init, simplified) on the EMA encoder's features of the
    unaugmented labeled images and pool, with TFE's probabilities (zeros without TFE), lam_min and
    head_init_steps."""
    method, net, batch, ctx = _setup(lt_split, step=5, total=10, warmup=0.5, head_init_steps=7, lam_min=0.7,
                                     tfe=tfe)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)  # the student differs from its EMA copy
    seen = {}
    real = cossl_mod.fit_head_offline

    def spy(head, f_lb, y_lb, f_pool, prob, lam_min, steps, batch_size, **kw):
        seen.update(head=head, f_lb=f_lb, y_lb=y_lb, f_pool=f_pool, prob=prob, lam_min=lam_min, steps=steps)
        return real(head, f_lb, y_lb, f_pool, prob, lam_min, steps, batch_size, **kw)

    monkeypatch.setattr(cossl_mod, "fit_head_offline", spy)
    method.step(net, batch, ctx)
    ema = method.ema_encoder.module
    with torch.no_grad():
        assert torch.allclose(seen["f_lb"], ema(to_float(lt_split.x_lb))[1])
        assert torch.allclose(seen["f_pool"], ema(to_float(torch.cat([lt_split.x_lb, lt_split.x_ulb])))[1])
    assert seen["head"] is method.head and torch.equal(seen["y_lb"], lt_split.y_lb)
    want = tfe_probabilities(lt_split.info["labeled_counts"]) if tfe else torch.zeros(10)
    assert torch.allclose(seen["prob"], want) and seen["lam_min"] == 0.7 and seen["steps"] == 7


def test_fit_head_offline_lowers_the_loss():
    g = torch.Generator().manual_seed(0)
    centers = 3 * torch.randn(3, 4, generator=g)
    y = torch.tensor([0] * 20 + [1] * 4 + [2] * 1)
    f = centers[y] + 0.3 * torch.randn(25, 4, generator=g)
    head = nn.Linear(4, 3)
    torch.manual_seed(0)
    losses = cossl_mod.fit_head_offline(head, f, y, f, tfe_probabilities([20, 4, 1]), 0.6, 400, 16)
    assert statistics.mean(losses[-10:]) < 0.5 * statistics.mean(losses[:10])
    assert (head(centers).argmax(1) == torch.arange(3)).all()  # the rarest class is learned too


def test_after_step_updates_the_ema_encoder_always_and_the_ema_head_only_when_co_learning(lt_split):
    method, net, _, ctx = _setup(lt_split, teacher_decay=0.5)
    h0 = method.ema_head.module.weight.detach().clone()
    with torch.no_grad():
        net.body.weight.add_(1.0)
        method.head.weight.add_(1.0)
    e0 = method.ema_encoder.module.body.weight.detach().clone()
    method.after_step(net, ctx)
    assert not torch.equal(method.ema_encoder.module.body.weight, e0)
    assert torch.equal(method.ema_head.module.weight, h0)  # not started: the head is not averaged yet
    method.started = torch.tensor(True)
    method.after_step(net, ctx)
    assert not torch.equal(method.ema_head.module.weight, h0)


# ----------------------------------------------------------------------------- the test-time model
def test_test_time_model_is_ema_encoder_plus_ema_head(lt_split):
    method, net, _, _ = _setup(lt_split)
    x = to_float(lt_split.x_test[:20])
    before = method.test_model()
    assert torch.equal(before(x)[0], method.ema_encoder.module(x)[0])  # FixMatch's head before co-learning
    _start_with_head(method, net)
    with torch.no_grad():
        method.ema_head.module.weight.mul_(-2.0)  # the EMA head differs from the head
    after = method.eval_models()["cossl"]
    with torch.no_grad():
        want = method.ema_head.module(method.ema_encoder.module(x)[1])
        assert torch.allclose(after(x)[0], want)
        assert not torch.allclose(after(x)[0], method.head(method.ema_encoder.module(x)[1]))
    assert isinstance(after, CoSSLNet) and CoSSL.report == "cossl"


def test_a_short_run_reports_the_cossl_model(tmp_path):
    r = train("cossl", "digits", split="long_tailed", steps=8, eval_every=4, warmup=0.5, head_init_steps=5,
              mu=2, batch_size=8, progress=False, seed=1)
    assert r.extra["report"] == "test_acc_cossl" and r.extra["co_learning_started"]
    model = r.report_model()
    assert isinstance(model, CoSSLNet) and model.use_head
    from sslteach.evaluation import evaluate

    split = make_split("digits", kind="long_tailed", seed=1)
    assert evaluate(model, split.x_test, split.y_test) == pytest.approx(r.test_accuracy)
    rec = r.history.records[-1]
    assert {"test_acc_cossl", "test_acc_encoder_head", "test_acc_tail", "test_acc_head", "test_bal_acc"} <= set(rec)
    assert len(r.per_class_accuracy) == 10 and 0 <= r.balanced_accuracy <= 1
    assert "loss_head" in rec and "tfe_rate" in rec


def test_warmup_one_is_fixmatch_bit_for_bit():
    """With warmup = 1 CoSSL never co-learns: the run must equal a FixMatch run with the same seed (the head's
    initialisation does not consume the random stream)."""
    opts = dict(split="long_tailed", steps=6, eval_every=3, seed=2, mu=2, batch_size=8, progress=False)
    a = train("fixmatch", "digits", **opts)
    b = train("cossl", "digits", warmup=1.0, **opts)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    assert a.test_accuracy == b.test_accuracy and not b.extra["co_learning_started"]


def test_cached_run_restores_the_test_time_model(tmp_path):
    opts = dict(split="long_tailed", steps=6, eval_every=3, warmup=0.5, head_init_steps=5, mu=2, batch_size=8,
                progress=False, cache=tmp_path)
    a = train("cossl", "digits", **opts)
    b = train("cossl", "digits", **opts)
    assert b.from_cache and not a.from_cache
    x = to_float(make_split("digits", kind="long_tailed").x_test[:50])
    with torch.no_grad():
        assert torch.equal(a.report_model()(x)[0], b.report_model()(x)[0])
    assert b.report_model().use_head
    # evaluating the test-time model leaves the EMA encoder in eval mode (BatchNorm running statistics)
    from sslteach.evaluation import predict

    predict(a.report_model(), x)
    assert not a.method_obj.ema_encoder.module.training and not a.report_model().training


# ----------------------------------------------------------------------------- configuration, command line
def test_defaults():
    cfg = CoSSLConfig()
    assert (cfg.tau, cfg.lambda_u, cfg.lam_min, cfg.tfe, cfg.co_learning) == (0.95, 1.0, 0.6, True, True)
    from dataclasses import fields

    paper = {f.name: f.metadata["paper"] for f in fields(CoSSLConfig) if f.metadata.get("paper") is not None}
    assert paper == {"mu": 1, "warmup": 0.8, "teacher_decay": 0.999, "head_init_steps": 5000}
    assert "cossl" in METHODS


@pytest.mark.parametrize("option, value, pattern", [
    ("warmup", 1.5, r"warmup must be in \[0(\.0)?, 1(\.0)?\]"),
    ("lam_min", -0.1, r"lam_min must be in \[0(\.0)?, 1(\.0)?\]"),
    ("teacher_decay", 2.0, r"teacher_decay must be in \[0(\.0)?, 1(\.0)?\]"),
    ("head_init_steps", -1, r"head_init_steps must be in \[0, 5000\]"),
    ("tfe", "yes", r"tfe must be True or False"),
    ("head_view", "medium", r"unknown head_view 'medium'; valid values: strong, weak, none"),
    ("tau", float("nan"), r"tau must be in"),
    ("lam", 0.5, r"unknown option.*lam_min"),
])
def test_bad_arguments_raise_clear_errors(option, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        get_method("cossl", **{option: value})


def test_command_line_trains_cossl_on_a_long_tailed_split(capsys, tmp_path):
    from sslteach.cli import main

    out = tmp_path / "run.json"
    rc = main(["train", "cossl", "--split", "long_tailed", "--imbalance-ratio", "50", "--steps", "6",
               "--warmup", "0.5", "--lam-min", "0.7", "--tfe", "false", "--head-init-steps", "5", "--mu", "2",
               "--eval-every", "3", "--no-progress", "--no-cache", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "cossl on digits (long_tailed split, seed 0)" in printed and "balanced accuracy" in printed
    data = json.loads(out.read_text())
    assert data["method_config"]["lam_min"] == 0.7 and data["method_config"]["tfe"] is False
    assert data["split"]["imbalance_ratio"] == 50 and data["split"]["tail_classes"] == [7, 8, 9]
    assert len(data["per_class_accuracy"]) == 10


# ----------------------------------------------------------------------------- the claim
#: The claim's setting: long-tailed digits (gamma = 50, N_max = 50, M_max = 80; tail = classes 7, 8, 9 with 2, 1, 1
#: labeled images) at the claim scale (width 16, B = 16), mu = 3, 600 steps of which the first 402 are FixMatch.
#: At this scale the encoder is still weak when co-learning starts, and a head trained on features of *strong* views
#: stays unconfident (the mask rate drops at the switch and co-learning hurts: measured balanced accuracy 71.6 / 61.6
#: / 73.1 %, tail recall 55.0 / 40.2 / 41.7 % with strong views, below cRT); the claim therefore trains the head on
#: weak views (``head_view="weak"``). The notebook compares the paper's strong views at its default scale.
# ----------------------------------------------------------------------------- widgets and figures
def test_training_panel_trains_cossl_on_a_long_tailed_split():
    from sslteach.widgets import TrainingPanel

    panel = TrainingPanel(["supervised", "cossl"], steps=10, split="long_tailed", imbalance_ratio=20,
                          knobs={"mu": 2, "head_init_steps": 5},
                          train_options={"batch_size": 8, "eval_every": 5},
                          extra_acc={"test_acc_head": "head recall", "test_acc_tail": "tail recall"})
    panel.method.value = "cossl"
    assert {"warmup", "lam_min", "tfe", "co_learning", "head_view"} <= set(panel.knobs)
    r = panel.run()
    assert r.method == "cossl" and r.split["imbalance_ratio"] == 20 and r.extra["co_learning_started"]
    assert "tail accuracy" in panel.table.widget.value
    assert panel.plot.points() == 2


def test_plot_per_class_draws_one_bar_per_class_and_arm():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sslteach.viz import plot_per_class

    ax = plot_per_class({"a": [0.1] * 10, "b": [0.5] * 10}, tail=[7, 8, 9], counts=list(range(10, 0, -1)))
    assert len(ax.patches) == 20 + 3  # 2 x 10 bars and 3 shaded tail spans
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "0\n(10)"
    plt.close("all")


# ----------------------------------------------------------------------------- the notebook
@pytest.mark.notebook
def test_notebook_08_results(notebook_results):
    res = notebook_results("08_cossl")
    c = res["num_classes"]
    assert res["tail_classes"] == [7, 8, 9] and res["labeled_counts"][0] == res["n_max"] == 50
    for name in ("supervised", "fixmatch", "cossl"):
        run = res["runs"][name]
        assert len(run["per_class"]) == c and run["seconds"] > 0
        for key in ("balanced", "tail", "head", "accuracy"):
            assert 0 <= run[key] <= 1, (name, key)
    assert len(res["fixmatch_head_weight_norms"]) == c
    assert res["cossl_switch_step"] == round(0.5 * res["steps"])
    # the toy of section 3 (deterministic, the same in quick mode): what its prose says
    toy = res["toy"]["recall_head_tail"]
    assert toy["TFE"][1] > toy["cRT"][1] > toy["plain"][1]  # tail recall: plain < class-balanced < TFE
    assert toy["plain"][0] > toy["cRT"][0] > toy["TFE"][0]  # ... paid for with head recall
    sweep = res["toy"]["tfe_sweep"]  # lam_min 1.0, 0.8, 0.6, 0.4, 0.2
    tails = [v[1] for v in sweep.values()]
    assert tails == sorted(tails) and sweep["1.0"] == toy["cRT"]  # lam_min = 1: TFE changes nothing
    # the hand-made TFE batch of section 4
    ex = res["tfe_example"]
    assert ex["p"][0] == 0 and ex["p"][9] == pytest.approx(0.98) and ex["labels"] == [0, 3, 7, 9, 9, 5]
    assert not ex["mixed"][0] and all(0.6 <= lam <= 1 for lam in ex["lam"])
    assert all(lam == 1.0 for lam, m in zip(ex["lam"], ex["mixed"]) if not m)
    # the claim section: one value per seed for each arm
    seeds = res["claim_arms"]["seeds"]
    for arm, v in res["claim_arms"]["arms"].items():
        assert len(v["balanced"]) == len(v["tail"]) == len(seeds) >= 1, arm
    assert set(res["claim_arms"]["arms"]) == {"FixMatch", "FixMatch + cRT", "CoSSL without TFE", "CoSSL"}
    from sslteach import claims

    assert set(res["claims"]) == set(claims.ids("08_cossl"))
    assert all(v["status"] in claims.STATUSES and v["seeds"] == seeds for v in res["claims"].values())
    for v in res["posthoc"].values():
        assert 0 <= v["balanced"] <= 1 and 0 <= v["tail"] <= 1
    assert res["notebook_seconds"] > 0  # its wall time depends on the machine's load; measured idle by the lead
