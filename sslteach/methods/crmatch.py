"""CR-Match's feature distance loss — Fan, Kukleva & Schiele, "Revisiting Consistency Regularization for
Semi-Supervised Learning", GCPR 2021 (extended in IJCV 2023), arXiv:2112.05825.

FixMatch makes the *class prediction* of a strongly augmented image agree with the confident prediction of its weak
view. Should the *features* of the two views agree as well? CR-Match adds a feature distance loss (FeatDistLoss)
between the projected features of the two views of each confident unlabeled image. Pulling them together is
*invariance*; CR-Match instead pushes them apart (*equivariance* at the feature level) while the classifier still
has to predict the same class (invariance at the classifier level).

The exact form follows the reference implementation we could read (the CR-Match port in Microsoft's USB,
``semilearn/algorithms/crmatch``; the authors' own repository is not in our search index): a linear projection of
the flattened feature map *before* global pooling, ``cosine_embedding_loss(h_s, h_w, target=-1)`` = ``max(0, cos)``
per image, multiplied by the FixMatch confidence mask, averaged over the whole unlabeled batch, weight 1, gradient
into both views. The full CR-Match also trains a rotation-prediction head on unlabeled images (weight 1); we leave
it out to isolate the feature-level question (and to keep a run under a minute on a CPU).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import to_float
from ..utils import check_choice
from .base import Method, param, pseudo_label_accuracy, supervised_loss
from .fixmatch import FixMatchCoreConfig, fixmatch_unlabeled_loss

FEAT_MODES = ("off", "invariance", "equivariance")
FEAT_SOURCES = ("map", "pooled")


def feature_distance_loss(h_w: torch.Tensor, h_s: torch.Tensor, mask: torch.Tensor, mode: str = "equivariance"):
    """CR-Match's FeatDistLoss on the projected features of the weak and strong views (Fan et al. 2021):

        cos_b = <h_w_b, h_s_b> / (||h_w_b|| ||h_s_b||)
        invariance:    l_b = 1 - cos_b           (pull the two views together; 0 when parallel)
        equivariance:  l_b = max(0, cos_b)       (push them apart until orthogonal; CR-Match)
        off:           l_b = 0                   (plain FixMatch)
        L_dist = 1 / (mu B) * sum_b mask_b * l_b

    ``mask`` is FixMatch's confidence mask (1[max q_b >= tau]), so only confident images take part, and the mean
    runs over the whole unlabeled batch as in FixMatch's l_u. No stop-gradient: both views receive gradient (as in
    the reference implementation). The clamp at 0 means equivariance asks for *different* (orthogonal) features,
    never for *opposite* ones.

    Args: ``h_w``, ``h_s``: ``[mu*B, D]`` projected features; ``mask``: ``[mu*B]`` of 0/1; ``mode``: one of
    :data:`FEAT_MODES`.
    Returns: ``(loss, cos [mu*B])`` — ``cos`` is detached, a diagnostic.
    """
    check_choice("feat_mode", mode, FEAT_MODES)
    if h_w.shape != h_s.shape or h_w.ndim != 2:
        raise ValueError(f"h_w and h_s must both be [N, D] with the same shape; got {tuple(h_w.shape)} and "
                         f"{tuple(h_s.shape)}")
    if mask.shape != h_w.shape[:1]:
        raise ValueError(f"mask must have shape [{h_w.shape[0]}]; got {tuple(mask.shape)}")
    cos = F.cosine_similarity(h_w.float(), h_s.float(), dim=1, eps=1e-8)
    if mode == "invariance":
        per_image = 1.0 - cos
    elif mode == "equivariance":
        per_image = cos.clamp(min=0.0)
    else:
        per_image = torch.zeros_like(cos)
    return (per_image * mask).mean(), cos.detach()


def effective_dimension(features: torch.Tensor) -> float:
    """How many directions a cloud of features really spreads over: the participation ratio of the eigenvalues
    lambda_i of its covariance, (sum_i lambda_i)^2 / sum_i lambda_i^2. Equals k for variance spread evenly over k
    orthogonal directions, 1 for points on a line. A diagnostic for "space coverage", not from the paper.

    Args: ``features``: ``[N, D]`` with N >= 2.
    """
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features must be [N, D] with N >= 2; got {tuple(features.shape)}")
    x = features.detach().double()
    x = x - x.mean(0, keepdim=True)
    eig = torch.linalg.eigvalsh(x.T @ x / (len(x) - 1)).clamp(min=0)
    total = eig.sum()
    return float(total ** 2 / (eig ** 2).sum()) if total > 0 else 0.0


@contextlib.contextmanager
def tap_output(module: nn.Module | None):
    """Inside the ``with`` block, ``store["out"]`` holds the last output of ``module`` (a forward hook, removed on
    exit). ``module=None``: nothing is recorded."""
    store: dict = {}
    if module is None:
        yield store
        return

    def hook(_m, _inp, out):
        store["out"] = out

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


@dataclass
class CRMatchConfig(FixMatchCoreConfig):
    feat_mode: str = param("equivariance", "FeatDistLoss on confident unlabeled images: 'equivariance' pushes the "
                           "weak/strong features apart (CR-Match), 'invariance' pulls them together, 'off' = FixMatch",
                           choices=FEAT_MODES)
    lambda_feat: float = param(1.0, "weight of the feature distance loss", 0.0, 10.0, 0.1)
    feat_source: str = param("map", "features the projection head reads: 'map' = the feature map before global "
                             "pooling, flattened (reference code), 'pooled' = the pooled features the classifier "
                             "sees", choices=FEAT_SOURCES)


class CRMatch(Method):
    """total = l_s + lambda_u * l_u + lambda_feat * L_dist: FixMatch, one forward pass over [weak labeled, weak
    unlabeled, strong unlabeled], plus the feature distance between a linear projection of the two unlabeled views.

    The projection head lives outside the model (:meth:`extra_parameters`); it is created with a forked random
    stream, so ``feat_mode="off"`` reproduces ``fixmatch`` with the same seed exactly.
    """

    name = "crmatch"
    title = "CR-Match"
    summary = "FixMatch + feature distance loss: weak/strong features pushed apart (equivariance) or together"
    paper = "Fan, Kukleva & Schiele, Revisiting Consistency Regularization for SSL (CR-Match), GCPR 2021"
    year = 2021
    family = "pseudo-labels + consistency"
    notebook = "04_feature_consistency"
    builds_on = "fixmatch"
    diagnostics = ("loss_feat", "feat_cos")
    state = ("head",)
    cpu_ms_per_step = 23.1
    Config = CRMatchConfig

    def __init__(self, config: CRMatchConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.head: nn.Linear | None = None

    # ---- set-up
    def _tapped_module(self, model: nn.Module) -> nn.Module | None:
        """The module whose output is the feature map: ``model.body`` (the small CNN, the MLP); models without one
        (WRN-28-2 here) fall back to the pooled features."""
        if self.config.feat_source == "map":
            return getattr(model, "body", None)
        return None

    def setup(self, model, split, ctx):
        x0 = to_float(split.x_lb[:2]).to(ctx.device)
        was_training = model.training
        model.eval()
        with torch.no_grad(), tap_output(self._tapped_module(model)) as tap:
            _, feats = model(x0)
        model.train(was_training)
        source = tap.get("out", feats)
        in_dim, out_dim = source.flatten(1).shape[1], feats.shape[1]
        with torch.random.fork_rng(devices=[]):  # keep the global random stream (augmentations) untouched
            self.head = nn.Linear(in_dim, out_dim).to(ctx.device)

    def extra_parameters(self):
        return list(self.head.parameters()) if self.head is not None else []

    # ---- what the notebook looks at
    @torch.no_grad()
    def embed(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pooled features, projected features h)`` of images ``x`` (already augmented), model in eval mode."""
        was_training = model.training
        model.eval()
        with tap_output(self._tapped_module(model)) as tap:
            _, feats = model(to_float(x))
        model.train(was_training)
        h = self.head(tap.get("out", feats).flatten(1).float())
        return feats.float(), h

    # ---- training
    def step(self, model, batch, ctx):
        cfg = self.config
        if self.head is None:
            raise RuntimeError("CRMatch.setup() must run before step() (the Trainer does this)")
        x_lb_w = ctx.aug.weak(batch.x_lb)
        x_ulb_w = ctx.aug.weak(batch.x_ulb)
        x_ulb_s = ctx.aug.strong(batch.x_ulb) if cfg.strong else ctx.aug.weak(batch.x_ulb)
        with tap_output(self._tapped_module(model)) as tap:
            logits, feats = model(torch.cat([x_lb_w, x_ulb_w, x_ulb_s]))
        n_lb, n_ulb = len(x_lb_w), len(x_ulb_w)
        logits_x_lb = logits[:n_lb]
        logits_x_ulb_w, logits_x_ulb_s = logits[n_lb:].split(n_ulb)
        loss_x = supervised_loss(logits_x_lb, batch.y_lb)
        loss_u, mask, pseudo = fixmatch_unlabeled_loss(logits_x_ulb_w, logits_x_ulb_s, cfg.tau)

        source = tap.get("out", feats)[n_lb:].flatten(1)
        use_feat = cfg.feat_mode != "off" and cfg.lambda_feat > 0
        with contextlib.nullcontext() if use_feat else torch.no_grad():
            h_w, h_s = self.head(source).split(n_ulb)
            loss_feat, cos = feature_distance_loss(h_w, h_s, mask, cfg.feat_mode)
        loss = loss_x + cfg.lambda_u * loss_u
        if use_feat:
            loss = loss + cfg.lambda_feat * loss_feat
        return loss, {"loss_x": loss_x.detach(), "loss_u": loss_u.detach(), "loss_feat": loss_feat.detach(),
                      "feat_cos": cos.mean(), "mask_rate": mask.mean(),
                      "pseudo_acc": pseudo_label_accuracy(pseudo, batch.y_ulb, mask)}
