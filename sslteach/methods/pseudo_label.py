"""Pseudo-Label — Dong-Hyun Lee, "Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method for Deep
Neural Networks", ICML 2013 Workshop on Challenges in Representation Learning (no official code).

The pseudo-label of an unlabeled image is the class the *current* network finds most probable, recomputed at every
weight update and used as if it were a true label (Eq. 14). The total loss adds the labeled and the pseudo-labeled
cross-entropies, the second weighted by alpha(t), which starts at 0 and ramps up linearly (Eq. 15, 16): early
predictions are mostly wrong, and training on them from the start would lock the mistakes in.

What the paper used and what we use (``param(paper=...)`` repeats it):

* outputs: sigmoid output units, each trained with binary cross-entropy, summed over the classes. Our default is the
  softmax cross-entropy every other method here uses (``output="softmax"``), so that the only difference from the
  supervised baseline is the pseudo-label term; ``output="sigmoid"`` is the paper's loss.
* alpha_f = 3, T1 = 100, T2 = 600 epochs (without DAE pre-training). The paper does not state the total number of
  epochs, so we express T1 and T2 as fractions of training.
* 32 labeled and 256 unlabeled images per mini-batch: ``mu = 8``.
* no confidence threshold (``tau = 0``). ``tau > 0`` is the modern variant (e.g. USB's PseudoLabel, tau = 0.95):
  only confident pseudo-labels count.
* an MLP with 5000 ReLU units and dropout 0.5 on MNIST; here the shared small CNN (``dropout`` is a TrainConfig
  option: ``train("pseudo_label", dropout=0.5)`` gives Lee's "dropNN").
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..utils import check_choice, check_float
from .base import Method, MethodConfig, param, pseudo_label_accuracy

OUTPUTS = ("softmax", "sigmoid")


# ----------------------------------------------------------------------------- pure functions
def alpha_schedule(progress: float, alpha_f: float = 3.0, t1: float = 0.1, t2: float = 0.6) -> float:
    """The weight of the pseudo-label term, Lee 2013 Eq. (16)::

        alpha(t) = 0                                  t < T1
                 = alpha_f * (t - T1) / (T2 - T1)     T1 <= t < T2
                 = alpha_f                            T2 <= t

    ``progress`` t and the ramp ends ``t1``, ``t2`` are in the same unit (we use fractions of training, t/T in
    [0, 1]; the paper used epochs: T1 = 100, T2 = 600, alpha_f = 3). ``t1 == t2`` is a step from 0 to alpha_f.
    """
    check_float("progress", progress, 0.0)
    check_float("alpha_f", alpha_f, 0.0)
    check_float("t1", t1, 0.0)
    check_float("t2", t2, 0.0)
    if t1 > t2:
        raise ValueError(f"t1 must be <= t2 (the ramp starts before it ends); got t1={t1}, t2={t2}")
    if progress < t1:
        return 0.0
    if progress < t2:
        return alpha_f * (progress - t1) / (t2 - t1)
    return float(alpha_f)


def output_loss(logits: torch.Tensor, target: torch.Tensor, output: str = "softmax") -> torch.Tensor:
    """Per-image loss between the network's outputs and a class index, Lee 2013's ``sum_i L(y_i, f_i)``:

    * ``"softmax"``: the cross-entropy -log softmax(logits)[y];
    * ``"sigmoid"``: the paper's sigmoid output units, sum over classes of the binary cross-entropy
      -[y_i log f_i + (1 - y_i) log(1 - f_i)] with f_i = sigmoid(logit_i) and y the one-hot target.

    Args: ``logits`` ``[N, C]``, ``target`` ``[N]`` (long). Returns ``[N]``, computed in float32.
    """
    check_choice("output", output, OUTPUTS)
    logits = logits.float()
    if output == "softmax":
        return F.cross_entropy(logits, target, reduction="none")
    one_hot = F.one_hot(target, logits.shape[1]).float()
    return F.binary_cross_entropy_with_logits(logits, one_hot, reduction="none").sum(dim=1)


def pseudo_label_loss(logits_x_ulb: torch.Tensor, tau: float = 0.0, output: str = "softmax"):
    """Lee 2013's unlabeled term, Eq. (14) and the second half of Eq. (15)::

        y'_b = argmax_c f_c(u_b)                         (the current network; no gradient flows into it)
        L_u  = 1 / n' * sum_b 1[max_c f_c(u_b) >= tau] * L(y'_b, f(u_b))

    The pseudo-label comes from the very logits that are being trained, detached: it is a constant target, like a
    true label. With ``tau = 0`` (the paper) every image counts; with ``tau > 0`` (the modern variant) only confident
    ones do, and the others count as zeros in the mean over all n' images. The confidence is the largest softmax
    probability (the largest sigmoid output for ``output="sigmoid"``).

    Args: ``logits_x_ulb`` ``[n', C]``; ``tau`` in [0, 1]; ``output`` "softmax" | "sigmoid".
    Returns: ``(loss_u, mask [n'] of 0/1, pseudo_label [n'])``.
    """
    if isinstance(tau, (int, float)) and not 0.0 <= tau <= 1.0:  # NaN fails too
        raise ValueError(f"tau must be in [0, 1] (a probability threshold); got {tau}")
    check_choice("output", output, OUTPUTS)
    with torch.no_grad():  # stop-gradient: the target is a constant
        z = logits_x_ulb.detach().float()
        probs = torch.softmax(z, dim=1) if output == "softmax" else torch.sigmoid(z)
        confidence, pseudo_label = probs.max(dim=1)
        mask = (confidence >= tau).float()
    loss_u = (output_loss(logits_x_ulb, pseudo_label, output) * mask).mean()
    return loss_u, mask, pseudo_label


# ----------------------------------------------------------------------------- configuration
@dataclass
class PseudoLabelConfig(MethodConfig):
    alpha_f: float = param(3.0, "final weight alpha_f of the pseudo-label loss", 0.0, 10.0, 0.1)
    t1: float = param(0.1, "T1: alpha(t) starts to ramp up, as a fraction of training", 0.0, 1.0, 0.05,
                      paper="epoch 100 (total epochs not stated)")
    t2: float = param(0.6, "T2: alpha(t) reaches alpha_f, as a fraction of training", 0.0, 1.0, 0.05,
                      paper="epoch 600 (total epochs not stated)")
    tau: float = param(0.0, "confidence threshold for keeping a pseudo-label (0: keep all, as in the paper)",
                       0.0, 1.0, 0.01)
    mu: int = param(8, "unlabeled images per labeled image in a batch", 1, 16, 1)
    output: str = param("softmax", "output units and loss: softmax cross-entropy, or the paper's sigmoid "
                        "units with binary cross-entropy", choices=OUTPUTS, paper="sigmoid")

    def validate(self):
        super().validate()
        if self.t1 > self.t2:
            raise ValueError(f"t1 must be <= t2 (the ramp starts before it ends); got t1={self.t1}, t2={self.t2}")
        return self


class PseudoLabel(Method):
    """total = L_labeled + alpha(t) * L_pseudo (Lee 2013, Eq. 15), one forward pass over [labeled, unlabeled].

    Both halves get the same weak augmentation (a random shift), the view every image is trained on; the pseudo-label
    of an unlabeled image is the argmax of the network's own output on it at this very step (Eq. 14). One
    concatenated batch means BatchNorm sees labeled and unlabeled images together.
    """

    name = "pseudo_label"
    title = "Pseudo-Label"
    summary = "train on the current network's own argmax predictions, weight ramped up (Lee 2013)"
    paper = "Lee, Pseudo-Label, ICML 2013 Workshop on Challenges in Representation Learning"
    year = 2013
    family = "pseudo-labels"
    notebook = "01_pseudo_label"
    diagnostics = ("weight_u",)
    cpu_ms_per_step = 13.6
    Config = PseudoLabelConfig

    def weight(self, ctx) -> float:
        """alpha(t) at this step (Eq. 16), with t the fraction of training done."""
        cfg = self.config
        return alpha_schedule(ctx.progress, cfg.alpha_f, cfg.t1, cfg.t2)

    def step(self, model, batch, ctx):
        if batch.x_ulb is None:
            raise ValueError("pseudo_label needs unlabeled images (mu >= 1)")
        cfg = self.config
        x_lb, x_ulb = ctx.aug.weak(batch.x_lb), ctx.aug.weak(batch.x_ulb)
        logits, _ = model(torch.cat([x_lb, x_ulb]))
        n_lb = len(x_lb)
        loss_x = output_loss(logits[:n_lb], batch.y_lb, cfg.output).mean()
        loss_u, mask, pseudo = pseudo_label_loss(logits[n_lb:], cfg.tau, cfg.output)
        alpha = self.weight(ctx)
        loss = loss_x + alpha * loss_u
        return loss, {"loss_x": loss_x.detach(), "loss_u": loss_u.detach(), "mask_rate": mask.mean(),
                      "pseudo_acc": pseudo_label_accuracy(pseudo, batch.y_ulb, mask), "weight_u": alpha}
