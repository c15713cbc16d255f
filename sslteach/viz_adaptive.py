"""Figures for the adaptive-threshold methods (FlexMatch, FreeMatch, SoftMatch; notebook 11): the per-class
thresholds, mask rates and pseudo-label accuracies over training, from the per-class trace a run keeps
(``result.extra["class_trace"]``, see :class:`sslteach.methods.adaptive.AdaptiveThresholdMethod`), and the threshold
curves as functions of the learning effect / confidence. Readable on a projector (``viz.PROJECTOR_STYLE``).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .methods.adaptive import MAPPINGS, flexmatch_thresholds, softmatch_weight
from .viz import plot_per_class

#: what each key of a trace snapshot means, for axis labels
TRACE_KEYS = {
    "threshold": "class threshold",
    "mask_rate": "share of the class's images used",
    "pseudo_acc": "pseudo-label accuracy (kept images)",
    "weight": "mask rate / mean weight (by pseudo-label)",
    "pseudo_precision": "pseudo-label precision",
}


def class_trace(result_or_trace) -> list[dict]:
    """The per-class trace of a run: a :class:`~sslteach.loop.TrainResult` (its ``extra["class_trace"]``), a method
    object (its ``class_trace``) or the list itself. A run of a method that keeps none gives a one-line error."""
    if isinstance(result_or_trace, list):
        return result_or_trace
    extra = getattr(result_or_trace, "extra", None)
    if isinstance(extra, dict) and "class_trace" in extra:
        return extra["class_trace"]
    trace = getattr(result_or_trace, "class_trace", None)
    if isinstance(trace, list):
        return trace
    name = getattr(result_or_trace, "method", type(result_or_trace).__name__)
    raise ValueError(f"{name} keeps no per-class trace (only flexmatch, freematch and softmatch do)")


def trace_frame(result_or_trace, key: str = "threshold", class_names=None) -> pd.DataFrame:
    """One per-class quantity of the trace as a table: a row per window (index: the step at which it closed), a
    column per class (named by ``class_names`` when given)."""
    if key not in TRACE_KEYS:
        raise ValueError(f"unknown key {key!r}; valid values: {', '.join(TRACE_KEYS)}")
    trace = class_trace(result_or_trace)
    if not trace:
        return pd.DataFrame()
    values = np.array([s[key] for s in trace], dtype=float)
    cols = list(class_names) if class_names is not None else list(range(values.shape[1]))
    return pd.DataFrame(values, index=pd.Index([s["step"] for s in trace], name="step"), columns=cols)


def plot_class_trace(result_or_trace, key: str = "threshold", class_names=None, highlight=(), ax=None,
                     title: str | None = None, smooth: int = 1):
    """Per-class curves of ``key`` over training (one line per class). The ``highlight`` classes are drawn thick
    and labelled, the others thin and grey-ish, so the hard classes stand out; ``smooth`` > 1 averages that many
    windows (the windows are short, the curves noisy)."""
    df = trace_frame(result_or_trace, key, class_names)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.5))
    if smooth > 1 and len(df):
        df = df.rolling(smooth, min_periods=1).mean()
    highlight = {class_names[c] if class_names is not None and isinstance(c, int) else c for c in highlight}
    for col in df.columns:
        strong = col in highlight or not highlight
        ax.plot(df.index, df[col], lw=2.4 if strong else 1.0, alpha=1.0 if strong else 0.45,
                label=str(col) if strong else None)
    ax.set(xlabel="training step", ylabel=TRACE_KEYS[key], title=title or f"Per-class {TRACE_KEYS[key]}")
    if key != "threshold":
        ax.set_ylim(-0.02, 1.02)
    if len(df.columns) and (highlight or len(df.columns) <= 10):
        ax.legend(loc="best", fontsize=10, ncol=2)
    return ax


def plot_class_panels(result_or_trace, keys=("threshold", "mask_rate", "pseudo_acc"), class_names=None,
                      highlight=(), smooth: int = 3, title: str | None = None):
    """:func:`plot_class_trace` for several keys side by side (the picture of the notebook: thresholds, how many
    of each class's images are used, and how many of those are right). Returns the figure."""
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 4.3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        plot_class_trace(result_or_trace, key, class_names, highlight, ax=ax, smooth=smooth,
                         title=TRACE_KEYS[key])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_recall_by_method(results: dict, class_names=None, hard=(), ax=None,
                          title: str = "Per-class test recall"):
    """Grouped bars of ``result.per_class_accuracy`` for each ``label -> result`` (e.g. FixMatch and each adaptive
    method on the same split), the ``hard`` classes shaded (:func:`sslteach.viz.plot_per_class`)."""
    values = {lab: r.per_class_accuracy if hasattr(r, "per_class_accuracy") else list(r) for lab, r in results.items()}
    return plot_per_class(values, class_names=class_names, tail=hard, ax=ax, title=title)


def plot_flexmatch_mappings(tau: float = 0.95, ax=None):
    """FlexMatch's threshold T(c) = M(beta(c)) tau against the learning effect beta, for the convex map
    x / (2 - x) and the ablation's linear and concave ones, with FixMatch's fixed tau for comparison."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.3))
    beta = torch.linspace(0, 1, 101)
    for m in MAPPINGS:
        ax.plot(beta, flexmatch_thresholds(beta, tau, m), label=f"{m}" + (" (FlexMatch)" if m == "convex" else ""))
    ax.axhline(tau, color="k", ls="--", lw=1.2, label=f"FixMatch: tau = {tau:g}")
    ax.set(xlabel=r"learning effect $\beta_t(c)$", ylabel=r"threshold $\mathcal{T}_t(c)$",
           title="FlexMatch's class threshold", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="upper left", fontsize=11)
    return ax


def plot_softmatch_weight(mu_t: float, sigma_t: float, n_sigma: float = 2.0, tau: float | None = 0.95, ax=None):
    """SoftMatch's weight lambda(p) = exp(-(min(p - mu_t, 0))^2 / (2 sigma_t^2 / n_sigma^2)) against the confidence
    p, with FixMatch's hard mask 1[p >= tau] for comparison."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.3))
    p = torch.linspace(0, 1, 201)
    w = softmatch_weight(p, torch.tensor(mu_t), torch.tensor(sigma_t ** 2), n_sigma)
    ax.plot(p, w, label=rf"SoftMatch ($\mu_t$ = {mu_t:.2f}, $\sigma_t$ = {sigma_t:.2f})")
    if tau is not None:
        ax.plot(p, (p >= tau).float(), "k--", lw=1.2, label=f"FixMatch: 1[p >= {tau:g}]")
    ax.axvline(mu_t, color="0.5", lw=1)
    ax.set(xlabel="confidence max p", ylabel="weight of the row", title="SoftMatch's truncated Gaussian",
           xlim=(0, 1), ylim=(-0.02, 1.05))
    ax.legend(loc="upper left", fontsize=11)
    return ax
