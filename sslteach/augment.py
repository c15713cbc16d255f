"""Weak and strong views, computed for a whole batch at once on any device.

* **weak** (FixMatch's "flip-and-shift"): a random translation of up to 12.5% of the image side (reflect padding),
  plus a horizontal flip with probability 1/2 where the dataset allows it (clothes, CIFAR-10; not digits, not SVHN).
* **strong** (RandAugment-style, as in FixMatch): the weak view, then ``n_ops`` operations per image drawn at random
  from :data:`STRONG_OPS` with a random magnitude each, then Cutout (a gray square of half the image side).
  Geometric operations are merged into one affine warp per image; colour operations are elementwise; every image
  of the batch gets its own draw.
* 2-D points get Gaussian jitter (a small sigma for weak, a larger one for strong).

All randomness comes from PyTorch's global generator, so :func:`sslteach.utils.seed_everything` makes it repeat.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .phases import phase

GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
COLOR_OPS = ("identity", "autocontrast", "brightness", "contrast", "sharpness", "solarize", "posterize", "color")
STRONG_OPS = GEOMETRIC_OPS + COLOR_OPS


def _uniform(n, low, high, device):
    return torch.rand(n, device=device) * (high - low) + low


def _signed(n, magnitude, device):
    """Uniform magnitude in [0, m] with a random sign."""
    sign = torch.randint(0, 2, (n,), device=device).float() * 2 - 1
    return sign * torch.rand(n, device=device) * magnitude


def translate(x: torch.Tensor, max_frac: float = 0.125, flip: bool = False) -> torch.Tensor:
    """Random integer shift of up to ``max_frac`` of the side (reflect padding), optional random h-flip."""
    b, _, h, w = x.shape
    r = max(1, int(round(max_frac * h)))
    dev = x.device
    dx = torch.randint(-r, r + 1, (b,), device=dev).float() * 2 / w
    dy = torch.randint(-r, r + 1, (b,), device=dev).float() * 2 / h
    sx = torch.ones(b, device=dev)
    if flip:
        sx = torch.where(torch.rand(b, device=dev) < 0.5, -sx, sx)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 1, 1] = sx, 1.0
    theta[:, 0, 2], theta[:, 1, 2] = dx, dy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="reflection", align_corners=False)


def _blend(a, b, factor):
    """PIL's ImageEnhance: factor 0 gives ``b``, 1 gives ``a``, >1 extrapolates; clamped to [0, 1]."""
    return (b + factor.view(-1, 1, 1, 1) * (a - b)).clamp(0, 1)


def _gray(x):
    if x.shape[1] == 3:
        return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    return x


def randaugment(x: torch.Tensor, n_ops: int = 2, cutout: float = 0.5, ops=STRONG_OPS) -> torch.Tensor:
    """RandAugment on a batch ``x`` of images in [0, 1], ``[B, C, H, W]``: ``n_ops`` distinct random operations per
    image with random magnitudes, then Cutout of a ``cutout * H`` square (gray) at a random place."""
    b, c = x.shape[:2]
    ops = [o for o in ops if o != "color" or c == 3]
    if n_ops > 0:
        choice = torch.rand(b, len(ops), device=x.device).argsort(dim=1)[:, :n_ops]
        chosen = torch.zeros(b, len(ops), dtype=torch.bool, device=x.device)
        chosen.scatter_(1, choice, True)
        on = {op: chosen[:, i] for i, op in enumerate(ops)}
        x = _colour_ops(_geometric_ops(x, on), on)
    if cutout > 0:
        x = cutout_(x, cutout)
    return x


def _affine(b, dev, a, bb, tx, cc, d, ty) -> torch.Tensor:
    """``[B, 3, 3]`` affine matrices from their six entries (each a ``[B]`` tensor)."""
    m = torch.eye(3, device=dev).repeat(b, 1, 1)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = a, bb, tx
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = cc, d, ty
    return m


def _geometric_ops(x: torch.Tensor, on: dict) -> torch.Tensor:
    """The geometric operations drawn for each image (``on[op]``: ``[B]`` bool) as one affine warp per image
    (identity where none was drawn)."""
    b, dev = x.shape[0], x.device
    mat = torch.eye(3, device=dev).repeat(b, 1, 1)
    zero, one = torch.zeros(b, device=dev), torch.ones(b, device=dev)
    if "rotate" in on:
        t = torch.where(on["rotate"], _signed(b, math.radians(30), dev), zero)
        mat = mat @ _affine(b, dev, t.cos(), -t.sin(), zero, t.sin(), t.cos(), zero)
    if "shear_x" in on:
        mat = mat @ _affine(b, dev, one, torch.where(on["shear_x"], _signed(b, 0.3, dev), zero), zero, zero, one, zero)
    if "shear_y" in on:
        mat = mat @ _affine(b, dev, one, zero, zero, torch.where(on["shear_y"], _signed(b, 0.3, dev), zero), one, zero)
    if "translate_x" in on:  # up to 30% of the side; normalized coordinates span 2
        mat = mat @ _affine(b, dev, one, zero, torch.where(on["translate_x"], _signed(b, 0.6, dev), zero), zero, one,
                            zero)
    if "translate_y" in on:
        mat = mat @ _affine(b, dev, one, zero, zero, zero, one,
                            torch.where(on["translate_y"], _signed(b, 0.6, dev), zero))
    geo = [on[o] for o in GEOMETRIC_OPS if o in on]
    if not geo:
        return x
    on_any = torch.stack(geo, 1).any(1)
    grid = F.affine_grid(mat[:, :2], list(x.shape), align_corners=False)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return torch.where(on_any.view(-1, 1, 1, 1), warped, x)


def _colour_ops(x: torch.Tensor, on: dict) -> torch.Tensor:
    """The colour operations drawn for each image, elementwise, each applied where drawn (in a fixed order)."""
    b, c, dev = x.shape[0], x.shape[1], x.device

    def autocontrast(v):
        lo = v.amin(dim=(2, 3), keepdim=True)
        hi = v.amax(dim=(2, 3), keepdim=True)
        return ((v - lo) / (hi - lo).clamp_min(1e-3)).clamp(0, 1)

    def sharpen(v):
        k = torch.tensor([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=v.dtype, device=dev) / 13
        blurred = F.conv2d(F.pad(v, (1, 1, 1, 1), mode="replicate"), k.expand(c, 1, 3, 3), groups=c)
        return _blend(v, blurred, _uniform(b, 0.05, 1.95, dev))

    def posterize(v):
        levels = 2 ** torch.randint(4, 9, (b, 1, 1, 1), device=dev).float()
        return torch.floor(v * 255 / (256 / levels)) * (256 / levels) / 255

    colour = (("autocontrast", autocontrast),
              ("brightness", lambda v: _blend(v, torch.zeros_like(v), _uniform(b, 0.05, 1.95, dev))),
              ("contrast", lambda v: _blend(v, _gray(v).mean(dim=(1, 2, 3), keepdim=True).expand_as(v),
                                            _uniform(b, 0.05, 1.95, dev))),
              ("sharpness", sharpen),
              ("solarize", lambda v: torch.where(v >= _uniform(b, 0, 1, dev).view(-1, 1, 1, 1), 1 - v, v)),
              ("posterize", posterize),
              ("color", lambda v: _blend(v, _gray(v).expand_as(v), _uniform(b, 0.05, 1.95, dev))))
    for op, fn in colour:
        if op in on and on[op].any():
            x = torch.where(on[op].view(-1, 1, 1, 1), fn(x), x)
    return x


def cutout_(x: torch.Tensor, frac: float = 0.5, fill: float = 0.5) -> torch.Tensor:
    """Cutout: a ``frac * H`` square filled with gray, centred at a random pixel of each image (clipped at borders)."""
    b, _, h, w = x.shape
    dev = x.device
    size = max(1, int(round(frac * h)))
    cy = torch.randint(0, h, (b, 1, 1), device=dev)
    cx = torch.randint(0, w, (b, 1, 1), device=dev)
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    box = ((ys - cy).abs() * 2 < size) & ((xs - cx).abs() * 2 < size)
    return torch.where(box.unsqueeze(1), torch.full_like(x, fill), x)


class Augmenter:
    """The weak and strong views for one dataset. ``aug.weak(x)`` and ``aug.strong(x)`` take a batch in [0, 1]."""

    def __init__(self, kind: str = "image", flip: bool = False, translate_frac: float = 0.125, n_ops: int = 2,
                 cutout: float = 0.5, weak_sigma: float = 0.05, strong_sigma: float = 0.2):
        if kind not in ("image", "points"):
            raise ValueError(f"kind must be 'image' or 'points'; got {kind!r}")
        self.kind, self.flip, self.translate_frac = kind, flip, translate_frac
        self.n_ops, self.cutout = n_ops, cutout
        self.weak_sigma, self.strong_sigma = weak_sigma, strong_sigma

    def weak(self, x: torch.Tensor) -> torch.Tensor:
        with phase("weak views"):
            if self.kind == "points":
                return x + self.weak_sigma * torch.randn_like(x)
            return translate(x, self.translate_frac, self.flip)

    def strong(self, x: torch.Tensor) -> torch.Tensor:
        """RandAugment + Cutout on top of the weak view (the phase "strong views" leaves that shift to the phase
        "weak views")."""
        with phase("strong views"):
            if self.kind == "points":
                return x + self.strong_sigma * torch.randn_like(x)
            return randaugment(self.weak(x), self.n_ops, self.cutout)

    def none(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def __repr__(self) -> str:
        if self.kind == "points":
            return f"Augmenter(points: weak sigma={self.weak_sigma}, strong sigma={self.strong_sigma})"
        return (f"Augmenter(weak: shift {self.translate_frac:.3g}{', flip' if self.flip else ''}; "
                f"strong: RandAugment n={self.n_ops} + Cutout {self.cutout})")


def for_dataset(dataset, cutout: float = 0.5) -> Augmenter:
    """The augmenter that suits a :class:`~sslteach.data.Dataset` (flip only where it keeps the class); ``cutout``
    is the side of the strong view's Cutout square as a share of the image side."""
    return Augmenter(dataset.kind, flip=dataset.flip, cutout=cutout)
