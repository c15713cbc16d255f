"""Statistics of a comparison: paired differences per seed, the share of the gap to the ceiling a method closes."""
from __future__ import annotations

import statistics

from .table import Table, _finite

def paired_difference(acc_a, acc_b) -> tuple[float, int, float]:
    """Method A against method B on the same labeled sets (seed i of A and seed i of B share a split): the mean
    difference, the number of seeds where A is ahead, and the smallest difference (the worst seed for A)."""
    a, b = [float(v) for v in acc_a], [float(v) for v in acc_b]
    if len(a) != len(b) or not a:
        raise ValueError(f"acc_a and acc_b must be non-empty and of the same length; got {len(a)} and {len(b)}")
    d = [x - y for x, y in zip(a, b)]
    return statistics.fmean(d), sum(x > 0 for x in d), min(d)


def gap_closed(acc: float, acc_supervised: float, acc_ceiling: float) -> float:
    """How much of the gap between the supervised baseline and the all-labels ceiling a method closes:
    (acc - supervised) / (ceiling - supervised); 1 = as good as having every label, 0 = no better than the
    baseline, negative = worse. NaN when the ceiling is not above the baseline."""
    gap = acc_ceiling - acc_supervised
    return (acc - acc_supervised) / gap if gap > 0 else float("nan")


def paired(table: Table, a: str, b: str, metric: str = "accuracy", **where):
    """Method ``a`` against ``b`` in ``table``, paired per seed over the seeds both finished: :func:`paired_difference`
    plus the number of seeds, or ``None`` when they share no seed."""
    sa = {r["seed"]: r[metric] for r in table.where(method=a, **where).ok() if _finite(r.get(metric))}
    sb = {r["seed"]: r[metric] for r in table.where(method=b, **where).ok() if _finite(r.get(metric))}
    seeds = sorted(set(sa) & set(sb))
    if not seeds:
        return None
    return paired_difference([sa[s] for s in seeds], [sb[s] for s in seeds]) + (len(seeds),)


def leader(table: Table, metric: str = "accuracy", **where) -> str | None:
    """The method ahead of every other method of ``table`` on every seed they share (paired), or ``None`` when the
    seeds disagree — a comparison names a winner only when every labeled set agrees. With one seed, "every seed" is
    that seed: say so next to the name."""
    names = table.methods()
    for m in names:
        ok = True
        for other in names:
            if other == m:
                continue
            p = paired(table, m, other, metric, **where)
            if p is None or p[1] < p[3]:  # wins < seeds shared
                ok = False
                break
        if ok and len(names) > 1:
            return m
    return None
