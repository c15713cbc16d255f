"""Consistency regularisation: the Π-model, temporal ensembling and Mean Teacher.

* Laine & Aila, "Temporal Ensembling for Semi-Supervised Learning", ICLR 2017, arXiv:1610.02242 (official code:
  s-laine/tempens) — the **Π-model** and **temporal ensembling**.
* Tarvainen & Valpola, "Mean teachers are better role models: Weight-averaged consistency targets improve
  semi-supervised deep learning results", NeurIPS 2017, arXiv:1703.01780 (official code: CuriousAI/mean-teacher)
  — **Mean Teacher**.

One idea, three sources of targets. The same image under two different noises (augmentation, Gaussian input noise,
dropout) should give the same prediction, so the loss is

    loss = CE(labeled) + w(t) * (1 / (C N)) sum_i || f(x_i, noise) - target_i ||^2          (softmax outputs)

with w(t) ramped up as w_max * exp(-5 (1 - t / T)^2). Only the target differs:

* Π-model: a second stochastic pass of the same network (the official code lets the gradient flow through both);
* temporal ensembling: a per-image exponential moving average of past predictions, Z <- a Z + (1 - a) z, divided by
  (1 - a^t) to undo its start-up bias, refreshed once per epoch (one pass per step instead of two);
* Mean Teacher: the prediction of a second network whose *weights* are the exponential moving average of the
  student's, theta' <- a theta' + (1 - a) theta; no gradient ever flows into the teacher.

Conventions taken from the official code (where our CPU setting differs, ``param(paper=...)`` says so):

* the squared error is averaged over classes *and* images — Algorithm 1 of Laine & Aila writes 1 / (C |B|);
  CuriousAI/mean-teacher's ``softmax_mse_loss`` sums and divides by the number of classes, and the caller divides by
  the batch size (TensorFlow version: ``reduce_mean`` over classes, then over the batch);
* the official runs mix labeled and unlabeled images in one batch and average the cross-entropy over the *whole*
  batch (a fraction M/N of it is labeled), with the consistency weight scaled to w_max * M/N (tempens; Mean
  Teacher's CIFAR-10 runs use 100 * n_labeled / 50000). The ratio of consistency to cross-entropy is therefore
  w_max. Our loop has a separate labeled batch whose cross-entropy is averaged over labeled images only, so the same
  balance is simply ``loss_x + w(t) * loss_u`` with w(t) ramping up to ``w_max``.
* the consistency term here covers the unlabeled batch (the official code also includes the labeled images of the
  batch; with 20 labeled images next to 1327 unlabeled ones that changes nothing visible).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..evaluation import EMA
from ..utils import check_float, check_int
from .base import Method, MethodConfig, param, pseudo_label_accuracy, supervised_loss


# ----------------------------------------------------------------------------- pure functions
def sigmoid_rampup(progress: float, rampup: float) -> float:
    """The consistency weight's ramp-up, Laine & Aila 2017 Sec. 3 / Appendix A (also Mean Teacher's):

        r(t) = exp(-5 (1 - t / T)^2)   for t < T,      r(t) = 1   for t >= T

    ``progress`` is t and ``rampup`` T, in the same unit (we use fractions of training, t/T_total in [0, 1]).
    ``rampup = 0`` means no ramp-up (r = 1). r(0) = exp(-5) ~ 0.0067, r(T/2) = exp(-1.25) ~ 0.287.
    """
    check_float("progress", progress, 0.0)
    check_float("rampup", rampup, 0.0)
    if rampup == 0 or progress >= rampup:
        return 1.0
    phase = 1.0 - progress / rampup
    return math.exp(-5.0 * phase * phase)


def softmax_mse_loss(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """The consistency cost of the Π-model and Mean Teacher (Laine & Aila 2017, Algorithm 1; Tarvainen & Valpola
    2017, Eq. 1 with the official code's normalisation):

        J = 1 / (C N) * sum_i || softmax(logits_i) - softmax(target_logits_i) ||^2

    i.e. the squared difference of the two softmax outputs, averaged over the C classes and the N images.
    The gradient flows into *both* arguments: the Π-model wants that (as in the official code); Mean Teacher passes
    the teacher's logits computed under ``torch.no_grad()``, so nothing reaches the teacher. Computed in float32.

    Args: ``logits``, ``target_logits``: ``[N, C]``. Returns: a scalar.
    """
    if logits.shape != target_logits.shape or logits.ndim != 2:
        raise ValueError(f"logits and target_logits must both be [N, C]; got {tuple(logits.shape)} and "
                         f"{tuple(target_logits.shape)}")
    p = torch.softmax(logits.float(), dim=1)
    q = torch.softmax(target_logits.float(), dim=1)
    return ((p - q) ** 2).mean()


def temporal_ensembling_loss(logits: torch.Tensor, targets: torch.Tensor, has_target: torch.Tensor | None = None):
    """Temporal ensembling's consistency cost (Laine & Aila 2017, Algorithm 2):

        J = 1 / (C N) * sum_i 1[i has a target] * || softmax(logits_i) - z_tilde_i ||^2

    ``targets`` z_tilde are *probabilities* (the bias-corrected ensemble, :meth:`EnsembleTargets.targets`) and are
    constants (detached here). Images that have no target yet (never predicted in a finished epoch) count as zeros
    in the mean — in the official code the whole first epoch has weight 0 for the same reason.

    Args: ``logits`` ``[N, C]``; ``targets`` ``[N, C]``; ``has_target`` ``[N]`` of 0/1 (``None``: all 1).
    Returns: ``(loss, has_target as float [N])``.
    """
    if logits.shape != targets.shape or logits.ndim != 2:
        raise ValueError(f"logits and targets must both be [N, C]; got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    mask = torch.ones(len(logits), device=logits.device) if has_target is None else has_target.float()
    p = torch.softmax(logits.float(), dim=1)
    per_image = ((p - targets.detach().float()) ** 2).mean(dim=1)
    return (per_image * mask).mean(), mask


def ensemble_update(Z: torch.Tensor, z: torch.Tensor, alpha: float) -> torch.Tensor:
    """One step of temporal ensembling's accumulator (Laine & Aila 2017, Algorithm 2): Z <- alpha Z + (1 - alpha) z.
    ``Z`` and ``z``: ``[N, C]``; returns the new Z (a new tensor)."""
    check_float("alpha", alpha, 0.0, 1.0)
    return alpha * Z + (1.0 - alpha) * z


def bias_corrected(Z: torch.Tensor, alpha: float, t) -> torch.Tensor:
    """The start-up bias correction of temporal ensembling, z_tilde = Z / (1 - alpha^t) (Laine & Aila 2017,
    Algorithm 2; the same correction as Adam's moments). ``t`` is the number of updates Z has had (an int or an
    ``[N]`` tensor of per-image counts); where t = 0 there is no target and zeros are returned.

    Why: Z starts at zero, so after t updates with a constant prediction z it equals (1 - alpha^t) z; dividing by
    (1 - alpha^t) gives back z exactly.
    """
    check_float("alpha", alpha, 0.0, 1.0)
    t = torch.as_tensor(t, dtype=Z.dtype, device=Z.device)
    denom = 1.0 - alpha ** t
    if t.ndim == 1:
        denom = denom.unsqueeze(1)
    return torch.where(denom > 0, Z / denom.clamp_min(1e-12), torch.zeros_like(Z))


class EnsembleTargets:
    """Temporal ensembling's memory: one row per unlabeled image.

    ``record(idx, probs)`` stores this step's (noisy, training-mode) predictions; ``end_epoch()`` folds the epoch's
    predictions into the ensemble Z (only for the images predicted during the epoch, each with its own update count
    t_i) and refreshes the targets z_tilde = Z / (1 - alpha^t_i). Targets stay fixed during an epoch, as in the
    official code. An "epoch" ends when as many predictions have been recorded as there are unlabeled images.
    """

    def __init__(self, num_items: int, num_classes: int, alpha: float = 0.6, device="cpu"):
        self.n = check_int("num_items", num_items, 1)
        self.alpha = check_float("alpha", alpha, 0.0, 1.0)
        self.Z = torch.zeros(num_items, num_classes, device=device)
        self.counts = torch.zeros(num_items, dtype=torch.long, device=device)
        self.targets = torch.zeros(num_items, num_classes, device=device)
        self._epoch = torch.zeros(num_items, num_classes, device=device)
        self._seen = torch.zeros(num_items, dtype=torch.bool, device=device)
        self.recorded = 0
        self.epochs = 0

    @torch.no_grad()
    def record(self, idx: torch.Tensor, probs: torch.Tensor) -> None:
        self._epoch[idx] = probs.detach().float()  # an image seen twice keeps its latest prediction
        self._seen[idx] = True
        self.recorded += len(idx)

    @property
    def epoch_done(self) -> bool:
        return self.recorded >= self.n

    @torch.no_grad()
    def end_epoch(self) -> None:
        s = self._seen
        self.Z[s] = ensemble_update(self.Z[s], self._epoch[s], self.alpha)
        self.counts[s] += 1
        self.targets = bias_corrected(self.Z, self.alpha, self.counts)
        self._seen.zero_()
        self.recorded = 0
        self.epochs += 1

    def lookup(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(targets [N, C], has_target [N] of 0/1)`` for the images at positions ``idx``."""
        return self.targets[idx], (self.counts[idx] > 0).float()


def add_gaussian_noise(x: torch.Tensor, std: float) -> torch.Tensor:
    """Additive Gaussian input noise, x + std * N(0, 1) — the noise layer at the input of both papers' networks."""
    return x + std * torch.randn_like(x) if std > 0 else x


# ----------------------------------------------------------------------------- configuration
_W_MAX_HELP = ("maximum consistency weight w_max, reached after the ramp-up (defaults: 100 for pi_model and "
               "mean_teacher, 30 for temporal_ensembling)")
_RAMPUP_HELP = "ramp-up length T of the consistency weight, as a fraction of training (0: none)"
_NOISE_HELP = "std of the Gaussian noise added to every input image (pixels in [0, 1])"
_MU_HELP = "unlabeled images per labeled image in a batch"


@dataclass
class PiModelConfig(MethodConfig):
    w_max: float = param(100.0, _W_MAX_HELP, 0.0, 300.0, 1.0)
    rampup_frac: float = param(0.3, _RAMPUP_HELP, 0.0, 1.0, 0.05,
                               paper="0.27 (80 of 300 epochs)")
    noise_std: float = param(0.05, _NOISE_HELP, 0.0, 1.0, 0.01,
                             paper="0.15 on per-image standardised inputs (~0.06 on our [0, 1] pixels)")
    mu: int = param(7, _MU_HELP, 1, 16, 1, paper="whole dataset per epoch, 100-image batches, M/N labeled")


@dataclass
class TemporalEnsemblingConfig(MethodConfig):
    w_max: float = param(30.0, _W_MAX_HELP, 0.0, 300.0, 1.0)
    rampup_frac: float = param(0.3, _RAMPUP_HELP, 0.0, 1.0, 0.05, paper="0.27 (80 of 300 epochs)")
    noise_std: float = param(0.05, _NOISE_HELP, 0.0, 1.0, 0.01,
                             paper="0.15 on per-image standardised inputs (~0.06 on our [0, 1] pixels)")
    mu: int = param(7, _MU_HELP, 1, 16, 1, paper="whole dataset per epoch, 100-image batches, M/N labeled")
    ensemble_alpha: float = param(0.6, "decay alpha of the per-image ensemble Z <- alpha Z + (1 - alpha) z",
                                  0.0, 0.99, 0.01)


@dataclass
class MeanTeacherConfig(MethodConfig):
    w_max: float = param(100.0, _W_MAX_HELP, 0.0, 300.0, 1.0)
    rampup_frac: float = param(0.3, _RAMPUP_HELP, 0.0, 1.0, 0.05, paper="0.27 (40k of 150k steps)")
    noise_std: float = param(0.05, _NOISE_HELP, 0.0, 1.0, 0.01,
                             paper="0.15 on per-image standardised inputs (~0.06 on our [0, 1] pixels)")
    mu: int = param(7, _MU_HELP, 1, 16, 1, paper="100-image batches, 1 (SVHN 250) to 8 (CIFAR-10 4000) labeled")
    # The paper's 0.999 averages over ~1000 steps, 0.7 % of its 150k; on our 1000 steps that would be the whole run
    # (measured on digits: 0.999 -> 76 %, 0.99 -> 85 %, 0.95 -> 93 %). 0.95 averages over ~20 steps.
    teacher_decay: float = param(0.95, "EMA decay a of the teacher after the ramp-up, theta' <- a theta' + "
                                 "(1 - a) theta", 0.0, 1.0, 0.001, paper="0.999 (over 150k steps)")
    teacher_decay_rampup: float = param(0.95, "EMA decay of the teacher during the ramp-up", 0.0, 1.0, 0.001,
                                        paper=0.99)


# ----------------------------------------------------------------------------- the methods
class _Consistency(Method):
    """What the three methods share: views with noise, the ramped weight, the total loss and the logs."""

    def weight(self, ctx) -> float:
        """w(t) = w_max * exp(-5 (1 - t/T)^2) during the ramp-up, w_max after it."""
        return self.config.w_max * sigmoid_rampup(ctx.progress, self.config.rampup_frac)

    def view(self, x: torch.Tensor, ctx) -> torch.Tensor:
        """One noisy view: the weak augmentation (random shift), then Gaussian input noise."""
        return add_gaussian_noise(ctx.aug.weak(x), self.config.noise_std)

    def losses(self, model, batch, ctx) -> dict:
        """The loss terms of one step, each with its graph: ``loss_x``, ``loss_u`` and diagnostics. :meth:`step`
        adds them up; tests back-propagate ``loss_u`` alone."""
        raise NotImplementedError

    def step(self, model, batch, ctx):
        if batch.x_ulb is None:
            raise ValueError(f"{self.name} needs unlabeled images (mu >= 1)")
        out = self.losses(model, batch, ctx)
        w = self.weight(ctx)
        loss = out["loss_x"] + w * out["loss_u"]
        logs = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in out.items()}
        logs["weight_u"] = w
        return loss, logs


class PiModel(_Consistency):
    """Π-model (Laine & Aila 2017, Algorithm 1): every image goes through the network twice, each time with its own
    augmentation, input noise and dropout; total = CE on the labeled images + w(t) * J(pass 1, pass 2), with the
    gradient through both passes as in the official code. One forward over [labeled, unlabeled #1, unlabeled #2]."""

    name = "pi_model"
    title = "Π-model"
    summary = "two noisy passes of the same network must agree (Laine & Aila 2017)"
    paper = "Laine & Aila, Temporal Ensembling for Semi-Supervised Learning, ICLR 2017"
    year = 2017
    family = "consistency"
    notebook = "02_mean_teacher"
    diagnostics = ("weight_u",)
    cpu_ms_per_step = 19.4
    Config = PiModelConfig

    def losses(self, model, batch, ctx):
        x_lb = self.view(batch.x_lb, ctx)
        x_1, x_2 = self.view(batch.x_ulb, ctx), self.view(batch.x_ulb, ctx)
        logits, _ = model(torch.cat([x_lb, x_1, x_2]))
        n_lb, n_ulb = len(x_lb), len(x_1)
        logits_1, logits_2 = logits[n_lb:].split(n_ulb)
        loss_x = supervised_loss(logits[:n_lb], batch.y_lb)
        loss_u = softmax_mse_loss(logits_1, logits_2)
        ones = torch.ones(n_ulb, device=logits.device)
        return {"loss_x": loss_x, "loss_u": loss_u,
                "pseudo_acc": pseudo_label_accuracy(logits_2.detach().argmax(1), batch.y_ulb, ones)}


class TemporalEnsembling(_Consistency):
    """Temporal ensembling (Laine & Aila 2017, Algorithm 2): one noisy pass per step; the target of each unlabeled
    image is the bias-corrected exponential moving average of its past predictions, refreshed once per epoch
    (:class:`EnsembleTargets`). ``pseudo_acc``: how often the target's argmax is the hidden label; ``mask_rate``:
    the share of the batch that already has a target."""

    name = "temporal_ensembling"
    title = "temporal ensembling"
    summary = "agree with a per-image moving average of past predictions (Laine & Aila 2017)"
    paper = "Laine & Aila, Temporal Ensembling for Semi-Supervised Learning, ICLR 2017"
    year = 2017
    family = "consistency"
    notebook = "02_mean_teacher"
    diagnostics = ("weight_u",)
    cpu_ms_per_step = 11.9
    Config = TemporalEnsemblingConfig

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.ensemble: EnsembleTargets | None = None

    def setup(self, model, split, ctx):
        self.ensemble = EnsembleTargets(ctx.num_unlabeled, ctx.num_classes, self.config.ensemble_alpha, ctx.device)

    def losses(self, model, batch, ctx):
        if self.ensemble is None:
            raise RuntimeError("TemporalEnsembling.setup() must run before step() (the Trainer does this)")
        if batch.idx_ulb is None:
            raise ValueError("temporal_ensembling needs batch.idx_ulb (the unlabeled images' positions)")
        x_lb, x_ulb = self.view(batch.x_lb, ctx), self.view(batch.x_ulb, ctx)
        logits, _ = model(torch.cat([x_lb, x_ulb]))
        n_lb = len(x_lb)
        logits_ulb = logits[n_lb:]
        targets, has_target = self.ensemble.lookup(batch.idx_ulb)
        loss_x = supervised_loss(logits[:n_lb], batch.y_lb)
        loss_u, mask = temporal_ensembling_loss(logits_ulb, targets, has_target)
        self.ensemble.record(ctx.gather(batch.idx_ulb),  # every rank records the global batch
                             ctx.gather(torch.softmax(logits_ulb.detach().float(), dim=1)))
        if self.ensemble.epoch_done:
            self.ensemble.end_epoch()
        return {"loss_x": loss_x, "loss_u": loss_u, "mask_rate": mask.mean(),
                "pseudo_acc": pseudo_label_accuracy(targets.argmax(1), batch.y_ulb, mask)}


class MeanTeacher(_Consistency):
    """Mean Teacher (Tarvainen & Valpola 2017): the student sees one noisy view of each image, the teacher — the
    EMA of the student's weights, never trained by gradient — another; total = CE on the labeled images + w(t) *
    J(student, teacher). The teacher's decay is ``teacher_decay_rampup`` during the ramp-up and ``teacher_decay``
    after it (paper: 0.99, then 0.999; ours: 0.95 for both, scaled to 1000 steps). As in the official PyTorch code
    the teacher runs in training mode (batch statistics, dropout) for its targets, under ``torch.no_grad()``. The
    teacher is the model reported."""

    name = "mean_teacher"
    title = "Mean Teacher"
    summary = "agree with a teacher whose weights are the moving average of the student's (Tarvainen & Valpola 2017)"
    paper = "Tarvainen & Valpola, Mean teachers are better role models, NeurIPS 2017"
    year = 2017
    family = "consistency"
    notebook = "02_mean_teacher"
    diagnostics = ("weight_u",)
    state = ("teacher",)
    cpu_ms_per_step = 16.9
    Config = MeanTeacherConfig
    report = "teacher"

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.teacher: EMA | None = None

    def setup(self, model, split, ctx):
        self.teacher = EMA(model, self.config.teacher_decay)

    def teacher_decay_at(self, progress: float) -> float:
        cfg = self.config
        return cfg.teacher_decay_rampup if progress < cfg.rampup_frac else cfg.teacher_decay

    @torch.no_grad()
    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        t = self.teacher.module
        t.train()
        logits, _ = t(x)
        t.eval()
        return logits

    def losses(self, model, batch, ctx):
        if self.teacher is None:
            raise RuntimeError("MeanTeacher.setup() must run before step() (the Trainer does this)")
        x_lb = self.view(batch.x_lb, ctx)
        x_ulb_s, x_ulb_t = self.view(batch.x_ulb, ctx), self.view(batch.x_ulb, ctx)
        logits, _ = model(torch.cat([x_lb, x_ulb_s]))
        n_lb = len(x_lb)
        logits_s = logits[n_lb:]
        logits_t = self.teacher_logits(x_ulb_t)  # no graph: a constant target
        loss_x = supervised_loss(logits[:n_lb], batch.y_lb)
        loss_u = softmax_mse_loss(logits_s, logits_t)
        ones = torch.ones(len(logits_t), device=logits_t.device)
        return {"loss_x": loss_x, "loss_u": loss_u,
                "pseudo_acc": pseudo_label_accuracy(logits_t.argmax(1), batch.y_ulb, ones)}

    def after_step(self, model, ctx):
        self.teacher.update(model, self.teacher_decay_at(ctx.progress))

    def eval_models(self) -> dict[str, nn.Module]:
        return {"teacher": self.teacher.module} if self.teacher is not None else {}
