"""CoSSL — Fan, Dai, Kukleva & Schiele, "CoSSL: Co-Learning of Representation and Classifier for Imbalanced
Semi-Supervised Learning", CVPR 2022, arXiv:2112.04564 (official code: YUE-FAN/CoSSL).

On a long-tailed split, a classifier trained on the labeled images is biased towards the frequent ("head") classes,
and so are the pseudo-labels it gives to the unlabeled images: semi-supervised learning then *amplifies* the
imbalance. CoSSL decouples the representation from the classifier, and couples them again without gradients:

* **representation**: the encoder trains with FixMatch (:func:`~sslteach.methods.fixmatch.fixmatch_unlabeled_loss`);
* **balanced classifier**: a *separate* linear head is trained with cross-entropy on features of a class-balanced
  labeled batch, taken from the EMA ("momentum") encoder without gradient. Tail-class Feature Enhancement (TFE,
  :func:`tfe_features`) mixes a rare class's feature with a random feature of the labeled + unlabeled pool,
  ``f = lam f_c + (1 - lam) f_u``, keeping the label c, more often the rarer c is;
* **pseudo-labels**: during co-learning, FixMatch's pseudo-labels come from the balanced head applied to the EMA
  encoder's features of the weak view, instead of the encoder's own (biased) head.

At test time the model is the EMA encoder followed by the EMA of the balanced head.

As in the official code, training has two phases: plain FixMatch first, then co-learning (the paper resumes a
FixMatch checkpoint at epoch 400 of 500 and co-learns for 100 epochs). Here both phases are one run: the first
``warmup`` fraction of the steps is FixMatch, exactly as :class:`~sslteach.methods.fixmatch.FixMatch` computes it;
at the switch the head is fitted to TFE features of the EMA encoder (the paper's ``tfe_init``, simplified), then the
three modules co-learn. Differences from the official code are listed in :class:`CoSSL`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import tail_classes, to_float
from ..evaluation import EMA, eval_batch_size
from .base import Method, MethodConfig, param, pseudo_label_accuracy, supervised_loss
from .fixmatch import fixmatch_unlabeled_loss


# ------------------------------------------------------------------------------------------ pure functions
def tfe_probabilities(counts) -> torch.Tensor:
    """TFE's mixing probability per class (official code, ``train_cifar_fix_cossl.py``):

        p_c = (N_max - N_c) / N_max

    where N_c is the number of *labeled* images of class c: the largest class is never mixed, a class with one
    image out of N_max = 50 is mixed 98 % of the time. Args: ``counts`` (list or tensor, ``[C]``, all >= 1).
    Returns a float tensor ``[C]`` in [0, 1).
    """
    n = torch.as_tensor(counts, dtype=torch.float64).flatten()
    if len(n) == 0 or not bool((n >= 1).all()):
        raise ValueError(f"counts must be a non-empty list of class sizes >= 1; got {counts}")
    return ((n.max() - n) / n.max()).float()


def class_balanced_indices(labels: torch.Tensor, n: int, num_classes: int | None = None,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` indices into ``labels`` drawn with replacement so that every class is equally likely: image i has
    weight 1 / N_{y_i} (the official code's ``WeightedRandomSampler`` with a uniform target distribution).
    Each draw is class c with probability 1 / (number of classes present), and uniform within the class.
    Returns a long tensor ``[n]`` on ``labels``' device."""
    labels = torch.as_tensor(labels).long()
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"labels must be a non-empty 1-D tensor; got shape {tuple(labels.shape)}")
    if int(n) < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    counts = torch.bincount(labels.cpu(), minlength=num_classes or 0).double()
    weights = 1.0 / counts[labels.cpu()]
    idx = torch.multinomial(weights, int(n), replacement=True, generator=generator)
    return idx.to(labels.device)


def tfe_features(feat_x: torch.Tensor, y_x: torch.Tensor, feat_u: torch.Tensor, tfe_prob: torch.Tensor,
                 lam_min: float = 0.6, generator: torch.Generator | None = None):
    """Tail-class Feature Enhancement (Fan et al. 2022, Sec. 3.3; official ``train_cifar_fix_cossl.py``).

    For each labeled feature f_b of class c = y_b, paired with the pool feature u_b at the same position:

        with probability p_c:   f_b' = lam_b f_b + (1 - lam_b) u_b,   lam_b ~ U(lam_min, 1)
        otherwise:              f_b' = f_b
        the label stays y_b in both cases.

    The pool (labeled + unlabeled images) is *not* filtered by class: u_b is mostly a head-class feature, and since
    lam_b >= lam_min > 1/2 the mixed feature stays nearer to f_b. Random draws, in this order (so a test can
    repeat them): ``r = torch.rand(B)``, then ``s = torch.rand(B)``; mixed = r < p_{y_b}; lam_b = lam_min +
    (1 - lam_min) s_b.

    Args: ``feat_x`` ``[B, D]`` (labeled features, no gradient needed), ``y_x`` ``[B]``, ``feat_u`` ``[>= B, D]``
    (pool features; the first B are used), ``tfe_prob`` ``[C]`` (:func:`tfe_probabilities`), ``lam_min`` in [0, 1].
    Returns: ``(feat_new [B, D], y [B] (= y_x), mixed [B] bool, lam [B] (1 where not mixed))``.
    """
    if not 0.0 <= float(lam_min) <= 1.0:
        raise ValueError(f"lam_min must be in [0, 1]; got {lam_min}")
    if feat_x.ndim != 2 or feat_u.ndim != 2 or feat_x.shape[1] != feat_u.shape[1]:
        raise ValueError(f"feat_x [B, D] and feat_u [N, D] must share D; got {tuple(feat_x.shape)} and "
                         f"{tuple(feat_u.shape)}")
    b = feat_x.shape[0]
    if feat_u.shape[0] < b or y_x.shape != (b,):
        raise ValueError(f"need y_x of shape [{b}] and at least {b} pool features; got y_x {tuple(y_x.shape)}, "
                         f"feat_u {tuple(feat_u.shape)}")
    r = torch.rand(b, generator=generator)
    s = torch.rand(b, generator=generator)
    p = tfe_prob.detach().float().cpu()[y_x.long().cpu()]
    mixed = (r < p).to(feat_x.device)
    lam = torch.where(mixed, (lam_min + (1.0 - lam_min) * s).to(feat_x.device), torch.ones(b, device=feat_x.device))
    lam = lam.to(feat_x.dtype)
    blend = lam[:, None] * feat_x + (1.0 - lam[:, None]) * feat_u[:b]
    feat_new = torch.where(mixed[:, None], blend, feat_x)  # unmixed rows are exactly f_b
    return feat_new, y_x, mixed, lam


def fit_head_offline(head: nn.Linear, feat_lb: torch.Tensor, y_lb: torch.Tensor, feat_pool: torch.Tensor,
                     tfe_prob: torch.Tensor, lam_min: float, steps: int, batch_size: int, lr: float = 0.002,
                     weight_decay: float = 5e-4) -> list[float]:
    """Fit ``head`` on fixed features before co-learning starts (the paper's ``tfe_init``, simplified): ``steps``
    Adam steps (lr 0.002, weight decay 5e-4 on the weight, as the official code) of cross-entropy on class-balanced
    batches of labeled features, enhanced by :func:`tfe_features` with partners drawn from ``feat_pool``.

    The official initialisation builds an offline TFE set instead (exactly N_max - N_c new features per class, lam
    ~ Beta(0.75, 0.75), partners ranked by an imprinted classifier) and trains 10 epochs of 500 iterations; here
    the online TFE rule of the co-learning phase is reused (each step's batch is drawn independently, as in the
    online rule). Returns the loss of each step."""
    feat_lb, feat_pool = feat_lb.detach(), feat_pool.detach()
    wd = [head.weight]
    no_wd = [head.bias] if head.bias is not None else []
    opt = torch.optim.Adam([{"params": wd, "weight_decay": weight_decay}, {"params": no_wd, "weight_decay": 0.0}],
                           lr=lr)
    losses = []
    chunk = 100  # the batches of 100 steps are drawn and mixed at once (the loop is then a few small operations)
    for start in range(0, int(steps), chunk):
        n = min(chunk, int(steps) - start) * batch_size
        i = class_balanced_indices(y_lb, n)
        j = torch.randint(len(feat_pool), (n,), device=feat_pool.device)
        f_all, y_all, _, _ = tfe_features(feat_lb[i], y_lb[i], feat_pool[j], tfe_prob, lam_min)
        for f, y in zip(f_all.split(batch_size), y_all.split(batch_size)):
            loss = F.cross_entropy(head(f), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
    return torch.stack(losses).tolist() if losses else []


class CoSSLNet(nn.Module):
    """The test-time model: ``encoder`` (returns ``(logits, features)``) followed by the balanced ``head``.
    ``use_head=False`` (before co-learning starts) returns the encoder's own logits, so the run's accuracy curve
    shows FixMatch first, then CoSSL. Returns ``(logits [N, C], features [N, D])``. Built in eval mode, like the EMA
    modules it wraps (so that ``predict`` puts them back in eval mode, not in training mode, after a prediction)."""

    def __init__(self, encoder: nn.Module, head: nn.Module, use_head: bool = True):
        super().__init__()
        self.encoder, self.head, self.use_head = encoder, head, bool(use_head)
        self.eval()

    def forward(self, x):
        logits, h = self.encoder(x)
        return (self.head(h.float()) if self.use_head else logits), h


# ------------------------------------------------------------------------------------------ the method
@dataclass
class CoSSLConfig(MethodConfig):
    tau: float = param(0.95, "confidence threshold tau for keeping a pseudo-label", 0.0, 1.0, 0.01)
    lambda_u: float = param(1.0, "weight lambda_u of the unlabeled loss", 0.0, 10.0, 0.1)
    mu: int = param(7, "unlabeled images per labeled image in a batch (CoSSL's code: 1, with two strong views)",
                    1, 16, 1, paper=1)
    warmup: float = param(0.5, "fraction of the steps trained as plain FixMatch before co-learning starts",
                          0.0, 1.0, 0.05, paper=0.8)
    lam_min: float = param(0.6, "TFE mixes with lam ~ U(lam_min, 1) (official --max_lam: 0.6 in the scripts, "
                                "0.8 by default)", 0.0, 1.0, 0.05)
    tfe: bool = param(True, "Tail-class Feature Enhancement (False: the head sees class-balanced features, "
                            "unmixed: classifier re-training, cRT)")
    co_learning: bool = param(True, "pseudo-labels from the balanced head (False: from the encoder's own head, "
                                    "as in FixMatch; the head only classifies at test time)")
    teacher_decay: float = param(0.99, "EMA decay of the momentum encoder and of the balanced head", 0.0, 1.0,
                                 0.001, paper=0.999)
    head_view: str = param("strong", "augmentation of the images whose features train the balanced head",
                           choices=("strong", "weak", "none"))
    head_init_steps: int = param(1000, "steps fitting the balanced head on fixed TFE features when co-learning "
                                      "starts", 0, 5000, 50, paper=5000)


class CoSSL(Method):
    """Phase 1 (``ctx.step < warmup * total_steps``): FixMatch, ``l_s + lambda_u l_u``, computed exactly as
    :class:`~sslteach.methods.fixmatch.FixMatch` does.

    Phase 2 (co-learning), each step:

    1. one forward pass of the encoder over [weak labeled, weak unlabeled, strong unlabeled] (as in FixMatch);
    2. pseudo-labels: softmax(head(g'(weak unlabeled))), where g' is the EMA encoder (eval mode, no gradient) and
       head the balanced head, thresholded at tau; they train the encoder's strong-view logits (FixMatch's l_u);
    3. a class-balanced labeled batch (:func:`class_balanced_indices`) and a batch from the labeled + unlabeled
       pool, both in the ``head_view`` view (strong, as the official code), go through g' without gradient;
       :func:`tfe_features` mixes them;
       ``l_head = CE(head(f'), y)`` trains the head only;
    4. total = l_s + lambda_u l_u + l_head (the encoder gets no gradient from l_head: the features are constants).

    After each step the EMA encoder and the EMA head are updated; the test-time model is
    :class:`CoSSLNet` (EMA encoder + EMA head), ``report = "cossl"``.

    Ablations: ``tfe=False`` trains the head on plain class-balanced features (classifier re-training, cRT);
    ``co_learning=False`` keeps FixMatch's own pseudo-labels, so the encoder trains exactly as FixMatch and only the
    test-time classifier changes. ``tfe=False, co_learning=False`` is "FixMatch + cRT".

    Simplified from the official code (each said in notebook 08): one SGD optimizer with the loop's cosine schedule
    for encoder and head (official: Adam, lr 0.002, constant); one strong view per unlabeled image and mu = 7
    (official: mu = 1, two strong views); the head's initialisation (:func:`fit_head_offline`); the unlabeled set
    does not repeat the labeled images (the official one does). ``head_view="weak"`` is not in the paper: at a scale
    where the encoder is still weak when co-learning starts, a head trained on strong views stays unconfident
    (measured in ``tests/test_cossl.py``).
    """

    name = "cossl"
    title = "CoSSL"
    summary = "FixMatch encoder + class-balanced head with tail-class feature enhancement, co-learned (Fan et al. 2022)"
    paper = "Fan et al., CoSSL, CVPR 2022"
    year = 2022
    family = "long-tailed data"
    notebook = "08_cossl"
    designed_for = "long_tailed"
    builds_on = "fixmatch"
    diagnostics = ("loss_head", "pl_tail_share", "tfe_rate", "head_batch_acc")
    state = ("head", "ema_encoder", "ema_head", "started", "tfe_prob")
    cpu_ms_per_step = 27.2
    Config = CoSSLConfig
    report = "cossl"

    def __init__(self, config: CoSSLConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.head: nn.Linear | None = None
        self.ema_encoder: EMA | None = None
        self.ema_head: EMA | None = None
        self.started = torch.tensor(False)  # has co-learning begun? (a tensor: saved with the run)
        self.tfe_prob = torch.zeros(0)
        self._data: dict = {}  # the labeled images and the pool (the split's images: not state)

    # ---- setup
    def setup(self, model, split, ctx):
        dev = ctx.device
        # the head's random initialisation must not consume the global random stream: phase 1 then repeats a
        # FixMatch run with the same seed draw for draw
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(12345)
            self.head = nn.Linear(model.feature_dim, ctx.num_classes).to(dev)
        self.ema_encoder = EMA(model, self.config.teacher_decay)
        self.ema_head = EMA(self.head, self.config.teacher_decay)
        y_lb = split.y_lb.to(dev).long()
        counts = torch.bincount(y_lb.cpu(), minlength=ctx.num_classes)
        present = counts[counts > 0]
        self.tfe_prob = torch.zeros(ctx.num_classes)
        self.tfe_prob[counts > 0] = tfe_probabilities(present)
        self.tfe_prob = self.tfe_prob.to(dev)
        tails = split.info.get("tail_classes") or tail_classes(counts.tolist())
        self._data = {"x_lb": split.x_lb.to(dev), "y_lb": y_lb,
                      "x_pool": torch.cat([split.x_lb.to(dev), split.x_ulb.to(dev)]),
                      "tail": torch.tensor(sorted(tails), device=dev, dtype=torch.long)}
        self.started = torch.tensor(False)

    def extra_parameters(self):
        return list(self.head.parameters()) if self.head is not None else []

    def switch_step(self, total_steps: int) -> int:
        """The first co-learning step: ``round(warmup * total_steps)``."""
        return round(self.config.warmup * total_steps)

    # ---- the pieces of a co-learning step
    @torch.no_grad()
    def momentum_features(self, x: torch.Tensor) -> torch.Tensor:
        """Features of the EMA encoder (eval mode: BatchNorm running statistics, as the official code), no
        gradient. ``x`` ``[N, ...]`` already augmented; returns ``[N, D]`` float32."""
        enc = self.ema_encoder.module
        enc.eval()
        # in chunks: the whole pool at once would hold every image's activation maps
        return torch.cat([enc(chunk)[1].float() for chunk in x.split(eval_batch_size(x.device))])

    def balanced_batch(self, n: int, aug):
        """A class-balanced labeled batch and a pool batch (labeled + unlabeled), both in the ``head_view`` view
        (strong, as in the official code). Returns ``(x_bal [n, ...], y_bal [n], x_pool [n, ...])``."""
        d = self._data
        i = class_balanced_indices(d["y_lb"], n)
        j = torch.randint(len(d["x_pool"]), (n,), device=d["x_pool"].device)
        view = {"strong": aug.strong, "weak": aug.weak, "none": lambda x: x}[self.config.head_view]
        return view(to_float(d["x_lb"][i])), d["y_lb"][i], view(to_float(d["x_pool"][j]))

    @torch.no_grad()
    def begin_co_learning(self, ctx) -> list[float]:
        """Called at the first co-learning step: fit the head on fixed EMA features of the (unaugmented) labeled
        images and pool (:func:`fit_head_offline`), then restart its EMA from the fitted weights."""
        d = self._data
        cfg = self.config
        f_lb = self.momentum_features(to_float(d["x_lb"]))
        f_pool = self.momentum_features(to_float(d["x_pool"]))
        with torch.enable_grad():
            losses = fit_head_offline(self.head, f_lb, d["y_lb"], f_pool,
                                      self.tfe_prob if cfg.tfe else torch.zeros_like(self.tfe_prob), cfg.lam_min,
                                      cfg.head_init_steps, max(1, min(64, len(d["y_lb"]))))
        ctx.broadcast(self.head)  # several processes: every rank continues from rank 0's fitted head
        self.ema_head = EMA(self.head, cfg.teacher_decay)
        self.started = torch.tensor(True)
        return losses

    def step(self, model, batch, ctx):
        cfg = self.config
        if self.ema_encoder is None:
            raise RuntimeError("CoSSL.setup() must run before step() (the Trainer does this)")
        co = ctx.step >= self.switch_step(ctx.total_steps)
        if co and not bool(self.started):
            with ctx.lump("co-learning start"):  # features of every labeled and unlabeled image, once
                self.begin_co_learning(ctx)
        # 1. the encoder's forward pass, as FixMatch
        x_lb_w = ctx.aug.weak(batch.x_lb)
        x_ulb_w = ctx.aug.weak(batch.x_ulb)
        x_ulb_s = ctx.aug.strong(batch.x_ulb)
        logits, _ = model(torch.cat([x_lb_w, x_ulb_w, x_ulb_s]))
        n_lb, n_ulb = len(x_lb_w), len(x_ulb_w)
        logits_x_lb = logits[:n_lb]
        logits_x_ulb_w, logits_x_ulb_s = logits[n_lb:].split(n_ulb)
        loss_x = supervised_loss(logits_x_lb, batch.y_lb)
        logs = {}
        if not co:  # phase 1: FixMatch
            loss_u, mask, pseudo = fixmatch_unlabeled_loss(logits_x_ulb_w, logits_x_ulb_s, cfg.tau)
            loss = loss_x + cfg.lambda_u * loss_u
        else:
            # 2. pseudo-labels from the balanced head on the momentum encoder's weak-view features
            if cfg.co_learning:
                with torch.no_grad():
                    pl_logits = self.head(self.momentum_features(x_ulb_w))
            else:
                pl_logits = logits_x_ulb_w
            loss_u, mask, pseudo = fixmatch_unlabeled_loss(pl_logits, logits_x_ulb_s, cfg.tau)
            # 3. the balanced head on TFE features (no gradient into any encoder)
            x_bal, y_bal, x_pool = self.balanced_batch(n_lb, ctx.aug)
            f_x = self.momentum_features(x_bal)
            f_u = self.momentum_features(x_pool)
            prob = self.tfe_prob if cfg.tfe else torch.zeros_like(self.tfe_prob)
            f_new, y_new, mixed, _ = tfe_features(f_x, y_bal, f_u, prob, cfg.lam_min)
            logits_head = self.head(f_new)
            loss_head = F.cross_entropy(logits_head.float(), y_new)
            # 4. total
            loss = loss_x + cfg.lambda_u * loss_u + loss_head
            logs = {"loss_head": loss_head.detach(), "tfe_rate": mixed.float().mean(),
                    "head_batch_acc": (logits_head.detach().argmax(1) == y_new).float().mean()}
        passed = mask > 0
        tail_share = (torch.isin(pseudo[passed], self._data["tail"]).float().mean() if passed.any()
                      else torch.tensor(float("nan")))
        return loss, {"loss_x": loss_x.detach(), "loss_u": loss_u.detach(), "mask_rate": mask.mean(),
                      "pseudo_acc": pseudo_label_accuracy(pseudo, batch.y_ulb, mask),
                      "pl_tail_share": tail_share, **logs}

    def after_step(self, model, ctx):
        self.ema_encoder.update(model)
        if bool(self.started):
            self.ema_head.update(self.head)

    # ---- evaluation
    def test_model(self) -> CoSSLNet:
        """The paper's test-time model: EMA encoder + EMA balanced head (the encoder's own head before
        co-learning has started)."""
        return CoSSLNet(self.ema_encoder.module, self.ema_head.module, use_head=bool(self.started))

    def eval_models(self):
        if self.ema_encoder is None:
            return {}
        return {"cossl": self.test_model(), "encoder_head": self.ema_encoder.module}

    def extra_results(self):
        return {"co_learning_started": bool(self.started)}
