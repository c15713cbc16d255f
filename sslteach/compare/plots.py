"""The comparison's figures: bars per method with their seeds, accuracy against compute and against the label
budget, the long-tailed and open-set views, the map of the methods and the comparison's pipeline."""
from __future__ import annotations

from typing import Iterable

import matplotlib.pyplot as plt
import numpy as np

from ..viz import figure_png  # noqa: F401 - re-exported: compare.figure_png
from .registry import FAMILY_COLORS, color, info, methods
from .table import METRIC_LABELS, Table, _finite

def _ceiling_value(ceiling) -> float | None:
    if ceiling is None:
        return None
    if isinstance(ceiling, Table):
        v = ceiling.mean("accuracy")
        return v if _finite(v) else None
    return float(ceiling)


def plot_bars(table: Table, metric: str = "accuracy", baseline: str = "supervised", ceiling=None, ax=None,
              title: str | None = None, sort: bool = True):
    """One horizontal bar per method: the mean over seeds, a dot per seed, the min-max range as an error bar;
    the baseline's mean as a dashed line (its seed range shaded) and the all-labels ceiling (a number or the
    :func:`ceiling` table) as a dotted line. Bars are coloured by family (:data:`METHOD_INFO`)."""
    stats = [s for s in table.summary(metric) if s["n"]]
    if sort:
        stats.sort(key=lambda s: s["mean"])
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 0.45 * len(stats) + 1.8))
    ys = np.arange(len(stats))
    for y, s in zip(ys, stats):
        c = color(s["method"])
        ax.barh(y, s["mean"], color=c, alpha=0.75, zorder=2)
        ax.errorbar(s["mean"], y, xerr=[[s["mean"] - s["min"]], [s["max"] - s["mean"]]], color="black",
                    capsize=4, lw=1.5, zorder=3)
        vals = list(s["by_seed"].values())
        ax.scatter(vals, [y] * len(vals), color="black", s=18, zorder=4)
    ax.set_yticks(ys, [s["method"] for s in stats])
    base = next((s for s in stats if s["method"] == baseline), None)
    if base is not None:
        ax.axvline(base["mean"], color="black", ls="--", lw=1.5, label=f"{baseline} (mean)", zorder=1)
        ax.axvspan(base["min"], base["max"], color="0.85", zorder=0, label=f"{baseline} (seed range)")
    top = _ceiling_value(ceiling)
    if top is not None and metric in ("accuracy", "balanced_accuracy"):
        ax.axvline(top, color="black", ls=":", lw=2, label="all labels (ceiling)")
    lo = min([s["min"] for s in stats] + ([top] if top else [])) if stats else 0
    ax.set_xlim(max(0.0, lo - 0.1) if metric != "auroc" else max(0.0, lo - 0.05), 1.0)
    label = METRIC_LABELS.get(metric, metric)
    ax.set_xlabel(f"{label} (bar: mean; dots: seeds; whiskers: min-max)")
    ax.set_title(title or f"{label} of every method")
    ax.legend(loc="lower right", fontsize=11)
    ax.grid(axis="y", alpha=0)
    return ax


def plot_compute(table: Table, metric: str = "accuracy", baseline: str = "supervised", ceiling=None, ax=None,
                 title: str | None = None):
    """Accuracy against training seconds per run (mean over seeds, log scale; the seed range as error bars):
    the compute trade-off. Cached runs keep the time they took when they were trained."""
    stats = [s for s in table.summary(metric) if s["n"] and _finite(s["wall_seconds"])]
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 6))
    for s in stats:
        ax.errorbar(s["wall_seconds"], s["mean"], yerr=[[s["mean"] - s["min"]], [s["max"] - s["mean"]]], fmt="o",
                    color=color(s["method"]), ms=9, capsize=3)
        ax.annotate(s["method"], (s["wall_seconds"], s["mean"]), textcoords="offset points", xytext=(6, 4),
                    fontsize=11)
    top = _ceiling_value(ceiling)
    if top is not None:
        ax.axhline(top, color="black", ls=":", lw=2, label="all labels (ceiling)")
    base = next((s for s in stats if s["method"] == baseline), None)
    if base is not None:
        ax.axhline(base["mean"], color="black", ls="--", lw=1.5, label=f"{baseline}")
    ax.set_xscale("log")
    ax.set_xlabel("training time per run, seconds (log scale)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(title or "Accuracy against compute")
    _family_legend(ax, [s["method"] for s in stats], extra=True)
    return ax


def plot_budget(table: Table, metric: str = "accuracy", ceiling=None, ax=None, title: str | None = None):
    """Accuracy against labels per class (log scale), one line per method: the mean over seeds with the seed
    range shaded."""
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 6))
    budgets = sorted({r["labels_per_class"] for r in table.ok() if r.get("labels_per_class") is not None})
    for m in table.methods():
        stats = sorted((s for s in table.where(method=m).summary(metric, by=("labels_per_class",)) if s["n"]),
                       key=lambda s: s["labels_per_class"])
        if not stats:
            continue
        xs = [s["labels_per_class"] for s in stats]
        c = color(m) if m != "supervised" else "black"
        ax.plot(xs, [s["mean"] for s in stats], marker="o", color=c, label=m, ls="--" if m == "supervised" else "-")
        ax.fill_between(xs, [s["min"] for s in stats], [s["max"] for s in stats], color=c, alpha=0.12)
    top = _ceiling_value(ceiling)
    if top is not None:
        ax.axhline(top, color="black", ls=":", lw=2, label="all labels (ceiling)")
    ax.set_xscale("log", base=2)
    if budgets:
        ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_xlabel("labeled images per class (log scale)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(title or "Accuracy against the label budget")
    ax.legend(fontsize=11, loc="lower right")
    return ax


def plot_long_tailed(table: Table, ax=None, title: str | None = None):
    """Balanced accuracy (mean recall over classes) and tail-class accuracy, side by side for every method, with
    the seeds as dots."""
    stats_b = {s["method"]: s for s in table.summary("balanced_accuracy") if s["n"]}
    stats_t = {s["method"]: s for s in table.summary("tail_accuracy") if s["n"]}
    names = sorted(stats_b, key=lambda m: stats_b[m]["mean"])
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 0.5 * len(names) + 1.8))
    ys = np.arange(len(names))
    for y, m in zip(ys, names):
        for dy, st, alpha, lab in ((0.2, stats_b, 0.8, "balanced accuracy"), (-0.2, stats_t, 0.4,
                                                                              "tail-class accuracy")):
            s = st.get(m)
            if s is None:
                continue
            ax.barh(y + dy, s["mean"], height=0.38, color=color(m), alpha=alpha, zorder=2,
                    hatch="" if dy > 0 else "//", edgecolor="white" if dy > 0 else "black")
            vals = list(s["by_seed"].values())
            ax.scatter(vals, [y + dy] * len(vals), color="black", s=12, zorder=4)
    if "supervised" in stats_t:
        ax.axvline(stats_t["supervised"]["mean"], color="black", ls="--", lw=1.5, label="supervised, tail")
    ax.set_yticks(ys, names)
    ax.set_xlim(0, 1)
    from matplotlib.patches import Patch

    handles = [Patch(facecolor="0.5", alpha=0.8, label="balanced accuracy (upper bar)"),
               Patch(facecolor="0.8", hatch="//", edgecolor="black", label="tail-class accuracy (lower bar)")]
    handles += ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="lower right", fontsize=11)
    ax.set_xlabel("accuracy on the balanced test set")
    ax.set_title(title or "Long-tailed split")
    ax.grid(axis="y", alpha=0)
    return ax


def plot_open_set(table: Table, ax=None, title: str | None = None):
    """Closed-set accuracy (known classes) against outlier AUROC, one point per method (mean over seeds): the best
    methods are up and to the right; AUROC 0.5 is a coin flip."""
    acc = {s["method"]: s for s in table.summary("accuracy") if s["n"]}
    au = {s["method"]: s for s in table.summary("auroc") if s["n"]}
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 6))
    for m in acc:
        if m not in au:
            continue
        ax.errorbar(acc[m]["mean"], au[m]["mean"], xerr=[[acc[m]["mean"] - acc[m]["min"]],
                                                         [acc[m]["max"] - acc[m]["mean"]]],
                    yerr=[[au[m]["mean"] - au[m]["min"]], [au[m]["max"] - au[m]["mean"]]], fmt="o", ms=9,
                    color=color(m), capsize=3)
        ax.annotate(m, (acc[m]["mean"], au[m]["mean"]), textcoords="offset points", xytext=(6, 4), fontsize=11)
    ax.axhline(0.5, color="black", ls=":", lw=1.5, label="AUROC 0.5 (chance)")
    ax.set_xlabel("closed-set accuracy (known classes)")
    ax.set_ylabel("outlier AUROC (unknown classes)")
    ax.set_title(title or "Open-set split")
    ax.legend(loc="lower right", fontsize=11)
    return ax


def _family_legend(ax, names, extra=False):
    from matplotlib.lines import Line2D

    fams = []
    for m in names:
        f = info(m)["family"]
        if f not in fams:
            fams.append(f)
    handles = [Line2D([], [], marker="o", ls="", color=FAMILY_COLORS.get(f, FAMILY_COLORS["other"]), label=f,
                      ms=9) for f in fams]
    if extra:
        handles += ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=10, loc="lower right")


def plot_method_map(names: Iterable[str] | None = None, ax=None):
    """The methods of the collection by year and family (the notebook each comes from in brackets)."""
    names = methods() if names is None else list(names)
    fams = [f for f in FAMILY_COLORS if any(info(m)["family"] == f for m in names)]
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 0.7 * len(fams) + 1.5))
    placed: dict[tuple, int] = {}
    for m in names:
        d = info(m)
        if d["year"] is None:
            continue
        y = fams.index(d["family"])
        k = placed.get((d["year"], y), 0)
        placed[(d["year"], y)] = k + 1
        ax.scatter(d["year"], y, s=120, color=color(m), zorder=3)
        ax.annotate(f"{m} ({d['notebook']})" if d["notebook"] else m, (d["year"], y), textcoords="offset points",
                    xytext=(8, 6 - 16 * k), fontsize=11)
    ax.set_yticks(range(len(fams)), fams)
    years = [info(m)["year"] for m in names if info(m)["year"]]
    if years:
        ax.set_xlim(min(years) - 1, max(years) + 2)
    ax.set_xlabel("year of the paper")
    ax.set_title("The methods of the collection (notebook in brackets)")
    return ax


def plot_pipeline(ax=None):
    """The comparison as a pipeline: registry -> grid -> train() <-> run cache -> table -> figures and summary."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    if ax is None:
        _, ax = plt.subplots(figsize=(13, 3.6))
    boxes = {"registry": (0.02, 0.55, "registry\nsslteach.METHODS"),
             "grid": (0.22, 0.55, "grid\nmethods x seeds x budgets\n(or a realistic split)"),
             "train": (0.45, 0.55, "train(...)\nsame steps, batch,\nlabeled split per seed"),
             "cache": (0.45, 0.05, "run cache\n(hit: well under a second)"),
             "table": (0.68, 0.55, "tidy table\none row per run"),
             "out": (0.86, 0.55, "figures and\n'which method when'")}
    w, h = 0.15, 0.36
    for x, y, text in boxes.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.01", fc="#eef3fb", ec="#1f77b4", lw=1.5))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=11)

    def arrow(a, b, dy=0.0, style="-|>"):
        xa, ya, _ = boxes[a]
        xb, yb, _ = boxes[b]
        if ya == yb:
            p, q = (xa + w, ya + h / 2 + dy), (xb, yb + h / 2 + dy)
        else:
            p, q = (xa + w / 2 + dy, ya), (xb + w / 2 + dy, yb + h)
        ax.add_patch(FancyArrowPatch(p, q, arrowstyle=style, mutation_scale=16, lw=1.5, color="0.3"))

    arrow("registry", "grid")
    arrow("grid", "train")
    arrow("train", "table")
    arrow("table", "out")
    arrow("train", "cache", dy=-0.03)
    arrow("cache", "train", dy=0.03)
    ax.text(0.545, 0.46, "store / look up", fontsize=10, color="0.3")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1)
    ax.axis("off")
    return ax
