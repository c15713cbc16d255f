"""Schematic diagrams of the methods (matplotlib patches and arrows, large fonts for a projector).

Each function returns a :class:`matplotlib.figure.Figure`; the notebooks show it where a method is introduced.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

FONT = 13
COLORS = {"data": "#dbe9f6", "model": "#fde2c4", "op": "#e6f2da", "loss": "#f8d4d4", "note": "#eeeeee"}


def _box(ax, x, y, text, kind="op", w=2.2, h=1.0, fontsize=FONT):
    """A rounded box centred at (x, y) with ``text``; returns its centre and half-sizes for arrows."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05,rounding_size=0.15",
                                facecolor=COLORS[kind], edgecolor="#333333", linewidth=1.5))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, wrap=True)
    return (x, y, w / 2, h / 2)


def _edge(a, b):
    """The point on box ``a``'s border in the direction of box ``b`` (boxes as returned by :func:`_box`)."""
    (xa, ya, wa, ha), (xb, yb) = a, b[:2]
    dx, dy = xb - xa, yb - ya
    if dx == 0 and dy == 0:
        return xa, ya
    s = min(wa / abs(dx) if dx else float("inf"), ha / abs(dy) if dy else float("inf"))
    return xa + dx * s, ya + dy * s


def _arrow(ax, a, b, text=None, style="-|>", color="#333333", ls="-", rad=0.0, fontsize=FONT - 1, offset=(0, 0.25)):
    """An arrow from box ``a`` to box ``b`` with an optional label at its midpoint."""
    p, q = _edge(a, b), _edge(b, a)
    ax.add_patch(FancyArrowPatch(p, q, arrowstyle=style, mutation_scale=20, color=color, linewidth=1.8,
                                 linestyle=ls, connectionstyle=f"arc3,rad={rad}", shrinkA=4, shrinkB=4))
    if text:
        ax.text((p[0] + q[0]) / 2 + offset[0], (p[1] + q[1]) / 2 + offset[1], text, ha="center", va="bottom",
                fontsize=fontsize, color=color)


def _canvas(width, height, xlim, ylim, title=None):
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=FONT + 3)
    return fig, ax


def fixmatch_pipeline():
    """FixMatch's unlabeled loss: the weak view's confident prediction (no gradient) is the one-hot target of the
    strong view's prediction."""
    fig, ax = _canvas(14, 6.2, (0, 20), (0, 8.5), "FixMatch: the unlabeled loss")
    x = _box(ax, 1.6, 4.3, "unlabeled\nimage $u$", "data", w=2.4, h=1.4)
    weak = _box(ax, 5.0, 6.6, "weak view\n(flip + shift)", "data", w=3.0)
    strong = _box(ax, 5.0, 2.0, "strong view\n(RandAugment\n+ Cutout)", "data", w=3.0, h=1.4)
    m1 = _box(ax, 8.9, 6.6, "model", "model", w=2.0)
    m2 = _box(ax, 8.9, 2.0, "model", "model", w=2.0)
    conf = _box(ax, 12.7, 6.6, "max prob $\\geq \\tau$ ?", "op", w=3.2)
    onehot = _box(ax, 17.0, 6.6, "one-hot argmax\npseudo-label $\\hat q$", "op", w=3.2, h=1.2)
    pred = _box(ax, 12.7, 2.0, "prediction\n$p_m(y\\mid \\mathcal{A}(u))$", "op", w=3.4, h=1.2)
    loss = _box(ax, 17.0, 2.0, "cross-entropy\n$H(\\hat q,\\, p)$", "loss", w=3.2, h=1.2)
    _arrow(ax, x, weak)
    _arrow(ax, x, strong)
    _arrow(ax, weak, m1)
    _arrow(ax, strong, m2)
    _arrow(ax, m1, conf, "probs")
    _arrow(ax, conf, onehot, "yes")
    _arrow(ax, m2, pred)
    _arrow(ax, onehot, loss, color="#b03030", ls="--")
    _arrow(ax, pred, loss)
    ax.text(17.3, 4.3, "target, with\nstop-gradient:\nno backprop\nthrough it", ha="left", va="center", fontsize=FONT - 1,
            color="#b03030")
    ax.text(12.7, 4.9, "no: image ignored (mask 0)", ha="center", va="center", fontsize=FONT - 1, color="#555555")
    ax.text(10.0, 0.35, "same model, shared weights; gradient flows only through the strong branch",
            ha="center", va="center", fontsize=FONT - 1, color="#333333")
    fig.tight_layout()
    return fig


def consistency_targets():
    """Where the consistency target comes from in the Π-model, temporal ensembling and Mean Teacher."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 6.2))
    titles = ["Π-model", "Temporal ensembling", "Mean Teacher"]
    for ax, t in zip(axes, titles):
        ax.set_xlim(0, 10)
        ax.set_ylim(0, 10)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(t, fontsize=FONT + 3)

    # Π-model: two stochastic passes of the same network now
    ax = axes[0]
    x = _box(ax, 5, 9.0, "input $x$", "data", w=3.0, h=1.0)
    a = _box(ax, 2.5, 6.2, "student\n(noise #1)", "model", w=3.2, h=1.3)
    b = _box(ax, 7.5, 6.2, "student\n(noise #2)", "model", w=3.2, h=1.3)
    l = _box(ax, 5, 2.8, "squared error\n$\\|z - \\tilde z\\|^2$", "loss", w=4.6, h=1.3)
    _arrow(ax, x, a)
    _arrow(ax, x, b)
    _arrow(ax, a, l, offset=(0, 0))
    _arrow(ax, b, l, offset=(0, 0))
    ax.text(5, 0.8, "target = another noisy\npass now", ha="center", va="center", fontsize=FONT,
            color="#b03030")

    # Temporal ensembling: EMA over epochs of past predictions, per sample, with bias correction
    ax = axes[1]
    x = _box(ax, 5, 9.0, "input $x_i$", "data", w=3.0, h=1.0)
    s = _box(ax, 2.5, 6.2, "student\n(noisy)", "model", w=3.0, h=1.3)
    mem = _box(ax, 7.5, 6.2, "$Z_i \\leftarrow \\alpha Z_i$\n$+ (1-\\alpha) z_i$", "op", w=3.6, h=1.5)
    corr = _box(ax, 7.5, 3.2, "$\\tilde z_i = Z_i / (1-\\alpha^t)$", "op", w=4.0, h=1.1)
    l = _box(ax, 2.5, 3.2, "squared\nerror", "loss", w=2.6, h=1.3)
    _arrow(ax, x, s)
    _arrow(ax, s, mem, "$z_i$", offset=(0, 0.1))
    _arrow(ax, mem, corr, "bias correction", offset=(0, -0.3))
    _arrow(ax, corr, l, color="#b03030")
    _arrow(ax, s, l)
    ax.text(5, 0.8, "target = EMA of past predictions\nper sample (one per epoch)", ha="center", va="center",
            fontsize=FONT, color="#b03030")

    # Mean Teacher: teacher with EMA-of-weights
    ax = axes[2]
    x = _box(ax, 5, 9.0, "input $x$", "data", w=3.0, h=1.0)
    s = _box(ax, 2.5, 6.2, "student\n$\\theta$", "model", w=2.8, h=1.3)
    t = _box(ax, 7.5, 6.2, "teacher\n$\\theta' $", "model", w=2.8, h=1.3)
    l = _box(ax, 5, 2.8, "squared error", "loss", w=4.0, h=1.1)
    _arrow(ax, x, s)
    _arrow(ax, x, t)
    _arrow(ax, s, t, "EMA of weights", color="#2a6f2a", ls="--", offset=(0, -0.95))
    _arrow(ax, s, l, offset=(0, 0))
    _arrow(ax, t, l, color="#b03030", offset=(0, 0))
    ax.text(5, 0.8, "target = prediction of an\nEMA-of-weights teacher", ha="center", va="center", fontsize=FONT,
            color="#b03030")
    fig.tight_layout()
    return fig


def noisy_student_loop():
    """Noisy Student's self-training loop: clean teacher pseudo-labels, noised (equal-or-larger) student."""
    fig, ax = _canvas(14, 6.8, (0, 20), (0, 9.5), "Noisy Student: iterative self-training")
    lab = _box(ax, 2.2, 7.6, "labeled\nimages", "data", w=2.8, h=1.3)
    unl = _box(ax, 2.2, 3.0, "unlabeled\nimages", "data", w=2.8, h=1.3)
    teacher = _box(ax, 7.2, 7.6, "teacher\n(trained on labels)", "model", w=3.6, h=1.3)
    pl = _box(ax, 7.2, 3.0, "pseudo-labels\n(teacher, no noise)", "op", w=3.8, h=1.3)
    student = _box(ax, 14.2, 5.3, "noised student\naugment + dropout\n+ stochastic depth", "model", w=4.6, h=2.0)
    loss = _box(ax, 14.2, 1.2, "cross-entropy on labeled\n+ pseudo-labeled", "loss", w=5.2, h=1.3)
    _arrow(ax, lab, teacher, "train")
    _arrow(ax, unl, pl)
    _arrow(ax, teacher, pl, "predict (clean)", offset=(1.4, -1.1))
    _arrow(ax, lab, student, rad=0.25)
    _arrow(ax, pl, student, offset=(0, 0))
    _arrow(ax, student, loss)
    ax.add_patch(FancyArrowPatch((14.2, 6.35), (9.0, 8.1), arrowstyle="-|>", mutation_scale=22, color="#2a6f2a",
                                 linewidth=2.2, linestyle="--", connectionstyle="arc3,rad=0.35"))
    ax.text(12.6, 8.7, "student becomes teacher, repeat", ha="center", va="center", fontsize=FONT,
            color="#2a6f2a")
    fig.tight_layout()
    return fig
