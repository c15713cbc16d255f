"""FixMatch — Sohn et al., "FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence",
NeurIPS 2020 (official code: google-research/fixmatch).

The pseudo-label comes from the *weak* view, with the gradient stopped, and is kept only if the model is confident;
the model is then trained to predict it on the *strong* view of the same image.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import Method, MethodConfig, param, pseudo_label_accuracy, supervised_loss


def fixmatch_unlabeled_loss(logits_x_ulb_w: torch.Tensor, logits_x_ulb_s: torch.Tensor, tau: float):
    """FixMatch's unlabeled loss, Sohn et al. 2020, Eq. (4):

        q_b = p_m(y | alpha(u_b))  (weak view, gradient stopped),   q_hat_b = argmax q_b
        l_u = 1 / (mu B) * sum_b 1[max q_b >= tau] * H(q_hat_b, p_m(y | A(u_b)))

    The sum runs over *all* mu*B unlabeled images: images below the threshold count as zeros in the mean (so the
    loss shrinks when few images pass, as in the official code; it is not divided by the number that pass).
    ``tau = 0`` keeps every image: plain hard pseudo-labelling of every strong view. The computation is done in
    float32 even when the logits come from mixed precision.

    Args: ``logits_x_ulb_w``, ``logits_x_ulb_s``: ``[mu*B, C]`` logits of the weak and strong views; ``tau`` in [0, 1].
    Returns: ``(loss_u, mask [mu*B] of 0/1, pseudo_label [mu*B])``; the mask's mean is the "mask rate" (USB calls it
    ``util_ratio``).
    """
    if isinstance(tau, (int, float)) and not 0.0 <= tau <= 1.0:  # NaN fails too
        raise ValueError(f"tau must be in [0, 1] (a probability threshold); got {tau}")
    q = torch.softmax(logits_x_ulb_w.detach().float(), dim=1)  # stop-gradient: the target is a constant
    max_q, pseudo_label = q.max(dim=1)
    mask = (max_q >= tau).float()
    loss_u = (F.cross_entropy(logits_x_ulb_s.float(), pseudo_label, reduction="none") * mask).mean()
    return loss_u, mask, pseudo_label


def distribution_alignment(q: torch.Tensor, p_model: torch.Tensor, p_target: torch.Tensor | None = None):
    """Distribution alignment, Berthelot et al., ReMixMatch (ICLR 2020), Sec. 3.2 — *not* part of FixMatch:

        q_tilde = Normalize(q * p(y) / p_tilde(y))

    ``q`` ``[N, C]``: predicted class probabilities of the unlabeled images; ``p_model`` ``[C]``: the running mean of
    the model's predictions on unlabeled images (p_tilde); ``p_target`` ``[C]``: the class distribution the
    predictions should have on average (the labeled one; ``None``: uniform). A class the model predicts too often
    is scaled down, one it neglects is scaled up, so the confident pseudo-labels do not collapse onto a few classes.
    """
    if p_target is None:
        p_target = torch.full_like(p_model, 1.0 / len(p_model))
    q = q * (p_target / p_model.clamp_min(1e-6))
    return q / q.sum(dim=1, keepdim=True)


@dataclass
class FixMatchCoreConfig(MethodConfig):
    """FixMatch's own knobs, shared with the methods built on it (CR-Match)."""

    tau: float = param(0.95, "confidence threshold tau for keeping a pseudo-label", 0.0, 1.0, 0.01)
    lambda_u: float = param(1.0, "weight lambda_u of the unlabeled loss", 0.0, 10.0, 0.1)
    mu: int = param(7, "unlabeled images per labeled image in a batch", 1, 16, 1)
    strong: bool = param(True, "predict on the strong view (False: weak/weak consistency, the ablation)")


@dataclass
class FixMatchConfig(FixMatchCoreConfig):
    dist_align: bool = param(False, "distribution alignment of the weak-view predictions before the threshold "
                             "(ReMixMatch's; not in FixMatch)")
    da_momentum: float = param(0.999, "momentum of the running mean of the predictions that distribution "
                               "alignment divides by", 0.0, 1.0, 0.001)


class FixMatch(Method):
    """total = l_s + lambda_u * l_u, one forward pass over [weak labeled, weak unlabeled, strong unlabeled].

    ``l_s`` is the cross-entropy on the weakly augmented labeled images (Eq. 2); ``l_u`` is
    :func:`fixmatch_unlabeled_loss` (Eq. 4). One concatenated batch means BatchNorm sees labeled and unlabeled
    images together, as in the official code. ``strong=False`` is the weak/weak ablation: the prediction is made on
    a second, independent weak view instead of a RandAugment + Cutout view. ``dist_align=True`` adds ReMixMatch's
    :func:`distribution_alignment` to the weak-view predictions before the threshold (not in FixMatch's paper or
    code; the ``real_images`` preset measures what it adds on Fashion-MNIST).
    """

    name = "fixmatch"
    title = "FixMatch"
    summary = "confident weak-view pseudo-labels, learned on strong views (Sohn et al. 2020)"
    paper = "Sohn et al., FixMatch, NeurIPS 2020"
    year = 2020
    family = "pseudo-labels + consistency"
    notebook = "03_fixmatch"
    state = ("p_model",)
    cpu_ms_per_step = 22.0
    Config = FixMatchConfig

    def setup(self, model, split, ctx):
        # the running mean of the predictions on unlabeled images (distribution alignment only), uniform at first
        self.p_model = torch.full((ctx.num_classes,), 1.0 / ctx.num_classes, device=ctx.device)

    def step(self, model, batch, ctx):
        cfg = self.config
        x_lb_w = ctx.aug.weak(batch.x_lb)
        x_ulb_w = ctx.aug.weak(batch.x_ulb)
        x_ulb_s = ctx.aug.strong(batch.x_ulb) if cfg.strong else ctx.aug.weak(batch.x_ulb)
        logits, _ = model(torch.cat([x_lb_w, x_ulb_w, x_ulb_s]))
        n_lb, n_ulb = len(x_lb_w), len(x_ulb_w)
        logits_x_lb = logits[:n_lb]
        logits_x_ulb_w, logits_x_ulb_s = logits[n_lb:].split(n_ulb)
        loss_x = supervised_loss(logits_x_lb, batch.y_lb)
        if cfg.dist_align:  # align the weak-view predictions, then threshold them (the target stays a constant)
            q = torch.softmax(logits_x_ulb_w.detach().float(), dim=1)
            self.p_model = cfg.da_momentum * self.p_model + (1 - cfg.da_momentum) * q.mean(dim=0)
            logits_x_ulb_w = distribution_alignment(q, self.p_model).log()
        loss_u, mask, pseudo = fixmatch_unlabeled_loss(logits_x_ulb_w, logits_x_ulb_s, cfg.tau)
        loss = loss_x + cfg.lambda_u * loss_u
        return loss, {"loss_x": loss_x.detach(), "loss_u": loss_u.detach(), "mask_rate": mask.mean(),
                      "pseudo_acc": pseudo_label_accuracy(pseudo, batch.y_ulb, mask)}
