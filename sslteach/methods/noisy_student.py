"""Noisy Student — Qizhe Xie, Minh-Thang Luong, Eduard Hovy, Quoc V. Le, "Self-training with Noisy Student improves
ImageNet classification", CVPR 2020, arXiv:1911.04252 (official code: google-research/noisystudent).

Self-training in rounds (the paper's Algorithm 1):

1. train a **teacher** on the labeled images;
2. the teacher, *not noised* (eval mode, clean images), labels every unlabeled image — soft labels (its softmax) or
   hard ones (its argmax); images it is not confident about can be filtered out;
3. train a **student** of equal or larger size on labeled + pseudo-labeled images, *with noise*: strong data
   augmentation (RandAugment) and dropout (and stochastic depth in the paper);
4. the student becomes the next teacher; go to 2.

The claim: the noise is what lets the student become *better* than its teacher. A student that sees exactly what the
teacher saw can at best copy it, mistakes included (confirmation bias).

How the rounds fit the shared training loop (one optimizer, one step budget): the ``steps`` are split into
``rounds + 1`` equal phases. Phase 0 trains the first teacher on the labeled images only (weak augmentation, exactly
the supervised baseline). At each phase boundary, inside :meth:`NoisyStudent.after_step`, the current student (its
exponential moving average, the weights every method here is evaluated with) is frozen as the new teacher, it labels
the whole unlabeled set once, and a new student starts: from the initial random weights (``from_scratch=True``, the
official code's default) or from the teacher's weights. Each round's accuracy, pseudo-label accuracy and kept share
are recorded in ``method.rounds`` and end up in ``result.extra["rounds"]``.

Simplifications for a CPU (``param(paper=...)`` says where the defaults differ):

* the student has the *same* size as the teacher (the paper: equal or larger, e.g. EfficientNet-B7 -> L2);
* noise = our strong augmentation (RandAugment-style + Cutout) on the student's labeled and unlabeled images, and
  dropout before the classifier; no stochastic depth (our small CNN has no residual blocks);
* the first teacher is trained with the weak augmentation only (the paper noises it too);
* no data balancing (the paper duplicates / subsamples images so every class has about the same number);
* the learning-rate schedule and the optimizer's momentum buffer run on across rounds (the shared loop has one
  cosine decay over all steps); the paper trains each student with its own schedule.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import to_float
from ..evaluation import EMA, eval_batch_size, evaluate
from ..utils import check_int
from .base import Method, MethodConfig, param, pseudo_label_accuracy, supervised_loss


# ----------------------------------------------------------------------------- pure functions
def round_boundaries(total_steps: int, rounds: int) -> list[int]:
    """Steps at which each round ends: ``rounds + 1`` phases (teacher, then ``rounds`` students) of equal length;
    the last one also takes the remainder. ``round_boundaries(1000, 3) == [250, 500, 750, 1000]``."""
    check_int("rounds", rounds, 0)
    check_int("total_steps", total_steps, 1)
    if total_steps < rounds + 1:
        raise ValueError(f"{rounds} rounds need at least {rounds + 1} steps (one per phase); got {total_steps}")
    length = total_steps // (rounds + 1)
    return [length * (k + 1) for k in range(rounds)] + [total_steps]


@torch.no_grad()
def teacher_targets(teacher_logits: torch.Tensor, soft: bool = True, tau: float = 0.0):
    """What the teacher hands to the student (Algorithm 1, step 2, and the paper's confidence filter):

        q_i = softmax(teacher logits of the clean image x_i)         (soft pseudo-label)
        y_i = onehot(argmax_c q_ic)                                  (hard pseudo-label)
        keep_i = 1[max_c q_ic >= tau]

    Computed without gradient: the teacher is frozen. Args: ``teacher_logits`` ``[N, C]``, ``soft``, ``tau`` in
    [0, 1]. Returns ``(targets [N, C] — probabilities, or one-hot rows —, keep [N] of 0/1)``.
    """
    if isinstance(tau, (int, float)) and not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1] (a probability threshold); got {tau}")
    q = torch.softmax(teacher_logits.detach().float(), dim=1)
    confidence, hard = q.max(dim=1)
    targets = q if soft else F.one_hot(hard, q.shape[1]).float()
    return targets, (confidence >= tau).float()


def noisy_student_loss(logits_x_ulb: torch.Tensor, targets: torch.Tensor, keep: torch.Tensor | None = None):
    """The student's unlabeled term, Algorithm 1 step 3: the cross-entropy between the teacher's pseudo-labels
    (soft or one-hot) and the *noised* student's prediction, averaged over the images the filter kept::

        L_u = 1 / sum_i keep_i * sum_i keep_i * ( - sum_c targets_ic * log softmax(student logits_i)_c )

    Filtered images are out of the unlabeled set for this round, so they do not count in the mean; no image kept
    gives 0. The targets are constants (detached). Computed in float32.

    Args: ``logits_x_ulb`` ``[N, C]`` (the student's, with its graph), ``targets`` ``[N, C]``, ``keep`` ``[N]``
    (``None``: all 1). Returns a scalar.
    """
    if logits_x_ulb.shape != targets.shape or logits_x_ulb.ndim != 2:
        raise ValueError(f"logits and targets must both be [N, C]; got {tuple(logits_x_ulb.shape)} and "
                         f"{tuple(targets.shape)}")
    keep = torch.ones(len(targets), device=targets.device) if keep is None else keep.float()
    ce = -(targets.detach().float() * F.log_softmax(logits_x_ulb.float(), dim=1)).sum(dim=1)
    return (ce * keep).sum() / keep.sum().clamp_min(1.0)


# ----------------------------------------------------------------------------- configuration
@dataclass
class NoisyStudentConfig(MethodConfig):
    rounds: int = param(3, "student rounds K after the first teacher (each student becomes the next teacher)",
                        1, 6, 1)
    noise: bool = param(True, "noise the student: strong augmentation of its inputs and dropout (False: the "
                        "student sees the clean images the teacher labeled)")
    student_dropout: float = param(0.5, "dropout before the student's classifier when noise is on", 0.0, 0.9, 0.05)
    soft: bool = param(True, "soft pseudo-labels (the teacher's softmax) instead of hard ones (its argmax)")
    tau: float = param(0.3, "confidence filter: unlabeled images the teacher is less sure about are left out",
                       0.0, 1.0, 0.01, paper="0.3 (official ImageNet script, which also balances the classes)")
    lambda_u: float = param(1.0, "weight of the pseudo-labeled loss", 0.0, 10.0, 0.1,
                            paper="1 in Algorithm 1; the official code weights it by the unlabeled/labeled "
                                  "batch ratio")
    mu: int = param(5, "unlabeled images per labeled image in a batch", 1, 16, 1,
                    paper="5 (official SVHN script)")
    from_scratch: bool = param(True, "each student starts from the initial random weights (False: from the "
                               "teacher's weights)")


class NoisyStudent(Method):
    """Teacher -> noised student -> teacher ... in ``rounds + 1`` phases of one training run (see the module doc).

    Round 0: cross-entropy on weakly augmented labeled images (the first teacher). Rounds 1..K: l_s + lambda_u * l_u
    on [labeled, unlabeled] in one forward pass, where l_u is :func:`noisy_student_loss` against the frozen teacher's
    pseudo-labels, computed once per round on the clean unlabeled images. The evaluated model is each round's EMA
    student (``report = "student"``); the frozen teacher is evaluated too (``test_acc_teacher``).
    """

    name = "noisy_student"
    title = "Noisy Student"
    summary = "teacher labels, a noised student learns, the student becomes the teacher (Xie et al. 2020)"
    paper = "Xie, Luong, Hovy & Le, Self-training with Noisy Student improves ImageNet classification, CVPR 2020"
    year = 2020
    family = "pseudo-labels"
    notebook = "01_pseudo_label"
    state = ("ema", "teacher", "targets", "keep")
    cpu_ms_per_step = 11.5
    Config = NoisyStudentConfig
    report = "student"
    ema_decay = 0.99  # each round's evaluated weights (as TrainConfig's default)

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.rounds: list[dict] = []
        self.round = 0
        self.teacher: nn.Module | None = None
        self.ema: EMA | None = None

    # ---------------------------------------------------------------- state
    def setup(self, model, split, ctx):
        self.x_ulb, self.y_ulb = split.x_ulb, split.y_ulb
        self.x_test, self.y_test = split.x_test, split.y_test
        self.boundaries = round_boundaries(ctx.total_steps, self.config.rounds)
        self.init_state = copy.deepcopy(model.state_dict())
        self._dropout = getattr(model, "dropout", None)
        self._base_p = self._dropout.p if isinstance(self._dropout, nn.Dropout) else None
        self.round, self.rounds, self.teacher = 0, [], None
        self.targets = self.keep = None
        self.ema = EMA(model, self.ema_decay)
        self._start = 0

    @torch.no_grad()
    def relabel(self) -> None:
        """The frozen teacher labels every unlabeled image once, in eval mode, without augmentation."""
        self.teacher.eval()
        n = eval_batch_size(self.x_ulb.device)
        logits = torch.cat([self.teacher(to_float(self.x_ulb[i: i + n]))[0].float()
                            for i in range(0, len(self.x_ulb), n)])
        self.targets, self.keep = teacher_targets(logits, self.config.soft, self.config.tau)

    def _finish_round(self, steps_done: int) -> None:
        rec = {"round": self.round, "role": "teacher (labeled only)" if self.round == 0 else "student",
               "steps": steps_done - self._start, "test_acc": evaluate(self.ema.module, self.x_test, self.y_test)}
        if self.round > 0:
            keep = self.keep > 0
            rec["kept"] = keep.float().mean().item()
            acc = pseudo_label_accuracy(self.targets.argmax(1), self.y_ulb, self.keep).item()
            rec["pseudo_acc"] = None if math.isnan(acc) else acc  # None: the filter kept no image
        self.rounds.append(rec)

    def _next_round(self, model, steps_done: int) -> None:
        self.teacher = copy.deepcopy(self.ema.module)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.relabel()
        model.load_state_dict(self.init_state if self.config.from_scratch else self.teacher.state_dict())
        if self._base_p is not None:
            self._dropout.p = self.config.student_dropout if self.config.noise else self._base_p
        self.ema = EMA(model, self.ema_decay)
        self.round += 1
        self._start = steps_done

    # ---------------------------------------------------------------- the trainer's hooks
    def step(self, model, batch, ctx):
        if self.round == 0:  # the first teacher: labeled images only
            logits_x_lb, _ = model(ctx.aug.weak(batch.x_lb))
            loss_x = supervised_loss(logits_x_lb, batch.y_lb)
            return loss_x, {"loss_x": loss_x.detach(), "round": 0}
        if batch.x_ulb is None:
            raise ValueError("noisy_student needs unlabeled images (mu >= 1)")
        cfg = self.config
        if cfg.noise:  # input noise on everything the student sees; dropout is on in the model
            x_lb, x_ulb = ctx.aug.strong(batch.x_lb), ctx.aug.strong(batch.x_ulb)
        else:  # no noise: the clean images the teacher labeled (the labeled ones as in the baseline)
            x_lb, x_ulb = ctx.aug.weak(batch.x_lb), batch.x_ulb
        logits, _ = model(torch.cat([x_lb, x_ulb]))
        n_lb = len(x_lb)
        targets, keep = self.targets[batch.idx_ulb], self.keep[batch.idx_ulb]
        loss_x = supervised_loss(logits[:n_lb], batch.y_lb)
        loss_u = noisy_student_loss(logits[n_lb:], targets, keep)
        loss = loss_x + cfg.lambda_u * loss_u
        return loss, {"loss_x": loss_x.detach(), "loss_u": loss_u.detach(), "mask_rate": keep.mean(),
                      "pseudo_acc": pseudo_label_accuracy(targets.argmax(1), batch.y_ulb, keep),
                      "round": self.round}

    def after_step(self, model, ctx):
        self.ema.update(model)
        steps_done = ctx.step + 1
        if self.round < len(self.boundaries) and steps_done == self.boundaries[self.round]:
            with ctx.lump("round switch"):  # evaluate the round, relabel the whole unlabeled set
                self._finish_round(steps_done)
                if self.round < self.config.rounds:
                    self._next_round(model, steps_done)

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """After :meth:`setup` there is no teacher yet; a cached run that ended with one gets it back (the same
        network as the student)."""
        if self.teacher is None and any(k.startswith("teacher.") for k in tensors):
            self.teacher = copy.deepcopy(self.ema.module)
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        super().load_state_tensors(tensors)
        if self.teacher is not None:
            self.round = self.config.rounds

    def eval_models(self) -> dict[str, nn.Module]:
        models = {"student": self.ema.module} if self.ema is not None else {}
        if self.teacher is not None:
            models["teacher"] = self.teacher
        return models

    def extra_results(self) -> dict:
        """Per-round summary for ``result.extra``: ``{"rounds": [{"round", "role", "steps", "test_acc",
        "kept", "pseudo_acc"}, ...]}`` (a run stopped early also reports its unfinished round)."""
        rounds = list(self.rounds)
        if self.ema is not None and (not rounds or rounds[-1]["round"] != self.round):
            rec = {"round": self.round, "role": "teacher (labeled only)" if self.round == 0 else "student",
                   "unfinished": True, "test_acc": evaluate(self.ema.module, self.x_test, self.y_test)}
            rounds.append(rec)
        return {"rounds": rounds}
