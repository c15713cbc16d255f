"""SimMatch — Zheng, You, Huang, Wang, Qian & Xu, "SimMatch: Semi-supervised Learning with Similarity Matching",
CVPR 2022, arXiv:2203.06915 (official code: mingkai-zheng/SimMatch, formerly KyleZheng1997/simmatch).

Besides the class prediction p (semantic similarity to the classifier's class centres), every image gets an
embedding z (an MLP projection head, L2-normalised) and is compared with a *labeled memory bank*: one embedding per
labeled image, written by an EMA teacher. The weak view's similarities to the bank, q_w, give an instance-level
pseudo-label; the strong view must reproduce it (L_in). The two kinds of pseudo-label are mixed both ways:

* **unfolding** (class -> instance): each bank entry's similarity is re-weighted by the class probability the weak
  view gives to that entry's label, so bank images of unlikely classes lose weight;
* **aggregation** (instance -> class): similarities are summed per class and mixed into the class pseudo-label,
  which is then thresholded as in FixMatch and used as a *soft* target.

As in the official code: the EMA teacher produces the weak-view predictions, the weak-view embeddings and the bank;
the student sees only the labeled and the strong views; one temperature t for both views; the bank slot of each
labeled image is overwritten with the teacher's embedding of its weak view at every step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import to_float
from ..evaluation import EMA
from .base import Method, MethodConfig, param, pseudo_label_accuracy, supervised_loss


def _check_bank(emb: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor | None = None):
    if emb.ndim != 2 or bank.ndim != 2 or emb.shape[1] != bank.shape[1]:
        raise ValueError(f"embeddings [N, D] and bank [K, D] must share D; got {tuple(emb.shape)} and "
                         f"{tuple(bank.shape)}")
    if bank_labels is not None and bank_labels.shape != bank.shape[:1]:
        raise ValueError(f"bank_labels must have shape [{bank.shape[0]}] (one label per bank entry); got "
                         f"{tuple(bank_labels.shape)}")


def simmatch_pseudo_labels(probs_w: torch.Tensor, emb_w: torch.Tensor, bank: torch.Tensor,
                           bank_labels: torch.Tensor, temperature: float = 0.1, alpha: float = 0.9):
    """SimMatch's pseudo-labels from the weak view (Zheng et al. 2022, Sec. 3: instance similarity, unfolding and
    aggregation). Computed without gradient (they are targets):

        q_w[b, j]  = softmax_j(z_w_b . bank_j / t)                      instance similarity to the labeled bank
        unfolding:   q_hat[b, j] = q_w[b, j] * p_w[b, y_j] / sum_k q_w[b, k] * p_w[b, y_k]   (instance target)
        aggregation: q_agg[b, c] = sum_{j: y_j = c} q_w[b, j]            (bank similarity summed per class)
                     p_hat[b]    = alpha * p_w[b] + (1 - alpha) * q_agg[b]                 (class target)

    Args: ``probs_w``: ``[N, C]`` class probabilities of the weak view (teacher); ``emb_w``: ``[N, D]`` its
    L2-normalised embeddings; ``bank``: ``[K, D]`` labeled embeddings; ``bank_labels``: ``[K]`` their labels;
    ``temperature`` t > 0; ``alpha`` in [0, 1] (1: no aggregation).
    Returns: ``(p_hat [N, C], q_hat [N, K], q_w [N, K])``.
    """
    _check_bank(emb_w, bank, bank_labels)
    if probs_w.shape[0] != emb_w.shape[0]:
        raise ValueError(f"probs_w and emb_w must have the same number of rows; got {probs_w.shape[0]} and "
                         f"{emb_w.shape[0]}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    with torch.no_grad():
        probs_w, emb_w, bank = probs_w.float(), emb_w.float(), bank.float()
        q_w = torch.softmax(emb_w @ bank.T / temperature, dim=1)               # [N, K]
        labels = bank_labels.long().expand(len(q_w), -1)                       # [N, K]
        q_hat = q_w * probs_w.gather(1, labels)                                # unfolding
        q_hat = q_hat / q_hat.sum(dim=1, keepdim=True).clamp(min=1e-12)
        q_agg = torch.zeros_like(probs_w).scatter_add_(1, labels, q_w)        # aggregation, [N, C]
        p_hat = alpha * probs_w + (1.0 - alpha) * q_agg
    return p_hat, q_hat, q_w


def simmatch_instance_loss(emb_s: torch.Tensor, bank: torch.Tensor, q_hat: torch.Tensor, temperature: float = 0.1):
    """SimMatch's instance consistency loss: the strong view's similarity distribution to the bank must match the
    (unfolded) weak one,

        q_s[b, j] = softmax_j(z_s_b . bank_j / t),     L_in = 1 / (mu B) * sum_b H(q_hat_b, q_s_b)

    The bank and ``q_hat`` are constants (no gradient); the gradient reaches the strong view's embedding.
    Args: ``emb_s``: ``[N, D]`` normalised; ``bank``: ``[K, D]``; ``q_hat``: ``[N, K]``. Returns ``(L_in, q_s)``.
    """
    _check_bank(emb_s, bank)
    if q_hat.shape != (emb_s.shape[0], bank.shape[0]):
        raise ValueError(f"q_hat must be [{emb_s.shape[0]}, {bank.shape[0]}]; got {tuple(q_hat.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    log_q_s = F.log_softmax(emb_s.float() @ bank.detach().float().T / temperature, dim=1)
    loss_in = -(q_hat.detach() * log_q_s).sum(dim=1).mean()
    return loss_in, log_q_s.detach().exp()


def soft_unlabeled_loss(logits_x_ulb_s: torch.Tensor, p_hat: torch.Tensor, tau: float):
    """The class-level loss with SimMatch's *soft* pseudo-label p_hat (official code), thresholded as in FixMatch:

        l_u = 1 / (mu B) * sum_b 1[max p_hat_b >= tau] * H(p_hat_b, p_m(y | A(u_b)))

    Args: ``logits_x_ulb_s``: ``[N, C]``; ``p_hat``: ``[N, C]`` (a constant). Returns ``(l_u, mask [N])``.
    """
    if logits_x_ulb_s.shape != p_hat.shape:
        raise ValueError(f"logits and p_hat must have the same shape; got {tuple(logits_x_ulb_s.shape)} and "
                         f"{tuple(p_hat.shape)}")
    p_hat = p_hat.detach().float()
    mask = (p_hat.max(dim=1).values >= tau).float()
    per_image = -(p_hat * F.log_softmax(logits_x_ulb_s.float(), dim=1)).sum(dim=1)
    return (per_image * mask).mean(), mask


class EmbeddingNet(nn.Module):
    """A model plus SimMatch's projection head: ``forward`` returns ``(logits, z)`` with z = normalize(MLP(features)).
    The head is the official one: Linear(d, d) - ReLU - Linear(d, proj_dim)."""

    def __init__(self, model: nn.Module, head: nn.Module):
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x):
        logits, feats = self.model(x)
        return logits, F.normalize(self.head(feats).float(), dim=1)


@dataclass
class SimMatchConfig(MethodConfig):
    tau: float = param(0.95, "confidence threshold tau for keeping a pseudo-label", 0.0, 1.0, 0.01)
    lambda_u: float = param(1.0, "weight lambda_u of the class-level unlabeled loss", 0.0, 10.0, 0.1)
    mu: int = param(7, "unlabeled images per labeled image in a batch", 1, 16, 1)
    lambda_in: float = param(1.0, "weight lambda_in of the instance similarity loss L_in", 0.0, 10.0, 0.1)
    sim_temperature: float = param(0.1, "temperature t of the similarities to the labeled bank", 0.01, 1.0, 0.01)
    smoothing_alpha: float = param(0.9, "alpha in p_hat = alpha p_w + (1 - alpha) q_agg (1: no aggregation)",
                                   0.0, 1.0, 0.05)
    proj_dim: int = param(128, "dimension of the normalised embedding z", 2, 1024, 2)
    teacher_decay: float = param(0.99, "EMA decay of the teacher that fills the bank and labels the weak view",
                                 0.0, 1.0, 0.001, paper=0.999)


class SimMatch(Method):
    """total = l_s + lambda_u * l_u + lambda_in * L_in. Student: [weak labeled, strong unlabeled]; EMA teacher (no
    gradient): [weak labeled, weak unlabeled] -> class probabilities, embeddings and the bank update."""

    name = "simmatch"
    title = "SimMatch"
    summary = "class and instance similarity: a labeled memory bank, unfolding and aggregation (Zheng et al. 2022)"
    paper = "Zheng et al., SimMatch, CVPR 2022"
    year = 2022
    family = "similarity to labeled images"
    notebook = "04_feature_consistency"
    builds_on = "fixmatch"
    diagnostics = ("loss_in", "bank_nn_acc")
    state = ("head", "student", "teacher", "bank", "bank_labels")
    cpu_ms_per_step = 21.4
    Config = SimMatchConfig

    def __init__(self, config: SimMatchConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.head: nn.Module | None = None
        self.student: EmbeddingNet | None = None
        self.teacher: EMA | None = None
        self.bank: torch.Tensor | None = None
        self.bank_labels: torch.Tensor | None = None

    def setup(self, model, split, ctx):
        d = model.feature_dim
        self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, self.config.proj_dim)).to(ctx.device)
        self.student = EmbeddingNet(model, self.head)
        self.teacher = EMA(self.student, self.config.teacher_decay)
        # The official code starts from a random bank and turns L_in and aggregation on after the first epoch;
        # we fill the bank with the (initial) teacher's embeddings of the labeled images right away instead.
        self.bank_labels = split.y_lb.to(ctx.device).long().clone()
        with torch.no_grad():
            self.teacher.module.train()  # batch statistics, as the official (non-EMAN) teacher
            _, z = self.teacher.module(to_float(split.x_lb).to(ctx.device))
        self.bank = z.detach().clone()

    def extra_parameters(self):
        return list(self.head.parameters()) if self.head is not None else []

    @torch.no_grad()
    def update_bank(self, z_lb: torch.Tensor, idx_lb: torch.Tensor) -> None:
        """Write the teacher's embeddings of the labeled batch into their bank slots (no gradient)."""
        self.bank[idx_lb] = z_lb.detach().to(self.bank.dtype)

    def step(self, model, batch, ctx):
        cfg = self.config
        if self.teacher is None:
            raise RuntimeError("SimMatch.setup() must run before step() (the Trainer does this)")
        if batch.idx_lb is None:
            raise ValueError("SimMatch needs batch.idx_lb (the labeled images' positions) to update its bank")
        x_lb_w = ctx.aug.weak(batch.x_lb)
        x_ulb_w = ctx.aug.weak(batch.x_ulb)
        x_ulb_s = ctx.aug.strong(batch.x_ulb)
        n_lb = len(x_lb_w)
        logits, z = self.student(torch.cat([x_lb_w, x_ulb_s]))
        logits_x_lb, logits_x_ulb_s, z_s = logits[:n_lb], logits[n_lb:], z[n_lb:]
        with torch.no_grad():
            self.teacher.module.train()
            t_logits, t_z = self.teacher.module(torch.cat([x_lb_w, x_ulb_w]))
            probs_w = torch.softmax(t_logits[n_lb:].float(), dim=1)
        bank = self.bank.clone()
        p_hat, q_hat, q_w = simmatch_pseudo_labels(probs_w, t_z[n_lb:], bank, self.bank_labels,
                                                   cfg.sim_temperature, cfg.smoothing_alpha)
        loss_in, _ = simmatch_instance_loss(z_s, bank, q_hat, cfg.sim_temperature)
        loss_x = supervised_loss(logits_x_lb, batch.y_lb)
        loss_u, mask = soft_unlabeled_loss(logits_x_ulb_s, p_hat, cfg.tau)
        loss = loss_x + cfg.lambda_u * loss_u + cfg.lambda_in * loss_in
        self.update_bank(ctx.gather(t_z[:n_lb]), ctx.gather(batch.idx_lb))  # every rank: the global batch
        pseudo = p_hat.argmax(dim=1)
        logs = {"loss_x": loss_x.detach(), "loss_u": loss_u.detach(), "loss_in": loss_in.detach(),
                "mask_rate": mask.mean(), "pseudo_acc": pseudo_label_accuracy(pseudo, batch.y_ulb, mask)}
        if batch.y_ulb is not None:  # diagnostic: the label of the most similar bank entry, on all images
            logs["bank_nn_acc"] = (self.bank_labels[q_w.argmax(dim=1)] == batch.y_ulb).float().mean()
        return loss, logs

    def after_step(self, model, ctx):
        self.teacher.update(self.student)

    # ---- what the notebook looks at
    @torch.no_grad()
    def nearest_labeled(self, x: torch.Tensor, k: int = 5, use_teacher: bool = True):
        """For images ``x`` (already augmented): the ``k`` most similar bank entries. Returns ``(similarity [N, k],
        bank index [N, k])`` (cosine similarity of the normalised embeddings)."""
        net = self.teacher.module if use_teacher else self.student
        was_training = net.training
        net.eval()
        _, z = net(to_float(x))
        net.train(was_training)
        sim = z @ self.bank.T
        return sim.topk(min(k, sim.shape[1]), dim=1)
