"""Verdict rules: how a claim's numbers (one value per arm and seed) become ``holds`` / ``does not hold`` / ``mixed``.

Every rule compares per-seed values of the claim's arms — the runs of seed ``s`` share their labeled set, so the
comparison is *paired* — and returns a :class:`Check` with the status, the numbers it rests on and one sentence
written from them. A claim's verdict combines its rules with :class:`AllOf`.

=================  ==========================================================================================
rule               holds / does not hold / mixed
=================  ==========================================================================================
``Ahead``          a - b > ``by`` on every seed / on no seed / on some
``MeanAhead``      mean(a - b) > ``by`` / mean(a - b) <= 0 / in between
``PairedAhead``    mean(a - b) > k sd(a - b) / mean(a - b) < -k sd(a - b) / in between (the difference's spread)
``NotBehind``      mean(a) >= mean(b) - ``tolerance`` / otherwise (two-valued)
``Ratio``          a / b < ``below`` on every seed / on no seed / on some
``Threshold``      a above (or below) a value on every seed / on no seed / on some
``AllOf``          every rule holds / one does not hold / otherwise
=================  ==========================================================================================
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

HOLDS, NOT, MIXED = "holds", "does not hold", "mixed"
STATUSES = (HOLDS, NOT, MIXED)


@dataclass
class Check:
    """One rule's result: ``status``, the rule in words (``asked``), the per-seed numbers and a sentence."""

    status: str
    asked: str
    per_seed: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    sentence: str = ""

    def to_dict(self) -> dict:
        return {"status": self.status, "asked": self.asked, "per_seed": {str(k): v for k, v in self.per_seed.items()},
                "summary": self.summary, "sentence": self.sentence}


def _count_status(passed: list[bool]) -> str:
    if passed and all(passed):
        return HOLDS
    if not any(passed):
        return NOT
    return MIXED


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class Rule:
    """Base class: ``metric`` (``None``: the claim's own) and :meth:`judge`."""

    metric: str | None = None

    def arms(self) -> tuple[str, ...]:
        return tuple(getattr(self, k) for k in ("a", "b") if getattr(self, k, None) is not None)

    def judge(self, values: dict, fmt) -> Check:  # pragma: no cover - abstract
        """``values[arm][seed]`` -> :class:`Check`; ``fmt`` formats a value or a difference of the metric."""
        raise NotImplementedError


def _pairs(values: dict, a: str, b: str) -> dict:
    seeds = [s for s in values[a] if s in values[b] and _finite(values[a][s]) and _finite(values[b][s])]
    return {s: values[a][s] - values[b][s] for s in seeds}


def _amount(fmt, v) -> str:
    """A margin or a tolerance in words: the difference's unit without its sign."""
    return fmt(v, diff=True).lstrip("+")


def _per_seed_text(d: dict, fmt) -> str:
    return " / ".join(fmt(v, diff=True) for v in d.values())


@dataclass(frozen=True)
class Ahead(Rule):
    """Arm ``a`` ahead of arm ``b`` by more than ``by`` on every seed (paired)."""

    a: str
    b: str
    by: float = 0.0
    metric: str | None = None

    def judge(self, values, fmt) -> Check:
        d = _pairs(values, self.a, self.b)
        passed = [v > self.by for v in d.values()]
        asked = f"{self.a} ahead of {self.b} by more than {_amount(fmt, self.by)} on every seed"
        mean = statistics.fmean(d.values()) if d else float("nan")
        text = (f"{self.a} minus {self.b}: {_per_seed_text(d, fmt)} per seed (mean {fmt(mean, diff=True)}); "
                f"more than {_amount(fmt, self.by)} on {sum(passed)} of {len(d)} seeds")
        return Check(_count_status(passed), asked, d, {"mean_difference": mean, "seeds_passing": sum(passed),
                                                       "n": len(d)}, text)


@dataclass(frozen=True)
class MeanAhead(Rule):
    """The mean paired difference ``a - b`` above ``by`` (``does not hold`` when it is not even positive)."""

    a: str
    b: str
    by: float = 0.0
    metric: str | None = None

    def judge(self, values, fmt) -> Check:
        d = _pairs(values, self.a, self.b)
        mean = statistics.fmean(d.values()) if d else float("nan")
        status = HOLDS if mean > self.by else (NOT if not mean > 0 else MIXED)
        asked = f"{self.a} ahead of {self.b} by more than {_amount(fmt, self.by)} on the mean"
        text = f"{self.a} minus {self.b}: mean {fmt(mean, diff=True)} (per seed {_per_seed_text(d, fmt)})"
        return Check(status, asked, d, {"mean_difference": mean, "n": len(d)}, text)


@dataclass(frozen=True)
class PairedAhead(Rule):
    """The paired difference with its spread: mean(a - b) more than ``k`` sample standard deviations above 0."""

    a: str
    b: str
    k: float = 1.0
    metric: str | None = None

    def judge(self, values, fmt) -> Check:
        d = _pairs(values, self.a, self.b)
        vals = list(d.values())
        mean = statistics.fmean(vals) if vals else float("nan")
        sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
        if not _finite(sd):
            status = MIXED
        else:
            status = HOLDS if mean > self.k * sd else (NOT if mean < -self.k * sd else MIXED)
        asked = f"{self.a} minus {self.b} more than {self.k:g} standard deviation(s) of the difference above 0"
        text = f"{self.a} minus {self.b}: mean {fmt(mean, diff=True)}, sd {fmt(sd, diff=True)} over {len(vals)} seeds"
        return Check(status, asked, d, {"mean_difference": mean, "sd_difference": sd, "n": len(vals)}, text)


@dataclass(frozen=True)
class NotBehind(Rule):
    """The mean of ``a`` no more than ``tolerance`` below the mean of ``b`` ("without losing accuracy")."""

    a: str
    b: str
    tolerance: float = 0.0
    metric: str | None = None

    def judge(self, values, fmt) -> Check:
        d = _pairs(values, self.a, self.b)
        mean = statistics.fmean(d.values()) if d else float("nan")
        status = HOLDS if mean >= -self.tolerance else NOT
        asked = f"{self.a} no more than {_amount(fmt, self.tolerance)} behind {self.b} on the mean"
        text = f"{self.a} minus {self.b}: mean {fmt(mean, diff=True)} (per seed {_per_seed_text(d, fmt)})"
        return Check(status, asked, d, {"mean_difference": mean, "n": len(d)}, text)


@dataclass(frozen=True)
class Ratio(Rule):
    """``a / b`` below ``below`` on every seed (e.g. a reconstruction error at most 0.6 of another's)."""

    a: str
    b: str
    below: float = 1.0
    metric: str | None = None

    def judge(self, values, fmt) -> Check:
        seeds = [s for s in values[self.a] if s in values[self.b] and _finite(values[self.a][s])
                 and _finite(values[self.b][s]) and values[self.b][s] != 0]
        r = {s: values[self.a][s] / values[self.b][s] for s in seeds}
        passed = [v < self.below for v in r.values()]
        asked = f"{self.a} below {self.below:g} x {self.b} on every seed"
        text = (f"{self.a} / {self.b}: {' / '.join(f'{v:.2f}' for v in r.values())} per seed; below {self.below:g} "
                f"on {sum(passed)} of {len(r)}")
        return Check(_count_status(passed), asked, r, {"mean_ratio": statistics.fmean(r.values()) if r else
                                                       float("nan"), "seeds_passing": sum(passed), "n": len(r)}, text)


@dataclass(frozen=True)
class Threshold(Rule):
    """Arm ``a``'s value above ``above`` (or below ``below``) on every seed — a mechanism's signature, e.g. the
    entropy of a collapsed prediction near log C."""

    a: str
    above: float | None = None
    below: float | None = None
    metric: str | None = None
    b = None

    def judge(self, values, fmt) -> Check:
        v = {s: x for s, x in values[self.a].items() if _finite(x)}
        side, bound = ("above", self.above) if self.above is not None else ("below", self.below)
        passed = [(x > bound) if side == "above" else (x < bound) for x in v.values()]
        asked = f"{self.a} {side} {fmt(bound)} on every seed"
        text = (f"{self.a}: {' / '.join(fmt(x) for x in v.values())} per seed; {side} {fmt(bound)} on {sum(passed)} "
                f"of {len(v)}")
        return Check(_count_status(passed), asked, v, {"seeds_passing": sum(passed), "n": len(v)}, text)


@dataclass(frozen=True)
class AllOf:
    """Every rule must hold; one that does not hold makes the claim not hold; anything else is mixed."""

    rules: tuple

    def __init__(self, *rules):
        object.__setattr__(self, "rules", tuple(rules))


def combine(checks: list[Check]) -> str:
    """The status of :class:`AllOf` over ``checks``."""
    statuses = [c.status for c in checks]
    if statuses and all(s == HOLDS for s in statuses):
        return HOLDS
    if NOT in statuses:
        return NOT
    return MIXED
