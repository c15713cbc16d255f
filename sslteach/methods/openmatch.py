"""OpenMatch — Saito, Kim & Saenko, "OpenMatch: Open-set Consistency Regularization for Semi-supervised Learning
with Outliers", NeurIPS 2021, arXiv:2105.14148 (official code: VisionLearningGroup/OP_Match).

The unlabeled data holds images of classes that have no label at all (*outliers*). FixMatch would give each of them
a confident pseudo-label of some known class. OpenMatch adds a second head to the network: K one-vs-all (OVA)
binary detectors, "is this image class k, or not?". An image's outlier score is the OVA "not" probability of the
class the usual K-way head predicts. The detectors learn from the labeled images (with the hardest negative class),
become confident on unlabeled images (entropy minimisation) and smooth under augmentation (SOCR, the soft open-set
consistency); every "epoch" the EMA model re-selects the *pseudo-inliers* (outlier score < 0.5), and FixMatch runs
on those only, after a warm-up.

As in the official code (``trainer.py``, ``utils/misc.py``): the OVA head is a bias-free linear layer with 2K outputs
on the encoder's features, read as ``[B, 2, K]`` with index 0 = "out" (not class k) and index 1 = "in"; the labeled
losses use two views of each labeled image; entropy minimisation and SOCR use two weak views of a batch drawn from
*all* unlabeled images; the FixMatch term uses a second batch drawn from the pseudo-inliers only, in its own forward
pass; the total is ``L_x + L_ova + 0.1 L_oem + 0.5 L_socr + L_fix``.

Where we differ (notebook 09 explains each): FixMatch's threshold is the paper's ``tau = 0.95``, not the official
code's default 0; the warm-up (``fix_start``), the re-selection period (``select_every``) and the EMA decay are
scaled to runs of ~1000 steps; the selection scores the unaugmented images (the official code: a flip-only view).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import IndexSampler, Split, to_float
from ..evaluation import EMA, eval_batch_size
from ..utils import check_float, check_int
from .base import Method, MethodConfig, param, pseudo_label_accuracy, supervised_loss
from .fixmatch import fixmatch_unlabeled_loss


# ------------------------------------------------------------------------------------------------- the network
class OpenSetNet(nn.Module):
    """A classifier with OpenMatch's second head: K one-vs-all detectors on the same features.

    ``forward(x)`` returns ``(logits [B, K], features [B, D])`` like every network of the package (so evaluation,
    EMA copies and the run cache treat it as usual); ``forward_open(x)`` also returns the OVA logits ``[B, 2K]``.
    The OVA head is a linear layer without bias (the official ``fc_open``). Because the head is a submodule, every
    copy of the network — the EMA teacher, the trainer's EMA, a cached run — carries its own OVA head, matched to
    its own encoder.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, feature_dim: int | None = None):
        super().__init__()
        check_int("num_classes", num_classes, 1)
        d = feature_dim if feature_dim is not None else getattr(backbone, "feature_dim", None)
        if d is None:
            raise ValueError("feature_dim must be given for a backbone without a feature_dim attribute")
        self.backbone = backbone
        self.ova = nn.Linear(d, 2 * num_classes, bias=False)
        self.num_classes, self.feature_dim = num_classes, d

    def forward(self, x):
        return self.backbone(x)

    def forward_open(self, x):
        """``(logits [B, K], ova_logits [B, 2K], features [B, D])``."""
        logits, feats = self.backbone(x)
        return logits, self.ova(feats), feats


# ------------------------------------------------------------------------------------------------- the losses
def _ova_view(ova_logits: torch.Tensor) -> torch.Tensor:
    if ova_logits.ndim != 2 or ova_logits.shape[1] % 2:
        raise ValueError(f"ova_logits must be [N, 2K] (K one-vs-all detectors, 2 logits each); got "
                         f"{tuple(ova_logits.shape)}")
    return ova_logits.float().view(len(ova_logits), 2, ova_logits.shape[1] // 2)


def ova_probabilities(ova_logits: torch.Tensor) -> torch.Tensor:
    """The K binary detectors' probabilities: ``ova_logits [N, 2K]`` read as ``[N, 2, K]``, softmax over the pair.
    ``p[:, 0, k]`` = p_out(k), "not class k"; ``p[:, 1, k]`` = p_in(k), "class k"; ``p_in + p_out = 1``."""
    return torch.softmax(_ova_view(ova_logits), dim=1)


def ova_loss(ova_logits: torch.Tensor, y: torch.Tensor):
    """OpenMatch's OVA loss on labeled images with hard-negative mining (paper Eq. 1; official ``ova_loss``):

        L_ova = 1/B sum_b [ -log p_in(y_b | x_b)  +  max_{j != y_b} -log p_out(j | x_b) ]

    Each image trains the detector of its own class to say "in" and only the *hardest* other detector (the one
    most inclined to claim it) to say "out" — the maximum, not the mean, over the K - 1 negatives. With K = 1 there
    is no negative and the second term is 0. Computed with log-softmax (the official code uses log(p + 1e-8)).

    Args: ``ova_logits``: ``[B, 2K]``; ``y``: ``[B]`` labels in [0, K).
    Returns: ``(loss, hard_negative [B])``: the class j chosen as each image's hard negative (K = 1: the label).
    """
    log_p = F.log_softmax(_ova_view(ova_logits), dim=1)  # [B, 2, K]
    k = log_p.shape[2]
    y = y.long().view(-1, 1)
    if len(y) != len(log_p) or (len(y) and (y.min() < 0 or y.max() >= k)):
        raise ValueError(f"y must hold {len(log_p)} labels in [0, {k - 1}]")
    nll_in = -log_p[:, 1, :].gather(1, y).squeeze(1)
    nll_out = -log_p[:, 0, :]                                  # [B, K], every entry >= 0
    negatives = torch.ones_like(nll_out).scatter_(1, y, 0.0)   # 1 for j != y
    hard, hard_negative = (nll_out * negatives).max(dim=1)     # zeroed y never wins unless K = 1
    return nll_in.mean() + hard.mean(), hard_negative


def ova_entropy(ova_logits: torch.Tensor) -> torch.Tensor:
    """Open-set entropy minimisation (paper Eq. 2; official ``ova_ent``): the mean binary entropy of the K
    detectors, over images and classes,

        L_oem = 1/(N K) sum_b sum_k H(p(. | x_b, k)),   H(p) = -p_in log p_in - p_out log p_out

    applied to *all* unlabeled images, outliers included: each detector is pushed to a confident in/out answer.
    Args: ``ova_logits``: ``[N, 2K]``. Returns a scalar."""
    log_p = F.log_softmax(_ova_view(ova_logits), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1).mean()


def socr_loss(ova_logits_1: torch.Tensor, ova_logits_2: torch.Tensor) -> torch.Tensor:
    """SOCR, soft open-set consistency regularisation (paper Eq. 3; official ``L_socr``): the OVA probabilities of
    two augmentations of the same unlabeled image must agree — soft targets, no sharpening, no stop-gradient:

        L_socr = 1/N sum_b sum_k sum_{i in {in, out}} ( p_i(k | view1_b) - p_i(k | view2_b) )^2

    Zero for identical views. Both views receive gradient. Args: two ``[N, 2K]`` tensors. Returns a scalar."""
    if ova_logits_1.shape != ova_logits_2.shape:
        raise ValueError(f"the two views' OVA logits must have the same shape; got {tuple(ova_logits_1.shape)} and "
                         f"{tuple(ova_logits_2.shape)}")
    p1, p2 = ova_probabilities(ova_logits_1), ova_probabilities(ova_logits_2)
    return ((p1 - p2) ** 2).sum(dim=(1, 2)).mean()


def outlier_score(logits: torch.Tensor, ova_logits: torch.Tensor) -> torch.Tensor:
    """OpenMatch's outlier score: the OVA "not" probability of the class the K-way head predicts,
    ``s_b = p_out(argmax_c logits_b,c | x_b)``, in [0, 1] (high = probably an unknown class). Official ``test``:
    ``unk_score = out_open[range, 0, pred_close]``. Args: ``[N, K]``, ``[N, 2K]``. Returns ``[N]``."""
    p = ova_probabilities(ova_logits)
    if logits.shape[0] != p.shape[0] or logits.shape[1] != p.shape[2]:
        raise ValueError(f"logits [N, K] and ova_logits [N, 2K] do not match: {tuple(logits.shape)} and "
                         f"{tuple(ova_logits.shape)}")
    pred = logits.argmax(dim=1, keepdim=True)
    return p[:, 0, :].gather(1, pred).squeeze(1)


def select_pseudo_inliers(scores: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Pseudo-inliers: the unlabeled images whose outlier score is below ``threshold`` (0.5: the predicted class's
    detector says "in" more than "out"; official ``exclude_dataset``: ``known_ind = unk_score < 0.5``). Returns a
    boolean mask of the same shape."""
    check_float("threshold", threshold, 0.0, 1.0)
    return scores < threshold


# ------------------------------------------------------------------------------------------------- the method
@dataclass
class OpenMatchConfig(MethodConfig):
    mu: int = param(2, "unlabeled images per labeled image in each of the two unlabeled batches (all / inliers)",
                    1, 16, 1)
    lambda_oem: float = param(0.1, "weight of the OVA entropy minimisation on all unlabeled images", 0.0, 10.0, 0.05)
    lambda_socr: float = param(0.5, "weight of SOCR, the soft open-set consistency of two weak views (0: ablation)",
                               0.0, 10.0, 0.1)
    lambda_u: float = param(1.0, "weight lambda_u of the FixMatch loss on pseudo-inliers", 0.0, 10.0, 0.1)
    tau: float = param(0.95, "confidence threshold tau of FixMatch's pseudo-labels on pseudo-inliers (the paper's "
                       "0.95; the official code's default is 0)", 0.0, 1.0, 0.01)
    fix_start: float = param(0.1, "share of training before pseudo-inliers are selected and FixMatch starts",
                             0.0, 1.0, 0.01, paper="10 of 512 epochs, about 0.02")
    select_every: int = param(50, "steps between two selections of pseudo-inliers by the EMA model (one 'epoch')",
                              1, 1000, 10, paper=1024)
    teacher_decay: float = param(0.99, "EMA decay of the model that selects pseudo-inliers and is reported",
                                 0.0, 1.0, 0.001, paper=0.999)


def _flip_only(aug, x: torch.Tensor) -> torch.Tensor:
    """The official code's mildest view: a random horizontal flip where the dataset allows one, nothing else
    (digits and points: the image itself)."""
    if getattr(aug, "kind", "image") != "image" or not getattr(aug, "flip", False):
        return x
    flip = torch.rand(len(x), device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


class OpenMatch(Method):
    """total = L_x + L_ova + lambda_oem L_oem + lambda_socr L_socr + lambda_u L_fix.

    Forward 1: [two views of the labeled batch | two weak views of a batch of *all* unlabeled images] ->
    L_x (cross-entropy) and L_ova on the labeled rows, L_oem and L_socr on the unlabeled ones. Forward 2 (after the
    warm-up ``fix_start``): [weak | strong] views of a batch drawn from the current *pseudo-inliers* only -> L_fix,
    FixMatch's loss with threshold ``tau``. Pseudo-inliers are re-selected every ``select_every`` steps with the EMA
    teacher (eval mode, unaugmented images) from the outlier score of :func:`outlier_score`. The teacher (encoder,
    classifier and OVA head averaged together) is the reported model and gives the test-time outlier score.
    """

    name = "openmatch"
    title = "OpenMatch"
    summary = "one-vs-all outlier detectors, soft open-set consistency, FixMatch on pseudo-inliers (Saito et al. 2021)"
    paper = "Saito, Kim & Saenko, OpenMatch, NeurIPS 2021"
    year = 2021
    family = "open-set data"
    notebook = "09_openmatch"
    designed_for = "open_set"
    builds_on = "fixmatch"
    diagnostics = ("loss_o", "loss_oem", "loss_socr", "outlier_admit", "inlier_recall")
    state = ("teacher", "pseudo_inlier", "selection_scores")
    transient = ("last_fix_index",)
    cpu_ms_per_step = 12.6
    Config = OpenMatchConfig
    report = "teacher"

    def __init__(self, config: OpenMatchConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.teacher: EMA | None = None
        self.pseudo_inlier: torch.Tensor | None = None   # [N_ulb] bool, the current selection (saved in the cache)
        self.selection_scores: torch.Tensor | None = None  # [N_ulb] the teacher's outlier scores at the last one
        self.selection_stats: dict = {}
        self.selections = 0
        self.last_fix_index: torch.Tensor | None = None  # positions (in the unlabeled set) of the last L_fix batch
        self._data: dict = {}
        self._sampler = None
        self._last_selection: int | None = None
        self._gen: torch.Generator | None = None

    # ---- set-up
    def build_model(self, input_shape, num_classes, train_config):
        from ..models import make_model

        backbone = make_model(train_config.model, input_shape, num_classes, train_config.dropout, train_config.width)
        return OpenSetNet(backbone, num_classes)

    def setup(self, model, split, ctx):
        if not hasattr(model, "forward_open"):
            raise ValueError("OpenMatch needs a network with an OVA head: wrap yours as OpenSetNet(net, num_classes) "
                             f"(got {type(model).__name__})")
        if model.num_classes != split.num_classes:
            raise ValueError(f"the network's OVA head has {model.num_classes} classes, the split {split.num_classes}")
        self.teacher = EMA(model, self.config.teacher_decay)
        self._data = {"x_ulb": split.x_ulb, "y_ulb": split.y_ulb}  # the split's images: setup hands them over again
        n = len(split.y_ulb)
        self.pseudo_inlier = torch.zeros(n, dtype=torch.bool, device=ctx.device)
        self.selection_scores = torch.full((n,), float("nan"), device=ctx.device)
        self.selection_stats, self.selections, self._last_selection, self._sampler = {}, 0, None, None
        self._gen = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,)).item()))

    def fix_start_step(self, total_steps: int) -> int:
        """The first step with pseudo-inlier selection and the FixMatch term."""
        return round(self.config.fix_start * total_steps)

    # ---- pseudo-inliers
    @torch.no_grad()
    def select(self, batch_size: int | None = None) -> dict:
        """Re-select the pseudo-inliers with the EMA teacher (eval mode) on the unaugmented unlabeled images (the
        official code uses a flip-only view). Returns the selection's diagnostics (hidden labels used for them
        only): ``inlier_rate`` (share of the unlabeled set selected), ``outlier_admit`` (share of the true outliers
        selected), ``inlier_recall`` (share of the true known-class images selected)."""
        net = self.teacher.module
        was_training = net.training
        net.eval()
        x = self._data["x_ulb"]
        batch_size = batch_size or eval_batch_size(x.device)
        scores = []
        for i in range(0, len(x), batch_size):
            logits, ova, _ = net.forward_open(to_float(x[i: i + batch_size]))
            scores.append(outlier_score(logits, ova))
        net.train(was_training)
        self.selection_scores = torch.cat(scores).float()
        self.pseudo_inlier = select_pseudo_inliers(self.selection_scores)
        self.selections += 1
        self._sampler = None
        y = self._data["y_ulb"]
        known = y >= 0
        sel = self.pseudo_inlier
        nan = float("nan")
        self.selection_stats = {
            "inlier_rate": sel.float().mean().item() if len(sel) else nan,
            "outlier_admit": sel[~known].float().mean().item() if (~known).any() else nan,
            "inlier_recall": sel[known].float().mean().item() if known.any() else nan}
        return dict(self.selection_stats)

    def _inlier_batch(self, n: int, rank: int = 0, world_size: int = 1) -> torch.Tensor | None:
        """Positions (in the unlabeled set) of ``n`` pseudo-inliers: shuffled epochs over the current selection. On
        several processes every rank draws the same global batch of ``n * world_size`` and takes its own slice."""
        inliers = torch.nonzero(self.pseudo_inlier).flatten()
        if len(inliers) == 0:
            return None
        if self._sampler is None:
            self._sampler = IndexSampler(len(inliers), n * world_size, self._gen, "cpu")
        idx = next(self._sampler)[rank * n: (rank + 1) * n]
        return inliers[idx.to(inliers.device)]

    # ---- one step
    def step(self, model, batch, ctx):
        cfg = self.config
        if self.teacher is None:
            raise RuntimeError("OpenMatch.setup() must run before step() (the Trainer does this)")
        b, n_ulb = len(batch.x_lb), len(batch.x_ulb)
        y2 = batch.y_lb.repeat(2)
        # forward 1: two labeled views (flip-only and weak), two weak views of a batch of all unlabeled images
        x = torch.cat([_flip_only(ctx.aug, batch.x_lb), ctx.aug.weak(batch.x_lb),
                       ctx.aug.weak(batch.x_ulb), ctx.aug.weak(batch.x_ulb)])
        logits, ova_logits, _ = model.forward_open(x)
        loss_x = supervised_loss(logits[: 2 * b].float(), y2)
        loss_o, _ = ova_loss(ova_logits[: 2 * b], y2)
        ova_u1, ova_u2 = ova_logits[2 * b:].split(n_ulb)
        loss_oem = 0.5 * (ova_entropy(ova_u1) + ova_entropy(ova_u2))
        loss_socr = socr_loss(ova_u1, ova_u2)

        # pseudo-inliers, re-selected every `select_every` steps once the warm-up is over; then FixMatch on them
        nan = torch.tensor(float("nan"))
        loss_u, mask_rate, pacc = torch.zeros((), device=logits.device), nan, nan
        self.last_fix_index = None
        if ctx.step >= self.fix_start_step(ctx.total_steps):
            if self._last_selection is None or ctx.step - self._last_selection >= cfg.select_every:
                with ctx.lump("pseudo-inlier selection"):  # a pass over the whole unlabeled set, now and then
                    self.select()
                self._last_selection = ctx.step
            idx = self._inlier_batch(n_ulb, ctx.rank, ctx.world_size)
            if idx is not None:
                self.last_fix_index = idx
                x_f = to_float(self._data["x_ulb"][idx])
                logits_f, _ = model(torch.cat([ctx.aug.weak(x_f), ctx.aug.strong(x_f)]))  # forward 2
                logits_w, logits_s = logits_f.split(len(idx))
                loss_u, mask, pseudo = fixmatch_unlabeled_loss(logits_w, logits_s, cfg.tau)
                mask_rate = mask.mean()
                pacc = pseudo_label_accuracy(pseudo, self._data["y_ulb"][idx], mask)
        loss = (loss_x + loss_o + cfg.lambda_oem * loss_oem + cfg.lambda_socr * loss_socr + cfg.lambda_u * loss_u)
        stats = {k: torch.tensor(self.selection_stats.get(k, float("nan")))
                 for k in ("inlier_rate", "outlier_admit", "inlier_recall")}
        return loss, {"loss_x": loss_x.detach(), "loss_o": loss_o.detach(), "loss_oem": loss_oem.detach(),
                      "loss_socr": loss_socr.detach(), "loss_u": loss_u.detach(), "mask_rate": mask_rate,
                      "pseudo_acc": pacc, **stats}

    def after_step(self, model, ctx):
        self.teacher.update(model)

    # ---- evaluation
    def eval_models(self):
        return {"teacher": self.teacher.module} if self.teacher is not None else {}

    def outlier_scores(self, model, x):
        """The OVA "not" probability of the predicted class (:func:`outlier_score`) of ``model``'s own OVA head;
        a network without one falls back to ``1 - max softmax``."""
        if hasattr(model, "forward_open"):
            logits, ova, _ = model.forward_open(x)
            return outlier_score(logits, ova)
        return super().outlier_scores(model, x)

    def extra_results(self):
        return {"pseudo_inlier_selections": self.selections, **{f"final_{k}": v for k, v in
                                                                 self.selection_stats.items()}}


# ------------------------------------------------------------------------------------------------- data helper
def with_outlier_share(split: Split, share: float, seed: int = 0) -> Split:
    """The same open-set split with outliers (hidden label -1) making up ``share`` of the unlabeled set: every
    known-class unlabeled image is kept and a random subset of the outliers is added (``share = 0``: none, a
    closed-set problem with the same inliers). The labeled and test images are unchanged, so runs at different
    shares differ only in the outliers. Raises if the split has too few outliers for ``share``."""
    if split.kind != "open_set":
        raise ValueError(f"with_outlier_share needs an open-set split; got a {split.kind} split")
    check_float("share", share, 0.0, 1.0)
    inl = torch.nonzero(split.y_ulb >= 0).flatten()
    out = torch.nonzero(split.y_ulb < 0).flatten()
    if share >= 1.0:
        raise ValueError("share must be below 1 (the known-class unlabeled images are always kept)")
    n_out = round(share / (1.0 - share) * len(inl))
    if n_out > len(out):
        top = len(out) / (len(out) + len(inl))
        raise ValueError(f"share must be in [0, {top:.3f}] for this split ({len(out)} outliers, {len(inl)} "
                         f"known-class unlabeled images); got {share}")
    g = torch.Generator().manual_seed(check_int("seed", seed, 0))
    keep = torch.cat([inl, out[torch.randperm(len(out), generator=g)[:n_out].to(out.device)]]).sort().values
    info = dict(split.info, outlier_share=share)
    return Split(split.dataset, split.x_lb, split.y_lb, split.x_ulb[keep], split.y_ulb[keep], split.x_test,
                 split.y_test, split.kind, split.seed, info)
