"""A claim's picture: each arm's value per seed, the seeds of two arms joined (a paired comparison), the mean."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt

from . import metrics as M


def plot_claim(result, ax=None):
    """One panel per metric the claim reads: a bar per arm (the mean over seeds), a dot per seed, and a grey line
    joining the seeds' values across the arms (the same labeled set). The title carries the verdict."""
    by_metric: dict[str, list] = {}
    for (label, name), vals in result.values.items():
        by_metric.setdefault(name, []).append((label, vals))
    n = len(by_metric)
    if ax is None:
        _, axes = plt.subplots(1, n, figsize=(max(5.5, 4.2 * n), 4.2), squeeze=False)
        axes = list(axes[0])
    else:
        axes = [ax] * n if n == 1 else list(ax)
    for a, (name, arms) in zip(axes, by_metric.items()):
        m = M.get(name)
        scale = 100 if m.kind == "share" else 1
        seeds = sorted({s for _, vals in arms for s in vals})
        for s in seeds:
            ys = [vals.get(s, math.nan) * scale for _, vals in arms]
            a.plot(range(len(arms)), ys, color="0.6", lw=1, zorder=1)
        for i, (label, vals) in enumerate(arms):
            ys = [v * scale for v in vals.values() if isinstance(v, float) and math.isfinite(v)]
            if ys:
                a.bar(i, sum(ys) / len(ys), color=f"C{i}", alpha=0.35, zorder=0)
                a.scatter([i] * len(ys), ys, color=f"C{i}", s=36, zorder=2)
        a.set_xticks(range(len(arms)), [label for label, _ in arms])
        a.set_ylabel(m.label + (" (%)" if m.kind == "share" else ""))
        a.grid(axis="x", alpha=0)
    fig = axes[0].figure
    fig.suptitle(f"{result.claim.id}: {result.verdict.status} ({len(result.seeds)} seed(s))", fontsize=13)
    fig.tight_layout()
    return axes[0] if n == 1 else axes
