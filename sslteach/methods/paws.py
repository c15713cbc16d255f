"""PAWS — Assran, Caron, Misra, Bojanowski, Joulin, Ballas & Rabbat, "Semi-Supervised Learning of Visual Features by
Non-Parametrically Predicting View Assignments with Support Samples", ICCV 2021, arXiv:2104.13963 (official code:
facebookresearch/suncet).

PAWS has no classifier layer during training. A view's class prediction is *non-parametric*: a soft nearest-neighbour
vote of a class-balanced **support** batch of labeled images, weighted by the cosine similarity of their embeddings.
Two views of each unlabeled image are made; each view's prediction is trained to match the **sharpened** prediction of
the *other* view (no gradient through the target), and a **mean-entropy maximisation** (ME-MAX) term keeps the batch's
average prediction spread over the classes. As in the official code (CIFAR-10 configuration):

* embeddings z come from a projection head fc-BN-ReLU-fc-BN-ReLU-fc on the network's features (no prediction head);
* similarity temperature 0.1, sharpening temperature T = 0.25, support labels smoothed by 0.1, target entries below
  1e-4 set to zero, ME-MAX with weight 1 on the mean *sharpened* prediction of the anchor views, with gradient;
* support and unlabeled views go through the network in one batch; the support embeddings get gradients through the
  anchors' predictions (the targets use detached copies);
* multi-crop: extra views of each unlabeled image only *predict*; their target is the mean of the two large views'
  targets (the paper: 6 small crops).

Simplified here (CPU scale): 2 extra views instead of 6, made with the collection's strong augmentation (RandAugment +
Cutout) instead of small crops, and two *weak* views (a shift) instead of large crops with colour jitter — on 8x8
digits, two strong views made every prediction flat, and no extra views made the result swing between labeled sets
(notebook 05, section 5c); SGD with the collection's schedule instead of LARS; evaluation by soft nearest neighbours
on the pre-trained embeddings (no SuNCEt fine-tuning stage). The network's own linear classifier is trained as a
*probe* on detached features of the support images: it never changes the encoder, so PAWS stays PAWS, and
``test_acc`` / ``test_acc_ema`` become a linear-probe accuracy to compare with the soft-NN one (``test_acc_snn``, the
headline).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import to_float
from ..evaluation import eval_batch_size
from .base import Method, MethodConfig, param

#: target entries below this are set to exactly zero (official code: "numerical stability")
TARGET_FLOOR = 1e-4


# ----------------------------------------------------------------------------------------------- pure functions
def _check_temperature(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number; got {value}")


def snn_probs(z: torch.Tensor, z_support: torch.Tensor, labels_support: torch.Tensor,
              temperature: float = 0.1) -> torch.Tensor:
    """The soft nearest-neighbour classifier of PAWS (paper Sec. 3; ``snn`` in the official ``src/losses.py``):

        p_i = sum_j softmax_j( cos(z_i, z_s_j) / tau ) * y_s_j

    a similarity-weighted vote of the support labels. The embeddings are L2-normalised here, so the dot product is
    the cosine. Gradients flow into both ``z`` and ``z_support`` (detach them yourself for a target).

    Args: ``z``: ``[N, D]`` query embeddings; ``z_support``: ``[K, D]``; ``labels_support``: ``[K, C]`` (one-hot or
    smoothed label rows, each summing to 1); ``temperature`` tau > 0.
    Returns: ``[N, C]`` class probabilities (rows sum to 1).
    """
    _check_temperature("sim_temperature", temperature)
    if z.ndim != 2 or z_support.ndim != 2 or z.shape[1] != z_support.shape[1]:
        raise ValueError(f"z [N, D] and z_support [K, D] must share D; got {tuple(z.shape)} and "
                         f"{tuple(z_support.shape)}")
    if labels_support.shape[0] != z_support.shape[0]:
        raise ValueError(f"labels_support must have one row per support embedding ({z_support.shape[0]}); got "
                         f"{tuple(labels_support.shape)}")
    sim = F.normalize(z.float(), dim=1) @ F.normalize(z_support.float(), dim=1).T  # [N, K] cosines
    return torch.softmax(sim / temperature, dim=1) @ labels_support.float()


def sharpen(p: torch.Tensor, T: float) -> torch.Tensor:
    """Sharpening (``sharpen`` in the official ``src/losses.py``): rho(p)_c = p_c^(1/T) / sum_k p_k^(1/T).

    T = 1 leaves p unchanged; T -> 0 tends to one-hot; a flat p stays flat. Differentiable (the loss uses it with
    gradient inside ME-MAX). ``p``: ``[N, C]``."""
    _check_temperature("sharpen_temperature", T)
    sharp = p ** (1.0 / T)
    return sharp / sharp.sum(dim=1, keepdim=True)


def smoothed_labels(y: torch.Tensor, num_classes: int, smoothing: float = 0.1) -> torch.Tensor:
    """One-hot rows with label smoothing, as the official ``make_labels_matrix``: the true class gets
    ``1 - smoothing + smoothing / C``, every other class ``smoothing / C``. ``y``: ``[K]`` -> ``[K, C]``."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1); got {smoothing}")
    off = smoothing / num_classes
    out = torch.full((len(y), num_classes), off, device=y.device)
    out[torch.arange(len(y), device=y.device), y.long()] = 1.0 - smoothing + off
    return out


def swap_views(x: torch.Tensor) -> torch.Tensor:
    """``[view 1; view 2]`` -> ``[view 2; view 1]`` (rows of the two views of the same images swapped), so that row i
    of the result is the *other* view of the image in row i."""
    if len(x) % 2:
        raise ValueError(f"expected the two views stacked, an even number of rows; got {len(x)}")
    a, b = x.chunk(2)
    return torch.cat([b, a])


def paws_loss(z_views: torch.Tensor, z_support: torch.Tensor, labels_support: torch.Tensor,
              temperature: float = 0.1, T: float = 0.25, multicrop: int = 0):
    """The PAWS objective without its weights (official ``init_paws_loss`` in ``src/losses.py``).

    ``z_views`` stacks the views of N unlabeled images, view by view: the two large views ``[z^(1); z^(2)]`` first,
    then ``multicrop`` extra (small) views. With p = :func:`snn_probs`:

        anchors:  p_i   = snn(z_i, z_S)                                    (every view, with gradient)
        targets:  rho_i = sharpen(snn(stopgrad z_other(i), stopgrad z_S), T)   for the two large views, each
                          targeted by the *other* large view of its image;
                  rho   = (rho^(1) + rho^(2)) / 2 for every extra view;   entries < 1e-4 then set to 0
        CE        = mean_i sum_c -rho_ic log p_ic
        ME-MAX    = sum_c pbar_c log pbar_c = -H(pbar),  pbar = mean_i sharpen(p_i, T)   (with gradient)

    The total loss is ``CE + me_max_weight * ME-MAX``. ME-MAX is minimal (-log C) when the mean sharpened prediction
    is uniform over the C classes, so a negative total is normal (official issue #13).

    Args: ``z_views``: ``[(2 + multicrop) N, D]``; ``z_support``: ``[K, D]``; ``labels_support``: ``[K, C]``
    (smoothed); ``temperature``: similarity temperature tau; ``T``: sharpening temperature; ``multicrop``: number
    of extra views after the two large ones.
    Returns: ``(ce, me_max, probs [(2 + M) N, C], targets [(2 + M) N, C])`` — probs with gradient, targets constant.
    """
    n_views = 2 + multicrop
    if multicrop < 0 or len(z_views) % n_views:
        raise ValueError(f"z_views must hold {n_views} views of each image (2 large + multicrop={multicrop}); got "
                         f"{len(z_views)} rows")
    n = len(z_views) // n_views
    probs = snn_probs(z_views, z_support, labels_support, temperature)
    with torch.no_grad():
        large = z_views[: 2 * n].detach()
        targets = sharpen(snn_probs(swap_views(large), z_support.detach(), labels_support, temperature), T)
        if multicrop:
            mean_target = 0.5 * (targets[:n] + targets[n:])
            targets = torch.cat([targets] + [mean_target] * multicrop)
        targets[targets < TARGET_FLOOR] = 0.0
    ce = -(targets * torch.log(probs.clamp_min(1e-30))).sum(dim=1).mean()
    avg = sharpen(probs, T).mean(dim=0)
    me_max = (avg * torch.log(avg.clamp_min(1e-30))).sum()
    return ce, me_max, probs, targets


def entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of each row of ``p`` (``[..., C]`` -> ``[...]``); 0 log 0 = 0."""
    return -(p * torch.log(p.clamp_min(1e-30))).sum(dim=-1)


def embedding_spread(z: torch.Tensor) -> torch.Tensor:
    """How spread out a batch of embeddings is: sqrt(D) x the mean over dimensions of the per-dimension standard
    deviation of the L2-normalised embeddings (``[N, D]`` -> scalar). 0 when every embedding is the same point
    (collapse); at most 1, reached only when the embeddings are spread evenly over all D directions."""
    u = F.normalize(z.detach().float(), dim=1)
    return u.std(dim=0, unbiased=False).mean() * math.sqrt(u.shape[1])


# ----------------------------------------------------------------------------------------------- modules
def random_resized_crop(x: torch.Tensor, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """A random crop of each image (area a fraction ``scale`` of the image, aspect ratio in ``ratio``) resized back
    to the full size (bilinear), as torchvision's ``RandomResizedCrop`` that the official PAWS code uses for its
    large views; batched, one draw per image. ``x``: ``[B, C, H, W]`` in [0, 1]."""
    b, dev = len(x), x.device
    area = torch.empty(b, device=dev).uniform_(*scale)
    log_r = torch.empty(b, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).clamp(max=1.0)  # crop width and height as fractions of the side
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (torch.rand(b, device=dev) * 2 - 1) * (1 - w)  # crop centre in [-1, 1] coordinates, crop inside
    cy = (torch.rand(b, device=dev) * 2 - 1) * (1 - h)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = w, h, cx, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def projection_head(in_dim: int, out_dim: int, hidden: int | None = None) -> nn.Sequential:
    """PAWS's projection head (official ``init_model``): fc-BN-ReLU-fc-BN-ReLU-fc, hidden width = the feature width
    unless given."""
    h = hidden or in_dim
    return nn.Sequential(nn.Linear(in_dim, h), nn.BatchNorm1d(h), nn.ReLU(),
                         nn.Linear(h, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, out_dim))


class SoftNNClassifier(nn.Module):
    """The evaluation model of PAWS (official ``snn_eval.py``): the encoder + projection head give an embedding, and
    the class probabilities are a soft nearest-neighbour vote of *all* labeled images (unaugmented, one-hot labels,
    temperature tau). ``forward(x)`` returns ``(log p [N, C], z [N, D])`` like every model here, so accuracy is the
    argmax of p. The labeled embeddings are recomputed at each call (in the current train/eval mode)."""

    def __init__(self, encoder: nn.Module, head: nn.Module, x_labeled: torch.Tensor, y_labeled: torch.Tensor,
                 num_classes: int, temperature: float = 0.1):
        super().__init__()
        self.encoder, self.head = encoder, head
        self.register_buffer("x_labeled", x_labeled, persistent=False)
        self.register_buffer("labels", F.one_hot(y_labeled.long(), num_classes).float(), persistent=False)
        self.temperature = temperature

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        _, feats = self.encoder(to_float(x))
        return self.head(feats.float())

    def forward(self, x):
        z = self.embed(x)
        z_support = self.embed(self.x_labeled)
        p = snn_probs(z, z_support, self.labels, self.temperature)
        return torch.log(p.clamp_min(1e-12)), F.normalize(z.float(), dim=1)


# ----------------------------------------------------------------------------------------------- the method
@dataclass
class PAWSConfig(MethodConfig):
    sim_temperature: float = param(0.1, "temperature tau of the cosine similarities to the support embeddings",
                                   0.01, 1.0, 0.01)
    sharpen_temperature: float = param(0.25, "sharpening temperature T of the targets (1: no sharpening)",
                                       0.05, 1.0, 0.05)
    me_max_weight: float = param(1.0, "weight of the ME-MAX term (0: no mean-entropy maximisation)", 0.0, 5.0, 0.1)
    support_per_class: int = param(2, "support images per class in each step (class-balanced; 2 views each)",
                                   1, 64, 1, paper=64)
    label_smoothing: float = param(0.1, "label smoothing of the support labels", 0.0, 0.9, 0.05)
    mu: int = param(2, "unlabeled images per labeled image in a batch (two views of each)", 1, 16, 1,
                    paper="256 unlabeled images per step")
    proj_dim: int = param(128, "dimension of the embedding z (output of the projection head)", 2, 1024, 2)
    multicrop: int = param(2, "extra views per unlabeled image that only predict (targets: mean of the two large "
                                "views' targets)", 0, 8, 1, paper=6)
    multicrop_aug: str = param("strong", "augmentation of the extra views (the paper: small crops)",
                               choices=("strong", "small_crop", "weak"))
    view_aug: str = param("weak", "augmentation of every view (unlabeled and support)",
                          choices=("weak", "crop", "strong"))


class PAWS(Method):
    """total = CE(view i -> sharpened other view) + me_max_weight * ME-MAX (:func:`paws_loss`), plus a linear probe
    on detached features that never reaches the encoder. One forward pass over [support views | unlabeled views]."""

    name = "paws"
    title = "PAWS"
    summary = "soft nearest-neighbour pseudo-labels from a labeled support batch, sharpened, with ME-MAX (Assran 2021)"
    paper = "Assran et al., PAWS, ICCV 2021"
    year = 2021
    family = "similarity to labeled images"
    notebook = "05_paws"
    diagnostics = ("me_max", "ent_mean_pred", "ent_pred", "emb_spread", "loss_probe")
    state = ("head", "support_labels", "x_labeled", "y_labeled")
    cpu_ms_per_step = 22.3
    Config = PAWSConfig
    report = "snn"
    SUPPORT_VIEWS = 2  # official CIFAR-10 configuration: two views of each support image

    def __init__(self, config: PAWSConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.head: nn.Module | None = None
        self.x_labeled: torch.Tensor | None = None
        self.y_labeled: torch.Tensor | None = None
        self.support_labels: torch.Tensor | None = None
        self._class_index: list[torch.Tensor] = []
        self._encoder: list[nn.Module] = []  # a list, so the run cache does not store the model twice
        self.num_classes = 0

    def setup(self, model, split, ctx):
        cfg = self.config
        d = getattr(model, "feature_dim", None)
        if d is None:
            raise ValueError("PAWS needs a model with a feature_dim attribute (the width of its features)")
        self.head = projection_head(d, cfg.proj_dim).to(ctx.device)
        self._encoder = [model]
        self.num_classes = split.num_classes
        self.x_labeled = to_float(split.x_lb).to(ctx.device)
        self.y_labeled = split.y_lb.to(ctx.device).long()
        self._class_index = [torch.nonzero(self.y_labeled == c).flatten() for c in range(self.num_classes)]
        empty = [c for c, idx in enumerate(self._class_index) if len(idx) == 0]
        if empty:
            raise ValueError(f"PAWS needs a class-balanced support batch, but classes {empty} have no labeled image")
        # one constant label matrix for every step: view-major, then [class 0, class 1, ..., class C-1] repeated
        order = torch.arange(self.num_classes, device=ctx.device).repeat(cfg.support_per_class * self.SUPPORT_VIEWS)
        self.support_labels = smoothed_labels(order, self.num_classes, cfg.label_smoothing)

    def extra_parameters(self):
        return list(self.head.parameters()) if self.head is not None else []

    def sample_support(self) -> torch.Tensor:
        """Positions in the labeled set of one class-balanced support batch, ``[support_per_class * C]``, laid out as
        ``[a, b, c, ..., a, b, c, ...]`` (one image of each class, in class order, repeated). Within a class the images
        are drawn without replacement; a class with fewer labeled images than ``support_per_class`` gives all of them
        and then repeats random ones."""
        k = self.config.support_per_class
        cols = []
        for idx in self._class_index:
            if len(idx) >= k:
                pick = idx[torch.randperm(len(idx), device=idx.device)[:k]]
            else:
                extra = idx[torch.randint(len(idx), (k - len(idx),), device=idx.device)]
                pick = torch.cat([idx[torch.randperm(len(idx), device=idx.device)], extra])
            cols.append(pick)
        return torch.stack(cols, dim=1).flatten()  # [k, C] row-major -> a, b, c, ..., a, b, c, ...

    @staticmethod
    def augmentation(kind: str, ctx):
        """The view maker for ``kind``: ``"weak"`` / ``"strong"`` are the collection's views (a shift; RandAugment +
        Cutout); ``"crop"`` is a random resized crop of 75-100 % of the area (the official large views when multi-crop
        is on), ``"small_crop"`` one of 30-75 % (the official small crops' scale), resized back to the full size."""
        if kind == "weak":
            return ctx.aug.weak
        if kind == "strong":
            return ctx.aug.strong
        if kind in ("crop", "small_crop") and ctx.aug.kind != "image":
            raise ValueError(f"view augmentation {kind!r} needs images; for 2-D points use 'weak' or 'strong'")
        if kind == "crop":
            return lambda x: random_resized_crop(x, scale=(0.75, 1.0))
        if kind == "small_crop":
            return lambda x: random_resized_crop(x, scale=(0.3, 0.75))
        raise ValueError(f"unknown augmentation {kind!r}; valid values: weak, strong, crop, small_crop")

    def embed(self, model, x):
        """z = head(features) for a batch of images (no normalisation here: :func:`snn_probs` normalises)."""
        _, feats = model(x)
        return self.head(feats.float()), feats

    def step(self, model, batch, ctx):
        cfg = self.config
        if self.head is None:
            raise RuntimeError("PAWS.setup() must run before step() (the Trainer does this)")
        aug, small = self.augmentation(cfg.view_aug, ctx), self.augmentation(cfg.multicrop_aug, ctx)
        idx_s = self.sample_support()
        x_s = self.x_labeled[idx_s]
        x_s_views = torch.cat([aug(x_s) for _ in range(self.SUPPORT_VIEWS)])
        x_u = batch.x_ulb
        # [view 1 of every image; view 2 in the same order; extra views ...]
        x_u_views = torch.cat([aug(x_u), aug(x_u)] + [small(x_u) for _ in range(cfg.multicrop)])
        n_s = len(x_s_views)
        z, feats = self.embed(model, torch.cat([x_s_views, x_u_views]))
        z_support, z_views = z[:n_s], z[n_s:]
        ce, me_max, probs, targets = paws_loss(z_views, z_support, self.support_labels, cfg.sim_temperature,
                                               cfg.sharpen_temperature, cfg.multicrop)
        loss = ce + cfg.me_max_weight * me_max
        # the linear probe: the model's own classifier on *detached* support features (never reaches the encoder)
        logs = {}
        head = getattr(model, "head", None)
        if isinstance(head, nn.Linear):
            y_s = self.y_labeled[idx_s].repeat(self.SUPPORT_VIEWS)
            loss_probe = F.cross_entropy(head(feats[:n_s].detach()).float(), y_s)
            loss = loss + loss_probe
            logs["loss_probe"] = loss_probe.detach()
        with torch.no_grad():
            logs.update({"loss_u": ce.detach(), "me_max": me_max.detach(),
                         "ent_mean_pred": entropy(probs.mean(dim=0)), "ent_pred": entropy(probs).mean(),
                         "emb_spread": embedding_spread(z_views)})
            if batch.y_ulb is not None:  # diagnostic: is the target's top class the hidden true label?
                y_u = batch.y_ulb.repeat(2 + cfg.multicrop)
                logs["pseudo_acc"] = (targets.argmax(dim=1) == y_u).float().mean()
        return loss, logs

    def eval_models(self):
        if self.head is None or not self._encoder:
            return {}
        return {"snn": SoftNNClassifier(self._encoder[0], self.head, self.x_labeled, self.y_labeled,
                                        self.num_classes, self.config.sim_temperature)}

    # ---- what the notebook looks at
    @torch.no_grad()
    def embeddings(self, model, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """L2-normalised embeddings z of unaugmented images ``x`` (eval mode; the mode is restored)."""
        was = (model.training, self.head.training)
        model.eval()
        self.head.eval()
        out = []
        dev = self.x_labeled.device
        batch_size = batch_size or eval_batch_size(dev)
        for i in range(0, len(x), batch_size):
            z, _ = self.embed(model, to_float(x[i: i + batch_size].to(dev)))
            out.append(F.normalize(z.float(), dim=1).cpu())
        model.train(was[0])
        self.head.train(was[1])
        return torch.cat(out) if out else torch.empty(0)
