"""Figures for the notebooks, sized and labelled to be readable on a projector (matplotlib)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from .data import Dataset, to_float
from .evaluation import confusion_matrix

PROJECTOR_STYLE = {"font.size": 13, "axes.titlesize": 15, "axes.labelsize": 13, "legend.fontsize": 12,
                   "xtick.labelsize": 12, "ytick.labelsize": 12, "figure.dpi": 90, "axes.grid": True,
                   "grid.alpha": 0.3, "lines.linewidth": 2.2}


def use_projector_style() -> None:
    """Large fonts and thick lines for every later matplotlib figure."""
    plt.rcParams.update(PROJECTOR_STYLE)


def _img(x: torch.Tensor) -> np.ndarray:
    x = to_float(x).detach().cpu()
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).clamp(0, 1).numpy()


def show_images(x: torch.Tensor, y=None, class_names=None, ncols: int = 10, title: str | None = None,
                size: float = 1.3):
    """A grid of images ``[N, C, H, W]`` with their labels as titles."""
    n = len(x)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.5 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(_img(x[i]), cmap="gray", vmin=0, vmax=1)
            if y is not None:
                lab = int(y[i])
                ax.set_title(class_names[lab] if class_names and lab >= 0 else str(lab), fontsize=11)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_dataset(ds: Dataset, per_class: int = 1, seed: int = 0):
    """Examples of every class: images for image data, a scatter plot for 2-D points."""
    if ds.kind == "points":
        fig, ax = plt.subplots(figsize=(5.5, 4.5))
        for c in range(ds.num_classes):
            m = ds.y_train == c
            ax.scatter(ds.x_train[m, 0], ds.x_train[m, 1], s=8, label=ds.class_names[c])
        ax.set(title=f"{ds.name}: {len(ds.y_train)} training points", xlabel="$x_1$", ylabel="$x_2$")
        ax.legend()
        return fig
    g = torch.Generator().manual_seed(seed)
    idx = []
    for c in range(ds.num_classes):
        pool = torch.nonzero(ds.y_train == c).flatten()
        idx.append(pool[torch.randperm(len(pool), generator=g)[:per_class]])
    idx = torch.cat(idx)
    return show_images(ds.x_train[idx], ds.y_train[idx], ds.class_names, ncols=ds.num_classes,
                       title=f"{ds.name}: {len(ds.y_train)} training images of {tuple(ds.input_shape)}")


def show_views(x: torch.Tensor, aug, n_strong: int = 3, seed: int | None = 0):
    """A gallery of augmented views: each column one image; rows: original, weak view, ``n_strong`` strong views."""
    if seed is not None:
        torch.manual_seed(seed)
    x = to_float(x)
    rows = [("original", x), ("weak", aug.weak(x))] + [(f"strong #{i + 1}", aug.strong(x)) for i in range(n_strong)]
    n = len(x)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.4 * n + 1.2, 1.4 * len(rows)), squeeze=False)
    for r, (name, v) in enumerate(rows):
        for i in range(n):
            ax = axes[r, i]
            ax.imshow(_img(v[i]), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(name, fontsize=12)
    fig.suptitle("Weak and strong views (each image its own random draw)")
    fig.tight_layout()
    return fig


@torch.no_grad()
def plot_decision_boundary(model, split, ax=None, title: str = "", resolution: int = 200, show_unlabeled=True):
    """Two-moons: the model's predicted class over the plane, the unlabeled points (small, gray) and the labeled
    points (large, coloured, black edge)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5))
    x_all = torch.cat([split.x_lb.cpu(), split.x_ulb.cpu()])
    lo, hi = x_all.min(0).values - 0.5, x_all.max(0).values + 0.5
    gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], resolution), torch.linspace(lo[1], hi[1], resolution),
                            indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1)
    from .evaluation import predict

    p = predict(model, grid)[:, 1].reshape(resolution, resolution)
    ax.contourf(gx, gy, p, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.45)
    ax.contour(gx, gy, p, levels=[0.5], colors="k", linewidths=2)
    if show_unlabeled:
        ax.scatter(split.x_ulb[:, 0].cpu(), split.x_ulb[:, 1].cpu(), s=4, c="0.45", label="unlabeled")
    ax.scatter(split.x_lb[:, 0].cpu(), split.x_lb[:, 1].cpu(), c=split.y_lb.cpu(), cmap="coolwarm", s=120,
               edgecolors="k", linewidths=1.5, label="labeled")
    ax.set(title=title, xlabel="$x_1$", ylabel="$x_2$")
    ax.legend(loc="lower left", fontsize=10)
    return ax


def plot_curves(results: dict, key: str = "test_acc_report", ax=None, title: str = "Test accuracy during training",
                ylabel: str = "test accuracy"):
    """One line per run: ``results`` maps a label to a :class:`~sslteach.train.TrainResult`."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    for label, r in results.items():
        s, v = r.history.series(key)
        ax.plot(s, v, label=label)
    ax.set(title=title, xlabel="training step", ylabel=ylabel)
    ax.legend()
    return ax


def confidence_histogram(conf: torch.Tensor, correct: torch.Tensor, tau: float, ax=None, bins: int = 30):
    """Histogram of the max-softmax confidence on unlabeled data, split into correct / wrong predictions, with the
    threshold ``tau``; the title reports how many pass and how accurate those are."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    conf, correct = conf.cpu().numpy(), correct.cpu().numpy().astype(bool)
    edges = np.linspace(0, 1, bins + 1)
    ax.hist([conf[correct], conf[~correct]], bins=edges, stacked=True, color=["tab:green", "tab:red"],
            label=["pseudo-label correct", "pseudo-label wrong"])
    ax.axvline(tau, color="k", linestyle="--", linewidth=2, label=f"threshold tau = {tau:.2f}")
    passed = conf >= tau
    rate = passed.mean()
    acc = correct[passed].mean() if passed.any() else float("nan")
    quality = f"{acc:.0%} of those correct (quality)" if passed.any() else "no pseudo-label kept"
    ax.set(xlabel="confidence max p(y|x) on unlabeled images", ylabel="number of images",
           title=f"{rate:.0%} pass (quantity), {quality}")
    ax.legend(loc="best")  # away from the bars, wherever the confidences pile up
    return ax, float(rate), float(acc)


def confusion_matrix_plot(y_true, y_pred, num_classes: int, class_names=None, ax=None, title="Pseudo-labels"):
    """Rows: hidden true class; columns: pseudo-label. Counts in each cell."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5.2))
    ax.imshow(cm, cmap="Blues")
    for i in range(num_classes):
        for j in range(num_classes):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=9,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    names = class_names or [str(i) for i in range(num_classes)]
    ax.set_xticks(range(num_classes), names, rotation=45 if len(names[0]) > 2 else 0)
    ax.set_yticks(range(num_classes), names)
    ax.set(xlabel="pseudo-label", ylabel="true class (hidden)", title=title)
    ax.grid(False)
    return cm


def pca_2d(*feature_sets: torch.Tensor) -> list[np.ndarray]:
    """Project several ``[N_i, D]`` feature sets onto the first two principal components of all of them together
    (one shared projection, so the sets can be compared in one picture)."""
    x = torch.cat([f.detach().float().cpu() for f in feature_sets])
    mean = x.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(x - mean, full_matrices=False)
    out, start = [], 0
    for f in feature_sets:
        out.append(((x[start: start + len(f)] - mean) @ v[:2].T).numpy())
        start += len(f)
    return out


def plot_view_pairs(feats_w: torch.Tensor, feats_s: torch.Tensor, y, ax=None, title: str = "", n_lines: int = 60,
                    class_names=None):
    """Features of the weak (dots) and strong (crosses) view of the same images on their shared 2-D PCA, coloured by
    class; grey lines join the two views of ``n_lines`` images. Short lines: invariance; long lines: the views
    occupy different places (equivariance)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    pw, ps = pca_2d(feats_w, feats_s)
    y = torch.as_tensor(y).cpu().numpy()
    cmap = plt.get_cmap("tab10")
    for i in range(min(n_lines, len(y))):
        ax.plot([pw[i, 0], ps[i, 0]], [pw[i, 1], ps[i, 1]], color="0.6", linewidth=0.8, zorder=1)
    ax.scatter(pw[:, 0], pw[:, 1], c=cmap(y % 10), s=18, marker="o", zorder=2)
    ax.scatter(ps[:, 0], ps[:, 1], c=cmap(y % 10), s=28, marker="x", zorder=3)
    ax.scatter([], [], c="k", marker="o", s=18, label="weak view")
    ax.scatter([], [], c="k", marker="x", s=28, label="strong view")
    if class_names:  # one colour per class in the legend
        for c in sorted(set(y.tolist())):
            ax.scatter([], [], color=cmap(c % 10), marker="s", s=30, label=str(class_names[c]))
    ax.set(title=title, xlabel="principal component 1", ylabel="principal component 2")
    ax.legend(loc="best", fontsize=9, ncol=2 if class_names else 1)
    return ax


def show_nearest(x_query: torch.Tensor, x_bank: torch.Tensor, y_bank, sim: torch.Tensor, idx: torch.Tensor,
                 class_names=None, y_query=None, title: str | None = None, size: float = 1.4):
    """Each row: a query image, then its most similar bank images (``idx [N, k]``, similarities ``sim [N, k]``)
    with their labels and similarities."""
    n, k = idx.shape
    fig, axes = plt.subplots(n, k + 1, figsize=(size * (k + 1) + 0.5, size * n + (0.5 if title else 0.2)),
                             squeeze=False)
    name = (lambda c: class_names[int(c)]) if class_names else (lambda c: str(int(c)))  # noqa: E731
    for r in range(n):
        ax = axes[r, 0]
        ax.imshow(_img(x_query[r]), cmap="gray", vmin=0, vmax=1)
        ax.set_title("query" + (f" ({name(y_query[r])})" if y_query is not None else ""), fontsize=11,
                     color="tab:blue")
        for c in range(k):
            j = int(idx[r, c])
            ax = axes[r, c + 1]
            ax.imshow(_img(x_bank[j]), cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{name(y_bank[j])}: {float(sim[r, c]):.2f}", fontsize=11)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---- notebook 08 (CoSSL): per-class numbers on a long-tailed split
def plot_per_class(values: dict, class_names=None, tail=(), counts=None, ax=None, ylabel: str = "recall",
                   title: str = "Per-class test recall", ylim=(0, 1.05)):
    """Grouped bars, one group per class and one bar per entry of ``values`` (a label -> list of per-class numbers,
    e.g. ``result.per_class_accuracy``); the ``tail`` classes are shaded, and ``counts`` (labeled images per
    class), when given, are written under the class names."""
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 4.5))
    labels = list(values)
    n_cls = len(next(iter(values.values()))) if values else 0
    width = 0.8 / max(1, len(labels))
    xs = np.arange(n_cls)
    for c in tail:
        ax.axvspan(c - 0.45, c + 0.45, color="0.9", zorder=0)
    for i, lab in enumerate(labels):
        v = np.asarray(values[lab], dtype=float)
        ax.bar(xs - 0.4 + width * (i + 0.5), v, width, label=lab, zorder=2)
    names = [str(n) for n in (class_names or range(n_cls))]
    if counts is not None:
        names = [f"{n}\n({int(k)})" for n, k in zip(names, counts)]
    ax.set_xticks(xs, names)
    xlabel = "class (labeled images)" if counts is not None else "class"
    ax.set(xlabel=xlabel + ("; shaded: tail" if len(tail) else ""), ylabel=ylabel, title=title, ylim=ylim)
    ax.legend(loc="best", fontsize=11)
    return ax


# --- Shared by notebooks 01 (Pseudo-Label) and 03 (FixMatch): the confidence threshold, quantity vs quality ---
def pct(v, spec: str = ".1%") -> str:
    """A share as a percentage (``format(v, spec)``); "n/a" where nothing was measured (None or NaN, e.g. no
    pseudo-label passed the threshold)."""
    return "n/a" if v is None or v != v else format(v, spec)


def threshold_sweep(probs: torch.Tensor, y_true, taus) -> tuple[list[float], list[float]]:
    """For each threshold ``tau`` in ``taus``: the share of images whose max probability is >= tau (the mask rate:
    quantity), and the accuracy of the argmax pseudo-labels of those images against ``y_true`` (quality; NaN where
    no image passes). ``probs`` is ``[N, C]``; returns ``(mask_rate, pseudo_acc)``, two lists of floats."""
    probs = torch.as_tensor(probs).detach().cpu()
    conf, pred = probs.max(1)
    correct = pred == torch.as_tensor(y_true).cpu()
    rate, acc = [], []
    for t in taus:
        keep = conf >= float(t)
        rate.append(float(keep.float().mean()))
        acc.append(float(correct[keep].float().mean()) if keep.any() else float("nan"))
    return rate, acc


def plot_threshold_sweep(taus, mask_rate, pseudo_acc, tau: float | None = None, ax=None,
                         title: str = "Quantity vs quality as tau moves"):
    """The two curves of :func:`threshold_sweep` against the threshold, with ``tau`` marked."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.8))
    ax.plot(taus, mask_rate, color="tab:blue", label="mask rate: share kept (quantity)")
    ax.plot(taus, pseudo_acc, color="tab:green", label="accuracy of the kept pseudo-labels (quality)")
    if tau is not None:
        ax.axvline(tau, color="k", linestyle="--", label=f"tau = {tau:.2f}")
    ax.set(xlabel="threshold tau", ylabel="fraction of unlabeled images", ylim=(0, 1.03), title=title)
    ax.legend(loc="lower left")
    return ax


# ----------------------------------------------------------------------------- tables and pictures for widgets
def html_table(rows: list[dict], title: str = "", css_class: str = "sslteach-compare-table",
               bold: set | None = None) -> str:
    """An HTML table of ``rows`` (one dict each; the columns in order of first appearance), every cell escaped;
    ``bold`` holds ``(row index, column)`` pairs to embolden. Readable on a projector (14 px). The comparison's
    tables and the training panel's table of runs both use it."""
    import html

    if not rows:
        return "<i>No runs yet.</i>"
    cols = list(dict.fromkeys(c for r in rows for c in r))
    bold = bold or set()
    head = "".join(f"<th style='padding:3px 10px;text-align:left'>{html.escape(str(c))}</th>" for c in cols)
    body = ""
    for i, r in enumerate(rows):
        cells = []
        for c in cols:
            text = html.escape(str(r.get(c, "")))
            cells.append(f"<td style='padding:3px 10px'>{f'<b>{text}</b>' if (i, c) in bold else text}</td>")
        body += "<tr>" + "".join(cells) + "</tr>"
    cap = f"<caption style='text-align:left;font-weight:bold'>{html.escape(title)}</caption>" if title else ""
    return (f"<table class='{css_class}' style='font-size:14px;border-collapse:collapse'>{cap}"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def png_bytes(fig, dpi=None) -> bytes:
    """A figure as PNG bytes (tight bounding box); a pyplot figure is closed afterwards. Safe from a background
    thread for a figure made with ``matplotlib.figure.Figure``."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", **({"dpi": dpi} if dpi else {}))
    plt.close(fig)
    return buf.getvalue()


def figure_png(fig, dpi=80) -> str:
    """A figure as a base64 PNG (for an HTML widget's ``<img src='data:image/png;base64,...'>``)."""
    import base64

    return base64.b64encode(png_bytes(fig, dpi)).decode()
