"""SWWAE — Zhao, Mathieu, Goroshin & LeCun, "Stacked What-Where Auto-encoders", ICLR 2016 workshop track,
arXiv:1506.02351 (no official code).

A convolutional encoder (the classifier's own convnet) and a mirrored decoder. Every max-pooling layer splits its
result in two:

* **what** — the pooled values, passed *up* to the next encoder layer;
* **where** — the position of each maximum inside its pooling window, passed *sideways* to the matching decoder
  layer, which *unpools* (puts every value back at its recorded position, zeros elsewhere) and then convolves.

The loss (the paper's objective) is

    L = L_NLL  +  lambda_rec * ||x - x~||^2  +  lambda_M * sum_l ||x_l - x~_l||^2

with L_NLL on the labeled images only and the two reconstruction terms on every image (labeled and unlabeled):
``x~`` is the decoder's output and ``x~_l`` the decoder's map that mirrors the encoder's pooled map ``x_l`` (same
layer, same shape). With both lambdas at 0 the same network is a plain supervised classifier; with labels missing
it is an auto-encoder. ``unpool="upsample"`` is the paper's "what without where" ablation (Sec. 4.1): the decoder
copies each value into its whole 2x2 window (nearest-neighbour upsampling) instead of using the recorded position.

Choices where the paper is silent or could not be checked (the notebook says so too): each squared norm is a *mean*
over its elements (per pixel / per activation, so one lambda suits 8x8 and 28x28 images and every layer); the
middle terms cover every pooled map x_1..x_L (the top code, which the decoder starts from, has none); no
stop-gradient on either side of a middle term (``mid_stop_grad=True`` detaches the encoder's side); reconstruction
targets are the weakly augmented views the encoder saw (``augment=False``: no augmentation, as the paper's baselines).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Method, MethodConfig, param, supervised_loss

UNPOOL_MODES = ("where", "upsample")


# ------------------------------------------------------------------------------------------- pooling / unpooling
def max_pool_what_where(x: torch.Tensor, kernel: int = 2):
    """Max pooling that keeps both halves of its result (the paper's architecture figure).

    Args: ``x`` ``[B, C, H, W]``. Returns ``(what [B, C, H/k, W/k], where [B, C, H/k, W/k])``: ``what`` are the
    window maxima, ``where`` the position of each maximum as a flat index ``row * W + col`` into the ``H x W``
    input plane (PyTorch's ``return_indices`` convention; ties go to the first position in reading order)."""
    return F.max_pool2d(x, kernel, return_indices=True)


def unpool(what: torch.Tensor, where: torch.Tensor | None, output_size, mode: str = "where", kernel: int = 2):
    """The decoder's inverse of pooling.

    ``mode="where"``: every value goes back to the position recorded by ``where``, zeros elsewhere
    (``MaxUnpool2d``). ``mode="upsample"``: the "what without where" ablation — each value is copied into its
    whole ``kernel x kernel`` window (nearest-neighbour upsampling); ``where`` is ignored.
    ``output_size`` is the ``(H, W)`` of the map that was pooled (an odd side such as 7 -> 3 -> 7 needs it).
    Shapes: ``what``, ``where`` ``[B, C, h, w]`` -> ``[B, C, H, W]``."""
    if mode not in UNPOOL_MODES:
        raise ValueError(f"unpool mode must be one of {', '.join(UNPOOL_MODES)}; got {mode!r}")
    size = tuple(output_size)[-2:]
    if mode == "where":
        if where is None:
            raise ValueError("unpool mode 'where' needs the recorded positions (where); got None")
        return F.max_unpool2d(what, where, kernel, output_size=size)
    up = F.interpolate(what, scale_factor=kernel, mode="nearest")
    if up.shape[-2:] != size:  # an odd side: the pooling dropped the last row/column; pad it back with zeros
        up = F.pad(up, (0, size[1] - up.shape[-1], 0, size[0] - up.shape[-2]))
    return up


def soft_max_pool(x: torch.Tensor, beta: float = 1.0, kernel: int = 2):
    """The paper's *soft* what and where: within each ``kernel x kernel`` window N,

        what  = sum_{n in N} z_n * softmax(beta * z)_n             (a soft maximum)
        where = sum_{n in N} p_n * softmax(beta * z)_n             (a soft arg-max: the expected position)

    with p_n the (row, column) of position n in the input plane. ``beta -> infinity`` recovers max pooling and the
    arg-max position. Args: ``x`` ``[B, C, H, W]`` (H, W multiples of ``kernel``), ``beta`` > 0.
    Returns ``(what [B, C, H/k, W/k], where [B, C, H/k, W/k, 2])`` with ``where[..., 0]`` the row and
    ``where[..., 1]`` the column (floats, in input pixels)."""
    if not beta > 0:
        raise ValueError(f"beta must be > 0; got {beta}")
    b, c, h, w = x.shape
    if h % kernel or w % kernel:
        raise ValueError(f"soft_max_pool needs H and W divisible by kernel={kernel}; got {h}x{w}")
    cols = F.unfold(x.reshape(b * c, 1, h, w), kernel, stride=kernel)        # [B*C, k*k, h/k * w/k]
    weights = torch.softmax(beta * cols, dim=1)
    what = (weights * cols).sum(1).reshape(b, c, h // kernel, w // kernel)
    rows = torch.arange(h, dtype=x.dtype, device=x.device).view(1, 1, h, 1).expand(1, 1, h, w)
    colidx = torch.arange(w, dtype=x.dtype, device=x.device).view(1, 1, 1, w).expand(1, 1, h, w)
    pos_r = F.unfold(rows.contiguous(), kernel, stride=kernel)               # [1, k*k, L]
    pos_c = F.unfold(colidx.contiguous(), kernel, stride=kernel)
    where_r = (weights * pos_r).sum(1).reshape(b, c, h // kernel, w // kernel)
    where_c = (weights * pos_c).sum(1).reshape(b, c, h // kernel, w // kernel)
    return what, torch.stack([where_r, where_c], dim=-1)


# ------------------------------------------------------------------------------------------- the network
def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def default_pool_layers(image_size: int) -> int:
    """How many 2x2 poolings an ``image_size`` side takes: 2 for 8x8 digits (8 -> 4 -> 2), 3 for 28x28 and 32x32
    (28 -> 14 -> 7 -> 3)."""
    return 2 if image_size < 16 else 3


class SWWAENet(nn.Module):
    """A convnet encoder with a mirrored "deconvnet" decoder (the paper's architecture figure), for ``[B, C, H, W]`` images.

    Encoder: ``pool_layers`` stages of conv3x3-BN-ReLU followed by a 2x2 max pooling that returns what and where;
    then a top conv3x3-BN-ReLU (the top code ``z``, no pooling); the classifier is global average pooling of ``z``
    and a linear layer. Channels: ``width`` in stage 1, ``2 * width`` after it.
    Decoder, mirrored: a top conv maps ``z`` back to the shape of the last pooled map; each stage ``l = L .. 1``
    unpools (with where, or by upsampling) and convolves down to the channels of the map below; the last conv
    outputs the image (linear, no ReLU).

    ``forward(x)`` returns ``(logits, features)`` like every model (the encoder only); :meth:`reconstruct` runs the
    decoder too.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, pool_layers: int = 2, width: int = 16,
                 dropout: float = 0.0, unpool: str = "where"):
        super().__init__()
        if unpool not in UNPOOL_MODES:
            raise ValueError(f"unpool must be one of {', '.join(UNPOOL_MODES)}; got {unpool!r}")
        if not isinstance(pool_layers, int) or pool_layers < 1:
            raise ValueError(f"pool_layers must be an integer >= 1; got {pool_layers!r}")
        self.unpool_mode = unpool
        self.pool_layers = pool_layers
        chans = [in_channels] + [width * (1 if i == 0 else 2) for i in range(pool_layers)]
        self.channels = chans
        top = 2 * width
        self.enc = nn.ModuleList([_conv_bn_relu(chans[i], chans[i + 1]) for i in range(pool_layers)])
        self.enc_top = _conv_bn_relu(chans[-1], top)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(top, num_classes)
        self.feature_dim = top
        self.dec_top = _conv_bn_relu(top, chans[-1])
        # dec[i] turns the unpooled map of stage i + 1 (chans[i + 1] channels) into the map below it (chans[i])
        self.dec = nn.ModuleList([nn.Conv2d(chans[1], in_channels, 3, padding=1)]
                                 + [_conv_bn_relu(chans[i + 1], chans[i]) for i in range(1, pool_layers)])

    # ---- the encoder
    def encode(self, x: torch.Tensor) -> dict:
        """The encoder pass. Returns a dict with ``whats`` (the pooled maps x_1..x_L), ``wheres`` (their arg-max
        positions), ``sizes`` (the shape of each map before its pooling), ``z`` (the top code), ``features``
        ``[B, 2 * width]`` and ``logits`` ``[B, num_classes]``."""
        whats, wheres, sizes = [], [], []
        h = x
        for block in self.enc:
            h = block(h)
            sizes.append(h.shape[-2:])
            h, where = max_pool_what_where(h)
            whats.append(h)
            wheres.append(where)
        z = self.enc_top(h)
        features = z.mean(dim=(2, 3))
        logits = self.head(self.dropout(features))
        return {"whats": whats, "wheres": wheres, "sizes": sizes, "z": z, "features": features, "logits": logits}

    def forward(self, x):
        out = self.encode(x)
        return out["logits"], out["features"]

    # ---- the decoder
    def decode_stage(self, h: torch.Tensor, layer: int, where, size, mode: str | None = None) -> torch.Tensor:
        """One decoder stage: unpool the map of pooled layer ``layer`` (1-based) and convolve it down to the map
        of layer ``layer - 1`` (layer 0 = the image)."""
        up = unpool(h, where, size, mode or self.unpool_mode)
        return self.dec[layer - 1](up)

    def decode(self, enc: dict, mode: str | None = None, start: int | None = None):
        """Run the decoder. ``start=None``: from the top code ``z`` (the full auto-encoder); ``start=l``: from the
        encoder's own pooled map x_l, through decoder stages l .. 1 only (the reconstruction "from layer l" of the
        paper's Sec. 4.1). Returns ``(x~ [B, C, H, W], [x~_1, ..., x~_L])`` (``None`` for layers above ``start``)."""
        L = self.pool_layers
        recs: list = [None] * L
        if start is None:
            h = self.dec_top(enc["z"])
            recs[L - 1] = h
            top = L
        else:
            if not 1 <= start <= L:
                raise ValueError(f"start must be in [1, {L}] (a pooled layer); got {start}")
            h = enc["whats"][start - 1]
            top = start
        for layer in range(top, 0, -1):
            h = self.decode_stage(h, layer, enc["wheres"][layer - 1], enc["sizes"][layer - 1], mode)
            if layer > 1:
                recs[layer - 2] = h
        return h, recs

    def reconstruct(self, x: torch.Tensor, mode: str | None = None, start: int | None = None):
        """Encode and decode ``x``. ``mode``: ``"where"`` | ``"upsample"`` (default: the network's own).
        Returns ``(x~, pairs, logits)``: ``pairs[l - 1] = (x_l, x~_l)``, the encoder's pooled map of layer l and the
        decoder's map that mirrors it (same shape), for every layer the decoder passed through."""
        enc = self.encode(x)
        x_rec, recs = self.decode(enc, mode, start)
        pairs = [(e, d) for e, d in zip(enc["whats"], recs) if d is not None]
        return x_rec, pairs, enc["logits"]


# ------------------------------------------------------------------------------------------- the loss
def reconstruction_terms(x: torch.Tensor, x_rec: torch.Tensor, pairs):
    """SWWAE's two reconstruction terms (the paper's L2rec and L2M), each squared norm taken as a *mean* over its elements:

        L_rec = mean_{b, c, i, j} (x - x~)^2                   (input reconstruction, every image)
        L_M   = sum_l mean_{b, c, i, j} (x_l - x~_l)^2         (middle terms, one per pooled layer)

    Args: ``x``, ``x_rec`` ``[N, C, H, W]``; ``pairs``: a list of ``(x_l, x~_l)`` maps of equal shapes.
    Returns ``(L_rec, L_M)`` (scalars; ``L_M`` is 0 for an empty list). No stop-gradient on either side."""
    if x.shape != x_rec.shape:
        raise ValueError(f"x and x_rec must have the same shape; got {tuple(x.shape)} and {tuple(x_rec.shape)}")
    loss_rec = F.mse_loss(x_rec.float(), x.float())
    loss_mid = x_rec.new_zeros((), dtype=torch.float32)
    for i, (enc, dec) in enumerate(pairs, 1):
        if enc.shape != dec.shape:
            raise ValueError(f"middle pair {i}: encoder map {tuple(enc.shape)} and decoder map {tuple(dec.shape)} "
                             "must have the same shape")
        loss_mid = loss_mid + F.mse_loss(dec.float(), enc.float())
    return loss_rec, loss_mid


def swwae_loss(logits_x_lb: torch.Tensor, y_lb: torch.Tensor, x: torch.Tensor, x_rec: torch.Tensor, pairs,
               lambda_rec: float, lambda_m: float):
    """The SWWAE objective, L = L_NLL + lambda_rec * L_rec + lambda_M * L_M (the paper's objective):

        L_NLL = (1 / B) sum_b -log p(y_b | x_b)      over the B labeled images only
        L_rec, L_M: :func:`reconstruction_terms` over all N images (labeled and unlabeled)

    Args: ``logits_x_lb`` ``[B, C]``, ``y_lb`` ``[B]``; ``x``, ``x_rec`` ``[N, C, H, W]``; ``pairs`` as in
    :func:`reconstruction_terms`; ``lambda_rec``, ``lambda_m`` >= 0.
    Returns ``(loss, L_NLL, L_rec, L_M)``."""
    for name, v in (("lambda_rec", lambda_rec), ("lambda_m", lambda_m)):
        if not v >= 0:
            raise ValueError(f"{name} must be >= 0; got {v}")
    loss_nll = supervised_loss(logits_x_lb.float(), y_lb)
    loss_rec, loss_mid = reconstruction_terms(x, x_rec, pairs)
    return loss_nll + lambda_rec * loss_rec + lambda_m * loss_mid, loss_nll, loss_rec, loss_mid


@torch.no_grad()
def reconstruction_error(model: SWWAENet, x: torch.Tensor, mode: str | None = None, start: int | None = None,
                         batch_size: int = 512) -> float:
    """Mean squared error per pixel of the reconstructions of ``x`` (images in [0, 1], eval mode): the number the
    notebook and the claim tests compare between "where" and "upsample"."""
    from ..data import to_float

    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    total, n = 0.0, 0
    for i in range(0, len(x), batch_size):
        xb = to_float(x[i: i + batch_size]).to(dev)
        rec, _, _ = model.reconstruct(xb, mode, start)
        total += float(((rec.float() - xb) ** 2).sum())
        n += xb.numel()
    model.train(was)
    return total / max(1, n)


# ------------------------------------------------------------------------------------------- the method
@dataclass
class SWWAEConfig(MethodConfig):
    lambda_rec: float = param(1.0, "weight lambda_rec of the input reconstruction ||x - x~||^2, a mean per pixel "
                              "(the paper gives no value: our choice)", 0.0, 10.0, 0.1)
    lambda_m: float = param(0.2, "weight lambda_M of the middle terms sum_l ||x_l - x~_l||^2, each a mean per "
                            "activation (the paper gives no value: our choice)", 0.0, 10.0, 0.05)
    mu: int = param(1, "unlabeled images per labeled image in a batch (they enter the reconstruction terms only)",
                    0, 16, 1)
    unpool: str = param("where", "decoder unpooling: 'where' (recorded positions) or 'upsample' (what without "
                        "where, nearest-neighbour: the paper's ablation)", choices=UNPOOL_MODES)
    pool_layers: int = param(0, "pooling layers of the encoder (0: 2 for 8x8 images, 3 for 28x28 / 32x32)", 0, 4, 1)
    augment: bool = param(True, "weak augmentation (random shift) of every image; False: the images as they are "
                          "(the paper's baselines had no augmentation)")
    mid_stop_grad: bool = param(False, "stop the gradient on the encoder side of the middle terms (x_l.detach(): "
                                "only the decoder moves towards the encoder's maps)")
    encode_unlabeled: bool = param(False, "with lambda_rec = lambda_M = 0, still pass mu unlabeled images per "
                                   "labeled one through the encoder (no loss on them: BatchNorm's statistics see "
                                   "them, the control arm for BatchNorm)")
    separate_passes: bool = param(False, "labeled and unlabeled images in two forward passes, so BatchNorm "
                                  "normalises the labeled batch on its own as in 'labels only' (default: one pass "
                                  "over both)")


class SWWAE(Method):
    """total = L_NLL (labeled) + lambda_rec * L_rec + lambda_M * L_M (every image), one forward pass of the encoder
    and the decoder over [weak labeled | weak unlabeled], so BatchNorm sees them together.

    The network is the method's own (:class:`SWWAENet`, built by :meth:`build_model`). With ``lambda_rec =
    lambda_m = 0`` the decoder is skipped and no unlabeled image is drawn: the same network, trained supervised.
    """

    name = "swwae"
    title = "SWWAE"
    summary = "a convnet with a mirrored decoder: pooling passes 'what' up and 'where' across (Zhao et al. 2016)"
    paper = "Zhao, Mathieu, Goroshin & LeCun, Stacked What-Where Auto-encoders, ICLR 2016 workshop"
    year = 2016
    family = "reconstruction"
    notebook = "06_swwae"
    diagnostics = ("loss_rec", "loss_mid")
    cpu_ms_per_step = 7.3
    Config = SWWAEConfig
    # A step runs the encoder and the decoder over (1 + mu) B images. Width 16 keeps a default run (1000 steps) on
    # Fashion-MNIST under a minute on 2 CPU cores (one thread: ~54 ms per step at width 16, ~120 ms at width 32);
    # digits use 16 anyway (DATASET_DEFAULTS), at ~10 ms per step.
    train_defaults = {"width": 16}

    @property
    def uses_decoder(self) -> bool:
        return self.config.lambda_rec > 0 or self.config.lambda_m > 0

    def unlabeled_ratio(self) -> float:
        return float(self.config.mu) if self.uses_decoder or self.config.encode_unlabeled else 0.0

    def build_model(self, input_shape, num_classes, train_config):
        if len(input_shape) != 3:
            raise ValueError(f"swwae needs images [C, H, W]; got input shape {tuple(input_shape)} (2-D points have "
                             "nothing to pool)")
        c, h, w = input_shape
        layers = self.config.pool_layers or default_pool_layers(min(h, w))
        if min(h, w) < 2 ** layers:
            raise ValueError(f"pool_layers={layers} halves a {h}x{w} image below 1 pixel; use at most "
                             f"{int(min(h, w)).bit_length() - 1}")
        return SWWAENet(c, num_classes, layers, width=train_config.width, dropout=train_config.dropout,
                        unpool=self.config.unpool)

    def losses(self, model: SWWAENet, batch, ctx) -> dict:
        """The loss terms of one step, with their graphs: ``{"nll", "rec", "mid", "n_lb"}`` (tests look at each)."""
        if not hasattr(model, "reconstruct"):
            raise ValueError("swwae needs its own network (SWWAENet with a decoder); train it with "
                             "train('swwae', ...), which builds it")
        view = ctx.aug.weak if self.config.augment else (lambda v: v)
        x_lb = view(batch.x_lb)
        n_lb = len(x_lb)
        has_ulb = batch.x_ulb is not None and len(batch.x_ulb) > 0
        if not self.uses_decoder:  # labels only; with encode_unlabeled, BatchNorm also sees the unlabeled images
            both = self.config.encode_unlabeled and has_ulb
            logits, _ = model(torch.cat([x_lb, view(batch.x_ulb)]) if both else x_lb)
            zero = logits.new_zeros((), dtype=torch.float32)
            return {"nll": supervised_loss(logits[:n_lb].float(), batch.y_lb), "rec": zero, "mid": zero, "n_lb": n_lb}
        x = torch.cat([x_lb, view(batch.x_ulb)]) if has_ulb else x_lb
        if self.config.separate_passes and has_ulb:  # BatchNorm normalises the labeled images on their own
            (r_l, p_l, z_l), (r_u, p_u, _) = [model.reconstruct(v, self.config.unpool) for v in (x_lb, x[n_lb:])]
            x_rec, logits = torch.cat([r_l, r_u]), z_l
            pairs = [(torch.cat([el, eu]), torch.cat([dl, du])) for (el, dl), (eu, du) in zip(p_l, p_u)]
        else:
            x_rec, pairs, logits = model.reconstruct(x, self.config.unpool)
        if self.config.mid_stop_grad:  # the encoder's maps become fixed targets of the middle terms
            pairs = [(enc.detach(), dec) for enc, dec in pairs]
        _, nll, rec, mid = swwae_loss(logits[:n_lb], batch.y_lb, x, x_rec, pairs, 0.0, 0.0)
        return {"nll": nll, "rec": rec, "mid": mid, "n_lb": n_lb}

    def step(self, model, batch, ctx):
        cfg = self.config
        t = self.losses(model, batch, ctx)
        loss_u = cfg.lambda_rec * t["rec"] + cfg.lambda_m * t["mid"]
        loss = t["nll"] + loss_u
        return loss, {"loss_x": t["nll"].detach(), "loss_u": loss_u.detach(), "loss_rec": t["rec"].detach(),
                      "loss_mid": t["mid"].detach()}


# ------------------------------------------------------------------------------------------- what the notebook looks at
def shift_images(x: torch.Tensor, dx: int = 0, dy: int = 0) -> torch.Tensor:
    """Shift images ``[N, C, H, W]`` by whole pixels (``dx`` to the right, ``dy`` down), filling with zeros (the
    background of digits and clothes): what moves out of the frame is lost, nothing wraps around."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    if abs(dx) >= w or abs(dy) >= h:
        return out
    src_y, dst_y = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    src_x, dst_x = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., dst_y, dst_x] = x[..., src_y, src_x]
    return out


def where_to_rows_cols(where: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat arg-max indices (``row * width + col``) -> ``(row, col)`` tensors of the same shape."""
    return torch.div(where, width, rounding_mode="floor"), where % width


@torch.no_grad()
def what_where_under_shift(model: SWWAENet, x: torch.Tensor, shifts=(0, 1, 2, 3), layer: int = 1) -> dict:
    """Sec. 4.2's picture in numbers: shift images ``x`` to the right by each of ``shifts`` pixels and compare the
    encoder's pooled layer ``layer`` with the unshifted one (eval mode). Per shift, averaged over the images:

    * ``pixel_cos``: cosine similarity of the shifted and the original *images* (the reference: no invariance);
    * ``what_cos``: cosine similarity of the 2x2-pooled "what" maps of the layer;
    * ``global_what_cos``: the same for each channel's strongest "what" (a pooling over the whole map: the vector of
      channel maxima) — the "what" of the paper's top layer, which should barely change;
    * ``where_shift``: how far each channel's strongest activation moved to the right, in input pixels (its
      "where"), averaged over the channels and images — equivariance: it should follow the shift;
    * ``where_changed``: the share of the layer's 2x2 "where" positions that changed.
    """
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    x = x.to(dev)
    base = model.encode(x)
    what0, where0 = base["whats"][layer - 1], base["wheres"][layer - 1]
    plane_w = base["sizes"][layer - 1][-1]
    scale = 2 ** (layer - 1)  # the layer's input plane is 2^(layer - 1) times smaller than the image

    def strongest(what, where):
        flat = what.flatten(2)                                          # [N, C, h*w]
        val, j = flat.max(dim=2)                                        # each channel's strongest what
        pos = where.flatten(2).gather(2, j.unsqueeze(2)).squeeze(2)     # its where, a flat index in the plane
        return val, where_to_rows_cols(pos, plane_w)[1].float() * scale

    g0, col0 = strongest(what0, where0)
    out = {k: [] for k in ("shift", "pixel_cos", "what_cos", "global_what_cos", "where_shift", "where_changed")}
    for s in shifts:
        xs = shift_images(x, dx=int(s))
        enc = model.encode(xs)
        what, where = enc["whats"][layer - 1], enc["wheres"][layer - 1]
        g, col = strongest(what, where)
        alive = g0 > 0  # channels with no activation at all have no "where" to follow
        out["shift"].append(int(s))
        out["pixel_cos"].append(float(F.cosine_similarity(xs.flatten(1), x.flatten(1), dim=1).mean()))
        out["what_cos"].append(float(F.cosine_similarity(what.flatten(1), what0.flatten(1), dim=1).mean()))
        out["global_what_cos"].append(float(F.cosine_similarity(g, g0, dim=1).mean()))
        out["where_shift"].append(float((col - col0)[alive].mean()) if alive.any() else 0.0)
        out["where_changed"].append(float((where != where0).float().mean()))
    model.train(was)
    return out
