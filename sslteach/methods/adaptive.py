"""Adaptive thresholds after FixMatch: FlexMatch, FreeMatch and SoftMatch (notebook 11).

FixMatch keeps a pseudo-label when the weak view's confidence clears *one fixed* threshold tau, for every class and
for the whole run. The three papers here keep FixMatch's structure — pseudo-label and mask (or weight) from the
*weak* view with the gradient stopped, loss on the *strong* view, averaged over all mu*B unlabeled rows — and change
only the gate:

- **FlexMatch** (Zhang et al., "FlexMatch: Boosting Semi-Supervised Learning with Curriculum Pseudo Labeling",
  NeurIPS 2021, arXiv:2110.08263): a threshold per class, T_t(c) = M(beta_t(c)) * tau, lowered for the classes that
  few unlabeled images have confidently been assigned to so far (their "learning effect").
- **FreeMatch** (Wang et al., "FreeMatch: Self-adaptive Thresholding for Semi-supervised Learning", ICLR 2023,
  arXiv:2205.07246): no tau at all: a global threshold that is the running mean of the model's confidence, scaled
  per class by the running mean prediction; plus a "self-adaptive fairness" term.
- **SoftMatch** (Chen et al., "SoftMatch: Addressing the Quantity-Quality Trade-off in Semi-supervised Learning",
  ICLR 2023, arXiv:2301.10921): no hard gate: every row gets a weight in (0, 1], a Gaussian in the confidence
  truncated at its running mean, computed on predictions aligned to a uniform class distribution.

Source of truth for every equation, default and update order: the official code, Microsoft's USB
(``microsoft/Semi-supervised-learning`` at 1ef4cbe; the three algorithm folders last changed in 639cfbf) and the
FlexMatch authors' TorchSSL (``TorchSSL/TorchSSL`` at f26e1d4); the file and lines are cited in each function.
Where the two disagree, USB is followed and the difference is named.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import Method, MethodConfig, param, supervised_loss
from .fixmatch import FixMatchCoreConfig, fixmatch_unlabeled_loss

MAPPINGS = ("convex", "linear", "concave")


# ============================================================================================ shared pieces
def soft_unlabeled_loss(logits_x_ulb_s: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The unlabeled loss of all three methods (USB ``semilearn/core/criterions/consistency.py`` L14-40):

        l_u = 1 / (mu B) * sum_b w_b * H(target_b, p_m(y | A(u_b)))

    ``target`` is ``[N]`` class indices (hard pseudo-labels) or ``[N, C]`` probabilities (soft); ``weight`` ``[N]``
    is a 0/1 mask (FlexMatch, FreeMatch) or SoftMatch's weight. The mean runs over *all* N rows (a rejected row counts
    as 0). With a hard target and a 0/1 mask this is :func:`~sslteach.methods.fixmatch.fixmatch_unlabeled_loss`.
    """
    logits = logits_x_ulb_s.float()
    if target.ndim == 1:
        per_row = F.cross_entropy(logits, target, reduction="none")
    else:
        per_row = -(target.detach() * F.log_softmax(logits, dim=1)).sum(dim=1)
    return (per_row * weight.detach()).mean()


def pseudo_targets(logits_x_ulb_w: torch.Tensor, hard_label: bool = True, temperature: float = 0.5) -> torch.Tensor:
    """The pseudo-label of each weak view (USB ``semilearn/algorithms/hooks/pseudo_label.py`` L17-51), gradient
    stopped: ``argmax q_b`` (``hard_label``, the default of all three methods) or the sharpened distribution
    ``softmax(logits_w / T)``. ``[N, C]`` logits in; ``[N]`` indices or ``[N, C]`` probabilities out."""
    logits = logits_x_ulb_w.detach().float()
    if hard_label:
        return logits.argmax(dim=1)
    return torch.softmax(logits / temperature, dim=1)


def thresholded_unlabeled_loss(logits_x_ulb_w, logits_x_ulb_s, class_threshold, hard_label=True, temperature=0.5):
    """FixMatch's unlabeled loss with the fixed tau replaced by a threshold *per predicted class*:

        q_b = softmax(logits_w_b) (weak view, gradient stopped),   q_hat_b = argmax q_b
        mask_b = 1[max q_b >= T(q_hat_b)]                          (``ge``, as the official code)
        l_u = 1 / (mu B) * sum_b mask_b * H(q_hat_b, p_m(y | A(u_b)))

    The mask always comes from the weak view's softmax (no temperature); ``hard_label=False`` only changes the target
    to ``softmax(logits_w / T)``. With hard labels this *is* :func:`fixmatch_unlabeled_loss`, called with the per-row
    thresholds ``T(q_hat_b)``.

    Args: ``[N, C]`` weak and strong logits, ``class_threshold`` ``[C]``.
    Returns: ``(loss_u, mask [N] of 0/1, pseudo_label [N])``.
    """
    q = torch.softmax(logits_x_ulb_w.detach().float(), dim=1)
    max_q, pseudo = q.max(dim=1)
    row_threshold = class_threshold.to(max_q)[pseudo]
    if hard_label:
        return fixmatch_unlabeled_loss(logits_x_ulb_w, logits_x_ulb_s, row_threshold)
    mask = (max_q >= row_threshold).float()
    target = pseudo_targets(logits_x_ulb_w, False, temperature)
    return soft_unlabeled_loss(logits_x_ulb_s, target, mask), mask, pseudo


def ema(old: torch.Tensor, new: torch.Tensor, momentum: float) -> torch.Tensor:
    """``momentum * old + (1 - momentum) * new``: every running statistic of the three methods."""
    return momentum * old + (1.0 - momentum) * new


def weighted_pseudo_accuracy(pseudo, y_true, weight) -> torch.Tensor:
    """Share of the (weighted) pseudo-labels that equal the hidden true label, sum_b w_b 1[q_hat_b = y_b] / sum_b w_b
    (NaN without labels or weight). With a 0/1 mask it is ``pseudo_acc`` of the other methods. Diagnostic only."""
    if y_true is None or float(weight.sum()) <= 0:
        return torch.tensor(float("nan"))
    w = weight.detach().float()
    return ((pseudo == y_true).float() * w).sum() / w.sum()


class ClassWindow:
    """Per-class diagnostics summed over a window of steps, against the hidden labels ``batch.y_ulb`` (never used in
    a loss). Every tensor passed to :meth:`add` is aligned *by position in the batch* (row b of the weak view, its
    pseudo-label, its weight and ``y_ulb[b]``); the image index ``idx_ulb`` plays no part here.

    :meth:`summary` gives, per class c (lists of floats, NaN where a class did not occur):

    - ``threshold``: the class's threshold, averaged over the window's steps (SoftMatch: mu_t, the confidence from
      which a row gets full weight, the same for every class);
    - ``mask_rate``: the share of the images whose *hidden* class is c that got a pseudo-label (their mean weight,
      for SoftMatch): how many of class c's images are used (an open-set split's unknown images, hidden label -1,
      count in ``weight`` and ``pseudo_precision`` as wrong pseudo-labels, in no class of their own);
    - ``pseudo_acc``: of those kept images of hidden class c, the (weighted) share whose pseudo-label is right;
    - ``weight``: the share of the rows *pseudo-labeled* c that pass (their mean weight, for SoftMatch);
    - ``pseudo_precision``: of the pseudo-labels "c" kept, the (weighted) share that are right.
    """

    def __init__(self, num_classes: int, device):
        self.num_classes, self.device = num_classes, device
        self.reset()

    def reset(self):
        def z():
            return torch.zeros(self.num_classes, dtype=torch.float64, device=self.device)

        self.seen, self.kept, self.kept_right = z(), z(), z()
        self.predicted, self.labelled, self.labelled_right, self.threshold = z(), z(), z(), z()
        self.steps = 0

    def _count(self, index, weights=None):
        return torch.bincount(index, weights=weights, minlength=self.num_classes).double()

    @torch.no_grad()
    def add(self, pseudo, weight, y_true=None, threshold=None):
        """One step: ``pseudo`` ``[N]`` pseudo-labels, ``weight`` ``[N]`` mask or weight, ``y_true`` ``[N]`` the
        hidden labels of the *same rows* (or ``None``), ``threshold`` ``[C]`` the class thresholds used."""
        w = weight.detach().double()
        if y_true is not None:
            right = (pseudo == y_true).double()
            known = y_true >= 0  # an open-set split hides its unknown-class images as -1
            self.seen += self._count(y_true[known])
            self.kept += self._count(y_true[known], w[known])
            self.kept_right += self._count(y_true[known], (w * right)[known])
            self.labelled_right += self._count(pseudo, w * right)
        self.predicted += self._count(pseudo)
        self.labelled += self._count(pseudo, w)
        if threshold is not None:
            self.threshold += threshold.detach().double()
        self.steps += 1

    def summary(self) -> dict:
        def ratio(a, b):
            return torch.where(b > 0, a / b.clamp_min(1e-12), torch.full_like(a, float("nan"))).tolist()

        return {"threshold": (self.threshold / max(1, self.steps)).tolist(),
                "mask_rate": ratio(self.kept, self.seen), "pseudo_acc": ratio(self.kept_right, self.kept),
                "weight": ratio(self.labelled, self.predicted),
                "pseudo_precision": ratio(self.labelled_right, self.labelled)}


def _hard_label():
    return param(True, "hard pseudo-labels argmax q (False: soft labels softmax(logits / T))")


def _label_temperature():
    return param(0.5, "temperature T of the soft pseudo-labels (used only when hard_label is False)", 0.05, 2.0, 0.05)


class AdaptiveThresholdMethod(Method):
    """What the three methods share: one forward pass over [weak labeled, weak unlabeled, strong unlabeled] (as
    FixMatch, so BatchNorm sees all three), the supervised loss on the weak labeled view, and the per-class
    diagnostics.

    ``class_stats`` is the latest window's per-class summary (:class:`ClassWindow`: ``threshold``, ``mask_rate``,
    ``pseudo_acc``, ``weight``, ``pseudo_precision``, each a list over classes, plus ``step``), refreshed every
    ``total_steps // trace_points`` steps; ``class_trace`` keeps every window of the run and reaches
    ``result.extra["class_trace"]`` (so a run read from the run cache still has it): the picture of the per-class
    thresholds over training (:mod:`sslteach.viz_adaptive`). ``class_threshold`` is the ``[C]`` tensor of the thresholds the
    last step used (SoftMatch: mu_t for every class).
    """

    family = "adaptive thresholds"
    notebook = "11_adaptive_thresholds"
    builds_on = "fixmatch"
    transient = ("class_threshold",)
    #: how many per-class snapshots a run keeps (one per ``total_steps // trace_points`` steps)
    trace_points = 50

    def setup(self, model, split, ctx):
        self.window = ClassWindow(ctx.num_classes, ctx.device)
        self.class_trace: list[dict] = []
        self.class_stats: dict = {}
        self.class_threshold = torch.zeros(ctx.num_classes, device=ctx.device)

    def _forward(self, model, batch, ctx):
        x_lb_w = ctx.aug.weak(batch.x_lb)
        x_ulb_w = ctx.aug.weak(batch.x_ulb)
        x_ulb_s = ctx.aug.strong(batch.x_ulb) if getattr(self.config, "strong", True) else ctx.aug.weak(batch.x_ulb)
        logits, _ = model(torch.cat([x_lb_w, x_ulb_w, x_ulb_s]))
        n_lb, n_ulb = len(x_lb_w), len(x_ulb_w)
        logits_x_ulb_w, logits_x_ulb_s = logits[n_lb:].split(n_ulb)
        return logits[:n_lb], logits_x_ulb_w, logits_x_ulb_s

    def _observe(self, ctx, pseudo, weight, y_ulb, threshold):
        """Add this step to the per-class window; close the window at a trace point or at the last step."""
        self.class_threshold = threshold.detach().float().clone()
        self.window.add(pseudo, weight, y_ulb, threshold)
        done = ctx.step + 1
        every = max(1, ctx.total_steps // self.trace_points)
        if done % every == 0 or done >= ctx.total_steps:
            self.class_stats = {"step": done, **self.window.summary()}
            self.class_trace.append(self.class_stats)
            self.window.reset()

    def extra_results(self) -> dict:
        return {"class_trace": list(getattr(self, "class_trace", []))}


# ============================================================================================ FlexMatch
def flexmatch_learning_effect(selected_label: torch.Tensor, num_classes: int, warmup: bool = True) -> torch.Tensor:
    """FlexMatch's normalised learning effect beta_t(c) (Zhang et al. 2021, Eqs. 5, 6 and 11; USB
    ``semilearn/algorithms/flexmatch/utils.py`` ``update`` L24-35; TorchSSL ``models/flexmatch/flexmatch.py``
    L146-156):

        sigma_t(c) = sum_n 1[selected_label_n = c]             (images whose last confident prediction was c)
        N_unused   = sum_n 1[selected_label_n = -1]            (images never predicted with max q >= tau)
        warm-up:     beta_t(c) = sigma_t(c) / max(max_c' sigma_t(c'), N_unused)       (Eq. 11)
        no warm-up:  beta_t(c) = sigma_t(c) / max_c' sigma_t(c')                      (Eq. 6)

    While no image has been marked yet (every entry -1) beta is 0 for every class (the official code skips the
    update then, and beta starts at 0). With the warm-up, beta stays small while most images are unused, so the
    thresholds rise gradually; once some class outnumbers the unused pool both forms agree.
    (The official guard is ``max count < N``, which would also skip the update in the unreachable case that every
    image carries the same class; here only the all-unused case is special.)

    Args: ``selected_label`` ``[N]`` long, -1 or a class, one entry per *unlabeled image* (indexed by ``idx_ulb``).
    Returns: ``beta`` ``[C]`` float in [0, 1].
    """
    counts = torch.bincount(selected_label + 1, minlength=num_classes + 1).float()  # [unused, class 0, ...]
    unused, sigma = counts[0], counts[1:num_classes + 1]
    top = sigma.max()
    if top <= 0:
        return torch.zeros(num_classes, device=selected_label.device)
    return sigma / (torch.maximum(top, unused) if warmup else top)


def flexmatch_mapping(beta: torch.Tensor, mapping: str = "convex") -> torch.Tensor:
    """FlexMatch's non-linear mapping M of the learning effect (paper Sec. 3.2 and the ablation of Fig. 4):
    ``convex`` M(x) = x / (2 - x) (the method; USB ``flexmatch/utils.py`` L53), ``linear`` M(x) = x, ``concave``
    M(x) = ln(x + 1) / ln 2. Each maps [0, 1] onto [0, 1]; the convex one keeps thresholds low until a class is
    well learned, then raises them quickly."""
    if mapping == "convex":
        return beta / (2.0 - beta)
    if mapping == "linear":
        return beta
    if mapping == "concave":
        return torch.log1p(beta) / math.log(2.0)
    raise ValueError(f"unknown mapping {mapping!r}; valid values: {', '.join(MAPPINGS)}")


def flexmatch_thresholds(beta: torch.Tensor, tau: float, mapping: str = "convex") -> torch.Tensor:
    """FlexMatch's flexible class thresholds, Eq. 7: T_t(c) = M(beta_t(c)) * tau. ``[C]`` in, ``[C]`` out. At the
    start beta = 0, so T = 0 and every unlabeled image passes (the paper's warm-up "learning boom")."""
    return flexmatch_mapping(beta, mapping) * tau


def flexmatch_update_marks(selected_label, idx_ulb, max_q, pseudo, tau: float) -> torch.Tensor:
    """The marks after a step (USB ``flexmatch/utils.py`` L57-60; TorchSSL ``flexmatch.py`` L180-181): each image
    of the batch whose weak-view confidence clears the *fixed* tau (not its flexible threshold; by design) gets its
    entry set to its prediction, at its index in the unlabeled set:

        selected_label[idx_ulb_b] = argmax q_b   for every b with max q_b >= tau

    An entry is never reset to -1; it changes only when the image clears tau again. Returns a new ``[N]`` tensor.
    """
    out = selected_label.clone()
    keep = max_q >= tau
    out[idx_ulb[keep]] = pseudo[keep].to(out.dtype)
    return out


@dataclass
class FlexMatchConfig(FixMatchCoreConfig):
    """FixMatch's knobs (``tau`` is now the *upper* threshold, reached by a fully learned class) and FlexMatch's.
    Defaults: USB ``flexmatch.py`` ``get_argument`` L134-140 and ``config/classic_cv/flexmatch/
    flexmatch_cifar10_40_0.yaml`` (tau = p_cutoff 0.95, hard labels, T 0.5, warm-up on, lambda_u 1, uratio 7)."""

    tau: float = param(0.95, "upper threshold tau: class c needs max q >= M(beta(c)) tau; also the fixed cut that "
                       "marks an image as learned", 0.0, 1.0, 0.01)
    thresh_warmup: bool = param(True, "threshold warm-up: normalise the learning effect by the count of unused "
                                "images too (Eq. 11; False: by the best class only, Eq. 6)")
    mapping: str = param("convex", "mapping M of the learning effect: 'convex' x/(2-x) (FlexMatch), 'linear' x, "
                         "'concave' ln(1+x)/ln2 (the paper's ablation)", choices=MAPPINGS)
    hard_label: bool = _hard_label()
    label_temperature: float = _label_temperature()


class FlexMatch(AdaptiveThresholdMethod):
    """total = l_s + lambda_u * l_u, l_u FixMatch's loss with the class threshold T_t(argmax q_b).

    The order of one step follows the official code (USB ``flexmatch.py`` ``train_step`` L59-116 and the hook's
    ``masking`` L38-63): the mask uses the thresholds from ``beta`` as it was *before* this batch; then this
    batch's confident images are marked (by ``batch.idx_ulb``); then ``beta`` is recomputed, for the *next* step.
    A step's threshold never depends on its own batch.

    State: ``selected_label`` ``[N]`` (one entry per unlabeled image, -1 = unused) and ``beta`` ``[C]`` (USB's
    ``classwise_acc``), both stored by the run cache (USB checkpoints them too).
    Soft labels (``hard_label=False``) use softmax(logits_w / T) as TorchSSL's ``flexmatch_utils.py`` L50; USB
    passes the raw probabilities there (T unused).
    """

    name = "flexmatch"
    title = "FlexMatch"
    summary = "per-class thresholds from each class's learning effect (curriculum pseudo-labeling; Zhang et al. 2021)"
    paper = "Zhang et al., FlexMatch: Boosting Semi-Supervised Learning with Curriculum Pseudo Labeling, NeurIPS 2021"
    year = 2021
    #: measured 2026-12-02 beside FixMatch (compare.registry.cpu_ms_per_step): 1.00x of FixMatch's one-thread step
    cpu_ms_per_step = 22.0
    diagnostics = ("thresh_mean", "thresh_min", "thresh_max", "unused")
    state = ("selected_label", "beta")
    Config = FlexMatchConfig

    def setup(self, model, split, ctx):
        super().setup(model, split, ctx)
        self.selected_label = torch.full((ctx.num_unlabeled,), -1, dtype=torch.long, device=ctx.device)
        self.beta = torch.zeros(ctx.num_classes, device=ctx.device)

    def step(self, model, batch, ctx):
        cfg = self.config
        if batch.idx_ulb is None:
            raise ValueError("FlexMatch needs batch.idx_ulb (the unlabeled images' indices) for its per-image marks")
        logits_x_lb, logits_x_ulb_w, logits_x_ulb_s = self._forward(model, batch, ctx)
        loss_x = supervised_loss(logits_x_lb, batch.y_lb)
        # 1. the thresholds of this step: from the marks of *past* steps
        thresholds = flexmatch_thresholds(self.beta, cfg.tau, cfg.mapping)
        loss_u, mask, pseudo = thresholded_unlabeled_loss(logits_x_ulb_w, logits_x_ulb_s, thresholds,
                                                          cfg.hard_label, cfg.label_temperature)
        # 2. after the mask: mark this batch's confident images (fixed tau, by image index), then beta for next step
        max_q = torch.softmax(logits_x_ulb_w.detach().float(), dim=1).max(dim=1).values
        # (several processes: every rank marks the global batch, so the marks stay identical)
        self.selected_label = flexmatch_update_marks(self.selected_label, ctx.gather(batch.idx_ulb), ctx.gather(max_q),
                                                     ctx.gather(pseudo), cfg.tau)
        self.beta = flexmatch_learning_effect(self.selected_label, ctx.num_classes, cfg.thresh_warmup)
        self._observe(ctx, pseudo, mask, batch.y_ulb, thresholds)
        loss = loss_x + cfg.lambda_u * loss_u
        return loss, {"loss_x": loss_x.detach(), "loss_u": loss_u.detach(), "mask_rate": mask.mean(),
                      "pseudo_acc": weighted_pseudo_accuracy(pseudo, batch.y_ulb, mask),
                      "thresh_mean": thresholds.mean(), "thresh_min": thresholds.min(),
                      "thresh_max": thresholds.max(), "unused": (self.selected_label < 0).float().mean()}


# ============================================================================================ FreeMatch
def freematch_update(tau_t, p_t, hist_t, probs_x_ulb_w, ema_p: float):
    """FreeMatch's self-adaptive statistics, one EMA step from the weak-view probabilities of *all* unlabeled rows
    of the batch (Wang et al. 2023, SAT Eqs. 4-6; USB ``semilearn/algorithms/freematch/utils.py`` ``update``
    L24-44):

        tau_t    = lambda tau_{t-1} + (1 - lambda) * (1 / (mu B)) sum_b max q_b         (global threshold)
        p_t(c)   = lambda p_{t-1}(c) + (1 - lambda) * (1 / (mu B)) sum_b q_b(c)         (local: mean prediction)
        hist_t(c) = lambda hist_{t-1}(c) + (1 - lambda) * (1 / (mu B)) sum_b 1[argmax q_b = c]   (for the SAF loss)

    lambda = ``ema_p`` (0.999). USB starts all three at 1/C (TorchSSL's ``freematch_entropy`` starts them at the
    first batch's values). Shapes: ``tau_t`` ``[]``, ``p_t``, ``hist_t`` ``[C]``, ``probs_x_ulb_w`` ``[N, C]``
    (detached). Returns the new ``(tau_t, p_t, hist_t)``.
    """
    q = probs_x_ulb_w.detach().float()
    max_q, arg = q.max(dim=1)
    hist = torch.bincount(arg, minlength=q.shape[1]).float() / len(arg)
    return ema(tau_t, max_q.mean(), ema_p), ema(p_t, q.mean(dim=0), ema_p), ema(hist_t, hist, ema_p)


def freematch_thresholds(tau_t: torch.Tensor, p_t: torch.Tensor) -> torch.Tensor:
    """FreeMatch's self-adaptive class thresholds, Eq. 7 (USB ``freematch/utils.py`` L63-64):

        tau_t(c) = MaxNorm(p_t)(c) * tau_t = p_t(c) / max_c' p_t(c') * tau_t

    The class the model predicts most keeps the global threshold; rarely predicted classes get a lower one. No
    clamp (USB's ``clip_thresh`` option, used only for SVHN, is not implemented). ``[]`` and ``[C]`` in, ``[C]``
    out."""
    return tau_t * p_t / p_t.max()


def freematch_fairness_loss(logits_x_ulb_s, mask, p_t, hist_t) -> torch.Tensor:
    """FreeMatch's self-adaptive fairness term L_f exactly as the official code computes it (USB
    ``semilearn/algorithms/freematch/freematch.py`` ``entropy_loss`` L16-44), on the *strong* views of the rows
    the mask keeps (gradient through their probabilities):

        P_b   = softmax(logits_s_b) for the n kept rows;   hbar(c) = (1/n) sum_b 1[argmax P_b = c]   (no gradient)
        A     = SumNorm(p_t / hist_t)                      (the running statistics, constants)
        B     = SumNorm(mean_b P_b / hbar)                 (1/hbar detached; a 1/0 is set to 0)
        L_f   = sum_c A(c) * log(B(c) + 1e-12)  =  -H(A, B)

    It is *added* with a positive weight (total = l_s + lambda_u l_u + w_f L_f), so minimising it maximises the
    cross-entropy H(A, B) — the sign of the official code (USB issues #182, #231: the maintainers keep it; the paper
    describes the term as encouraging diverse, fair predictions). 0 when no row is kept (USB's guard).

    Shapes: ``logits_x_ulb_s`` ``[N, C]``, ``mask`` ``[N]``, ``p_t``, ``hist_t`` ``[C]``. Returns a scalar.
    """
    keep = mask > 0
    if not bool(keep.any()):
        return logits_x_ulb_s.float().sum() * 0.0
    probs = torch.softmax(logits_x_ulb_s[keep].float(), dim=1)
    num_classes = probs.shape[1]
    hbar = torch.bincount(probs.detach().argmax(dim=1), minlength=num_classes).float() / len(probs)

    def inv(x):
        out = 1.0 / x
        return torch.where(torch.isinf(out), torch.zeros_like(out), out).detach()

    a = p_t.detach().float() * inv(hist_t.detach().float())
    a = a / a.sum()
    b = probs.mean(dim=0) * inv(hbar)
    b = b / b.sum()
    return (a * torch.log(b + 1e-12)).sum()


@dataclass
class FreeMatchConfig(MethodConfig):
    """Defaults: USB ``freematch.py`` ``get_argument`` L145-153 and ``config/classic_cv/freematch/
    freematch_cifar10_40_0.yaml`` (ema_p 0.999, hard labels, T 0.5, lambda_u 1, uratio 7). The fairness weight:
    USB's argparse default and TorchSSL's ``freematch_entropy`` configs use 0.01 (USB's own config files 0.001)."""

    lambda_u: float = param(1.0, "weight lambda_u of the unlabeled loss", 0.0, 10.0, 0.1)
    mu: int = param(7, "unlabeled images per labeled image in a batch", 1, 16, 1)
    ema_p: float = param(0.999, "momentum lambda of the running confidence statistics (tau_t, p_t, hist_t)",
                         0.0, 1.0, 0.001)
    lambda_f: float = param(0.01, "weight w_f of the self-adaptive fairness term (USB config files: 0.001)",
                            0.0, 1.0, 0.001)
    hard_label: bool = _hard_label()
    label_temperature: float = _label_temperature()


class FreeMatch(AdaptiveThresholdMethod):
    """total = l_s + lambda_u * l_u + w_f * L_f, l_u FixMatch's loss with the class threshold tau_t(argmax q_b).

    The order is the opposite of FlexMatch's (USB ``freematch/utils.py`` ``masking`` L47-66; TorchSSL
    ``models/freematch_entropy/freematch.py`` L237-242): the statistics are first updated from *this* batch's weak
    views (all unlabeled rows, before any mask), then the thresholds are taken from them, the mask computed, and the
    fairness term uses the just-updated p_t and hist_t. At the start tau_t = 1/C, so nearly every image passes.

    State: ``tau_t`` ``[]`` (USB ``time_p``), ``p_t`` ``[C]`` (``p_model``), ``hist_t`` ``[C]`` (``label_hist``).
    """

    name = "freematch"
    title = "FreeMatch"
    summary = "self-adaptive global and class thresholds from the running confidence, plus a fairness term " \
              "(Wang et al. 2023)"
    paper = "Wang et al., FreeMatch: Self-adaptive Thresholding for Semi-supervised Learning, ICLR 2023"
    year = 2023
    #: measured 2026-12-02 beside FixMatch (compare.registry.cpu_ms_per_step): 1.04x of FixMatch's one-thread step
    cpu_ms_per_step = 22.9
    diagnostics = ("tau_t", "thresh_min", "thresh_max", "loss_fair")
    state = ("tau_t", "p_t", "hist_t")
    Config = FreeMatchConfig

    def setup(self, model, split, ctx):
        super().setup(model, split, ctx)
        c = ctx.num_classes
        self.p_t = torch.full((c,), 1.0 / c, device=ctx.device)
        self.hist_t = torch.full((c,), 1.0 / c, device=ctx.device)
        self.tau_t = self.p_t.mean()

    def step(self, model, batch, ctx):
        cfg = self.config
        logits_x_lb, logits_x_ulb_w, logits_x_ulb_s = self._forward(model, batch, ctx)
        loss_x = supervised_loss(logits_x_lb, batch.y_lb)
        # 1. before the mask: the statistics include this batch's weak views, every unlabeled row
        q = torch.softmax(logits_x_ulb_w.detach().float(), dim=1)
        # (several processes: from the global batch, so every rank keeps the same statistics)
        self.tau_t, self.p_t, self.hist_t = freematch_update(self.tau_t, self.p_t, self.hist_t, ctx.gather(q),
                                                             cfg.ema_p)
        # 2. the thresholds, the mask, the losses
        thresholds = freematch_thresholds(self.tau_t, self.p_t)
        loss_u, mask, pseudo = thresholded_unlabeled_loss(logits_x_ulb_w, logits_x_ulb_s, thresholds,
                                                          cfg.hard_label, cfg.label_temperature)
        loss_fair = freematch_fairness_loss(logits_x_ulb_s, mask, self.p_t, self.hist_t)
        self._observe(ctx, pseudo, mask, batch.y_ulb, thresholds)
        loss = loss_x + cfg.lambda_u * loss_u + cfg.lambda_f * loss_fair
        return loss, {"loss_x": loss_x.detach(), "loss_u": loss_u.detach(), "loss_fair": loss_fair.detach(),
                      "mask_rate": mask.mean(), "pseudo_acc": weighted_pseudo_accuracy(pseudo, batch.y_ulb, mask),
                      "tau_t": self.tau_t.detach(), "thresh_min": thresholds.min(), "thresh_max": thresholds.max()}


# ============================================================================================ SoftMatch
def uniform_alignment(probs: torch.Tensor, p_hat: torch.Tensor) -> torch.Tensor:
    """SoftMatch's uniform alignment (UA; USB ``semilearn/algorithms/hooks/dist_align.py`` ``dist_align`` L26-34,
    target ``uniform``):

        UA(q_b) = Normalize(q_b * (u + 1e-6) / (p_hat + 1e-6)),   u(c) = 1/C

    ``p_hat`` ``[C]`` is the running mean of the weak-view predictions (:func:`update_prediction_mean`). A class the
    model predicts too often is scaled down, a neglected one up, so the *weights* of neglected classes rise.
    ``[N, C]`` in, ``[N, C]`` out (rows sum to 1)."""
    u = torch.full_like(p_hat, 1.0 / len(p_hat))
    aligned = probs * (u + 1e-6) / (p_hat + 1e-6)
    return aligned / aligned.sum(dim=1, keepdim=True)


def update_prediction_mean(p_hat: torch.Tensor, probs: torch.Tensor, momentum: float) -> torch.Tensor:
    """p_hat <- m p_hat + (1 - m) mean_b q_b, and p_hat = mean_b q_b at the first step (USB ``dist_align.py``
    ``update_p`` L49-53 starts from ``None``; here "not started" is an all-zero ``p_hat``)."""
    mean = probs.detach().float().mean(dim=0)
    if float(p_hat.sum()) == 0.0:
        return mean
    return ema(p_hat, mean, momentum)


def softmatch_update_moments(mu_t, var_t, max_probs, momentum: float):
    """The running mean and variance of the confidences (SoftMatch Eq. 8; USB ``semilearn/algorithms/softmatch/
    utils.py`` ``update`` L32-39):

        mu_b = (1 / N) sum_b max p_b,   sigma_b^2 = 1 / (N - 1) sum_b (max p_b - mu_b)^2     (*unbiased*)
        mu_t = m mu_{t-1} + (1 - m) mu_b,   sigma_t^2 = m sigma_{t-1}^2 + (1 - m) sigma_b^2

    Start: mu_0 = 1/C, sigma_0^2 = 1 (so the first weights are almost all 1). A batch of one row has no variance;
    sigma_t^2 then stays as it was. ``[]``, ``[]``, ``[N]`` in; the new ``(mu_t, var_t)`` out."""
    p = max_probs.detach().float()
    mu = ema(mu_t, p.mean(), momentum)
    var = ema(var_t, p.var(unbiased=True), momentum) if len(p) > 1 else var_t
    return mu, var


def softmatch_weight(max_probs, mu_t, var_t, n_sigma: float = 2.0) -> torch.Tensor:
    """SoftMatch's truncated Gaussian weight (Eq. 7; USB ``softmatch/utils.py`` L76; TorchSSL
    ``models/softmatch/softmatch.py`` L259 hard-codes n_sigma = 2 as ``/ 4``):

        lambda(p) = exp(-(min(max p - mu_t, 0))^2 / (2 sigma_t^2 / n_sigma^2))

    1 for a confidence at or above the running mean mu_t; below it, a Gaussian of standard deviation
    sigma_t / n_sigma. lambda_max is 1 (lambda_u scales it); no row ever gets weight 0. ``[N]`` in, ``[N]`` out."""
    below = torch.clamp(max_probs.detach().float() - mu_t, max=0.0)
    return torch.exp(-(below ** 2) / (2.0 * var_t / n_sigma ** 2))


@dataclass
class SoftMatchConfig(MethodConfig):
    """Defaults: USB ``softmatch.py`` ``get_argument`` L137-146 and ``config/classic_cv/softmatch/
    softmatch_cifar10_40_0.yaml`` (ema_p 0.999, n_sigma 2, uniform alignment on, hard labels, T 0.5, lambda_u 1,
    uratio 7). USB's ``per_class`` option (off by default; it crashes there) is not implemented."""

    lambda_u: float = param(1.0, "weight lambda_u of the unlabeled loss (= lambda_max of the weight)", 0.0, 10.0, 0.1)
    mu: int = param(7, "unlabeled images per labeled image in a batch", 1, 16, 1)
    ema_p: float = param(0.999, "momentum m of the running mean and variance of the confidence (and of p_hat)",
                         0.0, 1.0, 0.001)
    n_sigma: float = param(2.0, "width of the Gaussian below the mean: its std is sigma_t / n_sigma", 0.25, 8.0, 0.25)
    dist_align: bool = param(True, "uniform alignment of the weak-view predictions before the weight (UA)")
    hard_label: bool = _hard_label()
    label_temperature: float = _label_temperature()


class SoftMatch(AdaptiveThresholdMethod):
    """total = l_s + lambda_u * (1 / (mu B)) sum_b lambda(max UA(q_b)) * H(argmax q_b, p_m(y | A(u_b))).

    The order follows USB (``softmatch.py`` ``train_step`` L55-114): update p_hat from this batch's weak views ->
    align -> update mu_t, sigma_t^2 from the *aligned* confidences -> weights (this batch included). The
    pseudo-label is the argmax of the *raw* weak prediction, not the aligned one (USB L93-98: "uniform alignment in
    softmatch do not use aligned probs for generating pseudo labels"). TorchSSL (the paper's own runs) updates the
    moments from the raw confidences before aligning, and aligns to an EMA of the labeled predictions instead of
    uniform; the USB maintainers call the difference trivial (USB issue #89).

    State: ``mu_t`` ``[]``, ``var_t`` ``[]`` (USB ``prob_max_mu_t``, ``prob_max_var_t``), ``p_hat`` ``[C]``
    (``DistAlignEMAHook.p_model``; all-zero until the first step).
    ``dist_align=False`` leaves the predictions unaligned (USB stores the flag but always aligns).
    """

    name = "softmatch"
    title = "SoftMatch"
    summary = "a truncated-Gaussian confidence weight instead of a hard threshold, with uniform alignment " \
              "(Chen et al. 2023)"
    paper = "Chen et al., SoftMatch: Addressing the Quantity-Quality Trade-off in Semi-supervised Learning, ICLR 2023"
    year = 2023
    #: measured 2026-12-02 beside FixMatch (compare.registry.cpu_ms_per_step): 1.02x of FixMatch's one-thread step
    cpu_ms_per_step = 22.4
    diagnostics = ("mu_t", "sigma_t", "weight_min", "weight_max")
    state = ("mu_t", "var_t", "p_hat")
    Config = SoftMatchConfig

    def setup(self, model, split, ctx):
        super().setup(model, split, ctx)
        self.mu_t = torch.tensor(1.0 / ctx.num_classes, device=ctx.device)
        self.var_t = torch.tensor(1.0, device=ctx.device)
        self.p_hat = torch.zeros(ctx.num_classes, device=ctx.device)

    def step(self, model, batch, ctx):
        cfg = self.config
        logits_x_lb, logits_x_ulb_w, logits_x_ulb_s = self._forward(model, batch, ctx)
        loss_x = supervised_loss(logits_x_lb, batch.y_lb)
        q = torch.softmax(logits_x_ulb_w.detach().float(), dim=1)
        q_all = ctx.gather(q)  # several processes: the statistics follow the global batch on every rank
        if cfg.dist_align:
            self.p_hat = update_prediction_mean(self.p_hat, q_all, cfg.ema_p)
            q_al, q_al_all = uniform_alignment(q, self.p_hat), uniform_alignment(q_all, self.p_hat)
        else:
            q_al, q_al_all = q, q_all
        max_al = q_al.max(dim=1).values
        self.mu_t, self.var_t = softmatch_update_moments(self.mu_t, self.var_t, q_al_all.max(dim=1).values, cfg.ema_p)
        weight = softmatch_weight(max_al, self.mu_t, self.var_t, cfg.n_sigma)
        pseudo = q.argmax(dim=1)  # from the raw prediction
        target = pseudo_targets(logits_x_ulb_w, cfg.hard_label, cfg.label_temperature)
        loss_u = soft_unlabeled_loss(logits_x_ulb_s, target, weight)
        # per predicted class: the mean weight of its rows in this batch (classes present only)
        n_class = torch.bincount(pseudo, minlength=ctx.num_classes)
        class_weight = torch.bincount(pseudo, weight, minlength=ctx.num_classes)[n_class > 0] / n_class[n_class > 0]
        self._observe(ctx, pseudo, weight, batch.y_ulb, self.mu_t.expand(ctx.num_classes))
        loss = loss_x + cfg.lambda_u * loss_u
        return loss, {"loss_x": loss_x.detach(), "loss_u": loss_u.detach(), "mask_rate": weight.mean(),
                      "pseudo_acc": weighted_pseudo_accuracy(pseudo, batch.y_ulb, weight),
                      "mu_t": self.mu_t.detach(), "sigma_t": self.var_t.detach().sqrt(),
                      "weight_min": class_weight.min(), "weight_max": class_weight.max()}
