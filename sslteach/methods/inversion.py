"""Semi-supervised learning by deep network inversion — Balestriero, Roger, Glotin & Baraniuk, "Semi-Supervised
Learning via New Deep Network Inversion", arXiv:1711.04313 (2017), and Balestriero, Glotin & Baraniuk,
"Semi-Supervised Learning Enabled by Multiscale Deep Neural Network Inversion", arXiv:1802.10172 (2018). No
official code is known.

**The template view.** A network built from affine layers (convolutions, linear layers, average pooling) and
piecewise-linear nonlinearities (ReLU, max pooling) is a continuous *piecewise affine* map: on the region of input
space that contains ``x``, its logits are ``z(x) = A[x] x + b[x]``. Row ``c`` of ``A[x]`` is the *template* of class
``c``: the logit is an inner product of the input with it, ``z_c(x) = <A[x]_c, x> + b[x]_c``, and it is exactly the
input gradient ``dz_c / dx``. The papers use this template as a *reconstruction* of the input — an "inverse" that any
such network has for free, without a decoder — and train the network so that the template of the predicted class
``c_hat = argmax_c z_c(x)`` looks like ``x``. The same holds inside the network: the logits are piecewise affine in
the representation ``h^(l)`` of every layer, with templates ``dz_c / dh^(l)``.

**The loss** (2018 form; the 2017 paper weights the same three terms with hand-set coefficients, whose exact form we
could not read — unverified: ``alpha CE + (1 - alpha) [beta R + (1 - beta) E]`` with the input term only)::

    L = beta_CE * CE(labeled) + beta_E * E(unlabeled) + sum_{l=0}^{L-1} beta_R^(l) * R^(l)(every image)
    beta_CE = 1,   beta_E = 1 / log C,   beta_R^(l) = 1 / (L * D^(l))

with ``E`` the mean entropy of the predictions on unlabeled images (at most ``log C``: ``beta_E`` scales it to
[0, 1]) and ``R^(l) = mean_images ||h^(l) - dz_c_hat / dh^(l)||^2`` the reconstruction error of layer ``l``'s input
``h^(l)`` (``h^(0) = x``), ``D^(l)`` its number of units per image. What each ``mode`` computes, exactly (with the
multipliers ``s_E = entropy_scale``, ``s_R = recon_scale``, 1 = the 2018 weights):

* ``"multiscale"`` (2018): ``CE + s_E / log C * E + sum_{l=0}^{L-1} s_R / (L D^(l)) * R^(l)``;
* ``"global"``: ``CE + s_E / log C * E + s_R / D^(0) * R^(0)`` — the input term alone, i.e. the per-pixel mean
  squared error between the image and its template. This is the 2018 paper's "global" arm (its weights with L = 1),
  *not* the 2017 loss: it shares the 2017 paper's single input-level reconstruction, but uses the 2018 weights
  (the 2017 coefficients alpha, beta could not be read). Note that its input term weighs L times more than the
  input term inside ``"multiscale"`` (1 / D^(0) against 1 / (L D^(0)));
* ``"entropy"``: ``CE + s_E / log C * E`` (no reconstruction);
* ``"supervised"``: ``CE`` alone (no unlabeled image is drawn).

The reconstruction is a gradient, so training on it differentiates a gradient: the templates are computed with
``torch.autograd.grad(..., create_graph=True)`` (*double back-propagation*); without ``create_graph`` they would be
constants and the reconstruction loss would give the weights no gradient at all.

Sources we could read: both abstracts, the 2017 introduction, Balestriero & Baraniuk, "A Spline Theory of Deep
Networks", ICML 2018 (the template view), and a public reading note of the 2018 paper (the weights above, global
against multiscale, the robustness claims). Choices where the text is silent or could not be checked (the notebook
says so too):

* **network**: the method builds its own (:class:`InversionCNN`): the small CNN's layout with plain ReLU and **no
  BatchNorm**. BatchNorm in training mode mixes the images of a batch, so an image's "template" would depend on the
  other images; in evaluation mode it would use running statistics that lag behind the weights. Without it the
  network is exactly piecewise affine per image, and ``A[x]`` is the template the papers describe.
* **layers** (``L``, ``D^(l)``): one layer per convolution stage (conv + ReLU, + max pooling where there is one) and
  the classifier (global average pooling + linear) as the last; ``h^(l)`` is the input of layer ``l``, so for 8x8
  digits the 5 reconstructions are of ``x`` (1x8x8), the two ``w``-channel maps (8x8 and, after pooling, 4x4) and the
  two ``2w``-channel 4x4 maps. ``D^(l)`` is counted per image (channels x height x width) and ``R^(l)`` is averaged
  over the images of the batch.
* **template**: of the predicted class (2017), for labeled and unlabeled images alike; ``template="sum"`` is the
  gradient of the sum of all logits (an all-ones upstream, as in a later public experiment of the first author).
* **targets**: no stop-gradient on either side of ``R^(l)`` (the representation ``h^(l)`` is trained towards its
  template and the template towards it); the images are the weakly augmented views the network saw
  (``augment=False``: the images as they are).
* **which images**: CE on the labeled images, E on the unlabeled ones, R on all of them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils import check_choice
from .base import Method, MethodConfig, param, supervised_loss

MODES = ("supervised", "entropy", "global", "multiscale")
TEMPLATES = ("predicted", "sum")
RECON_ON = ("all", "labeled")


# ------------------------------------------------------------------------------------------- networks
class InversionCNN(nn.Module):
    """The small CNN's layout with plain ReLU and no BatchNorm: piecewise affine in its input, image by image.

    Layers (8x8 images): ``conv(C->w)``, ``conv(w->w) + maxpool``, ``conv(w->2w)``, ``conv(2w->2w)``, then the
    classifier ``global average pooling + linear``. 28x28 / 32x32 images get one more ``conv, conv + maxpool`` stage
    (widths doubled), like :class:`~sslteach.models.SmallCNN`. :meth:`layer_inputs` returns the input of every layer
    (``h^(0) = x`` ... ``h^(L-1)``), the representations the multiscale loss reconstructs.
    ``forward(x)`` returns ``(logits [B, C], features [B, 2 * width])`` like every model here.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 8, width: int = 16,
                 dropout: float = 0.0):
        super().__init__()

        def conv(cin, cout, pool=False):
            mods = [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
            return nn.Sequential(*(mods + [nn.MaxPool2d(2)] if pool else mods))

        stages = [conv(in_channels, width), conv(width, width, pool=True)]
        w = width
        if image_size >= 28:
            stages += [conv(w, 2 * w), conv(2 * w, 2 * w, pool=True)]
            w *= 2
        stages += [conv(w, 2 * w), conv(2 * w, 2 * w)]
        self.stages = nn.ModuleList(stages)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * w, num_classes)
        self.feature_dim = 2 * w
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    @property
    def num_layers(self) -> int:
        """L: the convolution stages and the classifier."""
        return len(self.stages) + 1

    def layer_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Returns ``(logits, features, [h^(0) = x, h^(1), ..., h^(L-1)])``: the input of each of the L layers."""
        hs = [x]
        h = x
        for stage in self.stages:
            h = stage(h)
            hs.append(h)
        features = h.mean(dim=(2, 3))
        return self.head(self.dropout(features)), features, hs

    def forward(self, x):
        logits, features, _ = self.layer_inputs(x)
        return logits, features


class InversionMLP(nn.Module):
    """Two ReLU hidden layers for 2-D points (the toy of the notebook): ``Linear-ReLU, Linear-ReLU, Linear``.
    Layer inputs: ``h^(0) = x`` (its own shape, flattened by the first layer), ``h^(1)``, ``h^(2)`` [B, hidden];
    L = 3."""

    def __init__(self, in_dim: int = 2, num_classes: int = 2, hidden: int = 16, dropout: float = 0.0):
        super().__init__()
        self.stages = nn.ModuleList([nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU()),
                                     nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())])
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)
        self.feature_dim = hidden

    @property
    def num_layers(self) -> int:
        return len(self.stages) + 1

    def layer_inputs(self, x: torch.Tensor):
        hs = [x]
        h = x.flatten(1)
        for stage in self.stages:
            h = stage(h)
            hs.append(h)
        return self.head(self.dropout(h)), h, hs

    def forward(self, x):
        logits, features, _ = self.layer_inputs(x)
        return logits, features


# ------------------------------------------------------------------------------------------- templates
def templates(model: nn.Module, x: torch.Tensor, template: str = "predicted", create_graph: bool = True):
    """The network's templates (its "inverse") at the input of every layer, by back-propagation.

    For the predicted class ``c_hat_i = argmax_c z_c(x_i)`` of each image, ``g_i^(l) = dz_{c_hat_i}(x_i) / dh_i^(l)``
    — at ``l = 0`` this is row ``c_hat_i`` of ``A[x_i]``, the template the papers use as the reconstruction of
    ``x_i``. ``template="sum"``: ``g_i^(l) = d(sum_c z_c(x_i)) / dh_i^(l)`` (the sum of the rows). One backward pass
    of ``sum_i z_{i, c_hat_i}`` gives every image's template at once because no layer mixes images (no BatchNorm).

    ``create_graph=True`` keeps the graph of the backward pass so a loss on the templates trains the weights (double
    back-propagation); ``False`` returns constants (for pictures).

    Args: ``model`` with ``layer_inputs`` (:class:`InversionCNN`, :class:`InversionMLP`), ``x`` ``[N, ...]``.
    Returns ``(logits [N, C], hs, gs, c_hat [N])`` with ``hs[l]``, ``gs[l]`` of the same shape (``hs[0]`` is ``x``).
    """
    check_choice("template", template, TEMPLATES)
    if not hasattr(model, "layer_inputs"):
        raise ValueError("templates need a network with layer_inputs() (InversionCNN / InversionMLP); train with "
                         "train('inversion', ...), which builds one")
    data = not x.requires_grad  # plain images (the usual case); else x is part of a graph and stays connected
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True) if data else x
        logits, _, hs = model.layer_inputs(x_in)
        c_hat = logits.detach().argmax(dim=1)
        if template == "predicted":
            out = logits.gather(1, c_hat[:, None]).sum()
        else:
            out = logits.sum()
        gs = torch.autograd.grad(out, hs, create_graph=create_graph)
    hs = list(hs)
    if data:
        hs[0] = x  # the images themselves are the target of the input term: data, no gradient
    if not create_graph:
        gs = tuple(g.detach() for g in gs)
    return logits, hs, list(gs), c_hat


def reconstruction_errors(hs, gs) -> list[torch.Tensor]:
    """``R^(l) = (1/N) sum_i ||h_i^(l) - g_i^(l)||^2`` for every layer: the squared error summed over the layer's
    ``D^(l)`` units, averaged over the ``N`` images (no stop-gradient on either side). Lists of ``[N, ...]``."""
    out = []
    for l, (h, g) in enumerate(zip(hs, gs)):
        if h.shape != g.shape:
            raise ValueError(f"layer {l}: representation {tuple(h.shape)} and template {tuple(g.shape)} differ")
        out.append((h.float() - g.float()).pow(2).flatten(1).sum(1).mean())
    return out


def layer_dims(hs) -> list[int]:
    """``D^(l)``: the number of units of each layer's input, per image (channels x height x width)."""
    return [int(h[0].numel()) for h in hs]


def loss_weights(mode: str, dims, num_classes: int, entropy_scale: float = 1.0, recon_scale: float = 1.0) -> dict:
    """The 2018 paper's weights, with our two multipliers (1 = the paper):

        beta_CE = 1,   beta_E = entropy_scale / log C,
        multiscale: beta_R^(l) = recon_scale / (L * D^(l)) for l = 0 .. L-1   (L = len(dims))
        global:     beta_R^(0) = recon_scale / D^(0), the others 0
        entropy:    no reconstruction;   supervised: no entropy either.

    Returns ``{"ce": float, "entropy": float, "recon": [float] * L}``."""
    check_choice("mode", mode, MODES)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (log C normalises the entropy); got {num_classes}")
    L = len(dims)
    recon = [0.0] * L
    if mode == "multiscale":
        recon = [recon_scale / (L * d) for d in dims]
    elif mode == "global":
        recon[0] = recon_scale / dims[0]
    beta_e = 0.0 if mode == "supervised" else entropy_scale / math.log(num_classes)
    return {"ce": 1.0, "entropy": beta_e, "recon": recon}


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean prediction entropy ``(1/N) sum_i -sum_c p_ic log p_ic`` of ``[N, C]`` logits (0 for an empty batch)."""
    if len(logits) == 0:
        return logits.new_zeros((), dtype=torch.float32)
    logp = F.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(1).mean()


def inversion_loss(logits_x_lb, y_lb, logits_x_ulb, recon_errors, weights: dict):
    """The (multiscale) inversion loss, 2018 paper:

        L = beta_CE * CE(y_lb, logits_x_lb) + beta_E * E(logits_x_ulb) + sum_l beta_R^(l) * R^(l)

    Args: ``logits_x_lb`` ``[B, C]``, ``y_lb`` ``[B]``, ``logits_x_ulb`` ``[mu B, C]``, ``recon_errors`` the ``R^(l)``
    of :func:`reconstruction_errors` (scalars; may be empty), ``weights`` from :func:`loss_weights`.
    Returns ``(loss, {"ce", "entropy", "recon"})`` where ``recon`` is the weighted sum ``sum_l beta_R^(l) R^(l)``."""
    ce = supervised_loss(logits_x_lb.float(), y_lb)
    ent = entropy(logits_x_ulb)
    rec = ce.new_zeros(())
    for beta, r in zip(weights["recon"], recon_errors):
        if beta:
            rec = rec + beta * r
    loss = weights["ce"] * ce + weights["entropy"] * ent + rec
    return loss, {"ce": ce, "entropy": ent, "recon": rec}


# ------------------------------------------------------------------------------------------- the method
@dataclass
class InversionConfig(MethodConfig):
    mode: str = param("multiscale", "which terms: 'supervised' (CE), 'entropy' (CE + E / log C), 'global' (+ the "
                      "input reconstruction only, weight 1 / D^(0): the 2018 weights with the 2017 paper's single "
                      "term), 'multiscale' (+ a reconstruction at every layer, weights 1 / (L D^(l)), 2018)",
                      choices=MODES)
    entropy_scale: float = param(1.0, "multiplier of the paper's entropy weight beta_E = 1 / log C (1 = paper)",
                                 0.0, 10.0, 0.1)
    recon_scale: float = param(1.0, "multiplier of the paper's reconstruction weights beta_R^(l) = 1 / (L D^(l)) "
                               "(1 = paper)", 0.0, 10.0, 0.1)
    recon_on: str = param("all", "images whose templates are reconstructed: 'all' (labeled and unlabeled, paper) "
                          "or 'labeled' only (an ablation: is it the unlabeled data, or a regularizer?)",
                          choices=RECON_ON)
    template: str = param("predicted", "the template used as reconstruction: of the 'predicted' class (paper) or "
                          "the 'sum' of all classes' templates", choices=TEMPLATES)
    mu: int = param(1, "unlabeled images per labeled image in a batch", 1, 16, 1,
                    paper="not given in the text we could read")
    augment: bool = param(True, "weak augmentation (random shift) of every image; False: the images as they are")


class Inversion(Method):
    """total = CE (labeled) + beta_E E (unlabeled) + sum_l beta_R^(l) R^(l) (every image), one forward pass over
    [weak labeled | weak unlabeled], the templates by a second, differentiable backward pass.

    The network is the method's own (:class:`InversionCNN`, no BatchNorm; :class:`InversionMLP` for 2-D points),
    built by :meth:`build_model` for every mode, so the four modes differ by their loss only.
    """

    name = "inversion"
    title = "deep network inversion"
    summary = "the network's own input gradient (its template) as a decoder: reconstruct every layer (Balestriero " \
              "et al. 2017/2018)"
    paper = "Balestriero et al., Semi-Supervised Learning via (Multiscale) Deep Network Inversion, arXiv 2017/2018"
    year = 2017
    family = "reconstruction"
    notebook = "07_multiscale_inversion"
    diagnostics = ("loss_entropy", "loss_recon", "recon_l0")
    cpu_ms_per_step = 9.7
    Config = InversionConfig
    # No loop defaults of its own (train_defaults stays empty): a reconstructing step costs about twice an
    # entropy-only step on the same images (digits, width 16, B = 32, mu = 1: ~13 vs ~7 ms of one core), so the usual
    # 1000 steps stay far below a minute.

    @property
    def reconstructs(self) -> bool:
        return self.config.mode in ("global", "multiscale") and self.config.recon_scale > 0

    def unlabeled_ratio(self) -> float:
        return 0.0 if self.config.mode == "supervised" else float(self.config.mu)

    def build_model(self, input_shape, num_classes, train_config):
        if getattr(train_config, "model", "auto") not in ("auto", "cnn", "mlp"):
            raise ValueError(f"inversion builds its own BatchNorm-free network; model must be 'auto', 'cnn' or "
                             f"'mlp', got {train_config.model!r}")
        if len(input_shape) == 1:
            return InversionMLP(input_shape[0], num_classes, dropout=train_config.dropout)
        c, h, _ = input_shape
        return InversionCNN(c, num_classes, h, width=train_config.width, dropout=train_config.dropout)

    def losses(self, model, batch, ctx) -> dict:
        """The terms of one step, with their graphs: ``{"loss", "ce", "entropy", "recon", "R": [R^(l)],
        "weights", "dims", "logits", "n_lb"}`` (tests look at each)."""
        cfg = self.config
        view = ctx.aug.weak if cfg.augment else (lambda v: v)
        x_lb = view(batch.x_lb)
        parts = [x_lb]
        if cfg.mode != "supervised" and batch.x_ulb is not None and len(batch.x_ulb):
            parts.append(view(batch.x_ulb))
        x = torch.cat(parts)
        n_lb = len(x_lb)
        if self.reconstructs:
            logits, hs, gs, _ = templates(model, x, cfg.template, create_graph=True)
            if cfg.recon_on == "labeled":
                hs, gs = [h[:n_lb] for h in hs], [g[:n_lb] for g in gs]
            errors = reconstruction_errors(hs, gs)
            dims = layer_dims(hs)
        else:
            logits, _ = model(x)
            errors, dims = [], []
        weights = loss_weights(cfg.mode, dims or [1], ctx.num_classes, cfg.entropy_scale, cfg.recon_scale)
        loss, t = inversion_loss(logits[:n_lb], batch.y_lb, logits[n_lb:], errors, weights)
        return {"loss": loss, **t, "R": errors, "weights": weights, "dims": dims, "logits": logits, "n_lb": n_lb}

    def step(self, model, batch, ctx):
        t = self.losses(model, batch, ctx)
        logs = {"loss_x": t["ce"].detach(), "loss_u": (t["loss"] - t["ce"]).detach(),
                "loss_entropy": t["entropy"].detach(), "loss_recon": t["recon"].detach()}
        for l, (r, d) in enumerate(zip(t["R"], t["dims"])):  # R^(l) / D^(l): squared error per unit of layer l
            logs[f"recon_l{l}"] = r.detach() / d
        return t["loss"], logs
