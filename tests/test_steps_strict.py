"""Step-level tests that a plausible bug cannot pass (issue 10).

Each test drives one method's ``step`` (or ``losses``) by hand with inputs chosen so that the right code and the
buggy one disagree: views that differ (a deterministic augmenter that tags every call), unlabeled images whose
position in the batch is not their index in the unlabeled set, a threshold strictly between the confidences, a
temperature other than 1, labeled and unlabeled rows with different losses. The expected value is computed
independently from what the network actually received. The bug each test guards against, checked by breaking the
code on purpose, is named in its docstring.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sslteach.methods.consistency import (MeanTeacher, TemporalEnsembling, softmax_mse_loss,
                                          temporal_ensembling_loss)
from sslteach.methods.crmatch import CRMatch
from sslteach.methods.noisy_student import NoisyStudent, noisy_student_loss
from sslteach.methods.pseudo_label import PseudoLabel
from sslteach.methods.simmatch import SimMatch, simmatch_instance_loss, simmatch_pseudo_labels

from steptools import RecordingNet, TaggedAug, batch_and_ctx, shuffled_batch_and_ctx


# ----------------------------------------------------------------------------- Mean Teacher: the teacher's view
def test_mean_teacher_gives_the_teacher_an_independent_view(digits):
    """Bug guarded: the teacher fed the student's own augmented view (``teacher_logits(x_ulb_s)``) instead of a
    view of its own — then student and teacher see identical inputs and the consistency cost measures only the
    weight difference."""
    aug = TaggedAug()
    batch, ctx = batch_and_ctx(digits, b=4, mu=3, step=9, total=10, aug=aug)
    net = RecordingNet()
    method = MeanTeacher(noise_std=0.0)
    method.setup(net, None, ctx)
    out = method.losses(net, batch, ctx)
    weak = [v for kind, v in aug.views if kind == "weak"]
    assert len(weak) == 3  # labeled, student's unlabeled, teacher's unlabeled
    student_in = net.inputs[len(batch.x_lb):]
    teacher_in = method.teacher.module.inputs
    assert torch.equal(student_in, weak[1]) and torch.equal(teacher_in, weak[2])
    assert not torch.equal(teacher_in, student_in)
    with torch.no_grad():
        t_logits = method.teacher.module.fc(weak[2].flatten(1))
    expected = softmax_mse_loss(net.logits[len(batch.x_lb):].detach(), t_logits)
    assert out["loss_u"].item() == pytest.approx(expected.item(), rel=1e-6)


# ----------------------------------------------------------------------------- per-image targets: by image index
def test_temporal_ensembling_looks_targets_up_and_records_by_image_index(digits):
    """Bug guarded: targets looked up (or this step's predictions recorded) by position in the batch,
    ``lookup(arange(n))``, instead of by the images' indices in the unlabeled set."""
    batch, ctx = shuffled_batch_and_ctx(digits, b=4, mu=3, aug=TaggedAug(), num_unlabeled=40)
    assert not torch.equal(batch.idx_ulb, torch.arange(len(batch.idx_ulb)))
    net = RecordingNet()
    method = TemporalEnsembling(noise_std=0.0)
    method.setup(net, None, ctx)
    # every image i of the unlabeled set has its own target (one-hot of class i % 10); half of them have none yet
    method.ensemble.targets = F.one_hot(torch.arange(40) % 10, 10).float()
    method.ensemble.counts = (torch.arange(40) % 2).long()
    out = method.losses(net, batch, ctx)
    logits_u = net.logits[4:].detach()
    expected, mask = temporal_ensembling_loss(logits_u, F.one_hot(batch.idx_ulb % 10, 10).float(),
                                              (batch.idx_ulb % 2).float())
    assert out["loss_u"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out["mask_rate"].item() == pytest.approx(mask.mean().item())
    recorded = method.ensemble._epoch[batch.idx_ulb]
    assert torch.allclose(recorded, torch.softmax(logits_u, 1))  # this step's predictions went to the same rows
    others = torch.ones(40, dtype=torch.bool)
    others[batch.idx_ulb] = False
    assert method.ensemble._epoch[others].abs().sum() == 0


def test_noisy_student_looks_pseudo_labels_up_by_image_index(digits):
    """Bug guarded: the teacher's pseudo-labels (and its keep filter) taken by batch position,
    ``targets[:n]``, instead of ``targets[idx_ulb]``."""
    batch, ctx = shuffled_batch_and_ctx(digits, b=4, mu=3, aug=TaggedAug(), num_unlabeled=40)
    net = RecordingNet()
    method = NoisyStudent(noise=False, tau=0.5)
    method.round = 1  # a student round: the teacher has labeled the unlabeled set
    g = torch.Generator().manual_seed(1)
    method.targets = torch.softmax(3 * torch.randn(40, 10, generator=g), 1)
    method.keep = (torch.arange(40) % 3 != 0).float()
    out_loss, logs = method.step(net, batch, ctx)
    logits_u = net.logits[4:].detach()
    expected = noisy_student_loss(logits_u, method.targets[batch.idx_ulb], method.keep[batch.idx_ulb])
    assert logs["loss_u"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert logs["mask_rate"].item() == pytest.approx(method.keep[batch.idx_ulb].mean().item())


# ----------------------------------------------------------------------------- Pseudo-Label: unlabeled rows only
def test_pseudo_label_unlabeled_loss_uses_only_the_unlabeled_rows(digits):
    """Bug guarded: the pseudo-label loss computed over the labeled and the unlabeled rows together
    (``pseudo_label_loss(logits, ...)`` on the whole batch)."""
    torch.manual_seed(0)
    batch, ctx = batch_and_ctx(digits, b=4, mu=3, step=9, total=10, aug=TaggedAug())
    net = RecordingNet()
    with torch.no_grad():  # make the labeled rows very different from the unlabeled ones
        net.fc.weight.mul_(5)
    method = PseudoLabel(tau=0.0)
    _, logs = method.step(net, batch, ctx)
    logits_u = net.logits[4:].detach()
    expected = F.cross_entropy(logits_u, logits_u.argmax(1))
    assert logs["loss_u"].item() == pytest.approx(expected.item(), rel=1e-6)
    everything = F.cross_entropy(net.logits.detach(), net.logits.detach().argmax(1))
    assert abs(everything.item() - expected.item()) > 1e-3  # the two computations really differ here


# ----------------------------------------------------------------------------- CR-Match: the confidence mask
def test_crmatch_feature_loss_counts_only_confident_images(digits):
    """Bug guarded: the feature distance loss computed on every image, ignoring FixMatch's confidence mask (a
    test with tau = 0 cannot see it). Here tau sits strictly between the images' confidences."""
    torch.manual_seed(0)
    aug = TaggedAug()
    batch, ctx = batch_and_ctx(digits, b=4, mu=3, step=5, total=10, aug=aug)
    net = RecordingNet()
    with torch.no_grad():
        net.fc.weight.mul_(20)  # spread the confidences over (0, 1)
    probe = torch.softmax(net(aug.weak(batch.x_ulb))[0], 1).max(1).values
    aug.views.clear(), aug.calls.update(weak=0, strong=0)
    tau = float(probe.median())
    method = CRMatch(tau=tau, feat_mode="invariance", feat_source="pooled")
    split = type("S", (), {"x_lb": batch.x_lb})()
    method.setup(net, split, ctx)
    _, logs = method.step(net, batch, ctx)
    n_lb, n_u = 4, 12
    logits_w = net.logits[n_lb: n_lb + n_u].detach()
    mask = (torch.softmax(logits_w, 1).max(1).values >= tau).float()
    assert 0 < mask.sum() < n_u  # some images pass, some do not
    feats = net.inputs[n_lb:].flatten(1)
    with torch.no_grad():
        h_w, h_s = method.head(feats).split(n_u)
    per_image = 1 - F.cosine_similarity(h_w, h_s, dim=1)
    assert logs["loss_feat"].item() == pytest.approx((per_image * mask).mean().item(), rel=1e-5)
    assert abs(per_image.mean().item() - (per_image * mask).mean().item()) > 1e-3


# ----------------------------------------------------------------------------- SimMatch: the temperature
def test_simmatch_step_uses_its_temperature_for_the_instance_similarities(digits):
    """Bug guarded: the instance similarities of SimMatch computed without the temperature (a test with t = 1
    cannot see it), in the pseudo-labels or in L_in."""
    torch.manual_seed(0)
    aug = TaggedAug()
    batch, ctx = shuffled_batch_and_ctx(digits, b=4, mu=3, aug=aug, num_unlabeled=40)
    net = RecordingNet()
    net.feature_dim = 64  # RecordingNet's features are its flattened input
    t = 0.3
    method = SimMatch(sim_temperature=t, smoothing_alpha=0.7, tau=0.0, proj_dim=8)
    split = type("S", (), {"x_lb": batch.x_lb, "y_lb": batch.y_lb})()
    method.setup(net, split, ctx)
    bank = method.bank.clone()
    aug.views.clear()
    _, logs = method.step(net, batch, ctx)
    views = dict(((k, i), v) for i, (k, v) in enumerate(aug.views))
    x_lb_w, x_ulb_w, x_ulb_s = views[("weak", 0)], views[("weak", 1)], views[("strong", 2)]
    with torch.no_grad():
        _, z = method.student(torch.cat([x_lb_w, x_ulb_s]))
        t_logits, t_z = method.teacher.module(torch.cat([x_lb_w, x_ulb_w]))
    probs_w = torch.softmax(t_logits[4:], 1)
    _, q_hat, _ = simmatch_pseudo_labels(probs_w, t_z[4:], bank, method.bank_labels, t, 0.7)
    expected, _ = simmatch_instance_loss(z[4:], bank, q_hat, t)
    assert logs["loss_in"].item() == pytest.approx(expected.item(), rel=1e-4)
    _, q_hat_1, _ = simmatch_pseudo_labels(probs_w, t_z[4:], bank, method.bank_labels, 1.0, 0.7)
    wrong, _ = simmatch_instance_loss(z[4:], bank, q_hat_1, 1.0)
    assert abs(wrong.item() - expected.item()) > 1e-3  # a temperature of 1 would give another number
