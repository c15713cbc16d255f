"""A claim as data, and running it: arms x seeds through :func:`sslteach.train` (and so the run cache), the numbers
per arm and seed, and a :class:`Verdict` computed from them by the claim's rules."""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field, replace

from . import metrics as M
from .rules import HOLDS, MIXED, NOT, AllOf, Check, combine


@dataclass(frozen=True)
class Arm:
    """One arm of a claim: ``label`` (as the verdict names it), the method and its options (method knobs and loop
    settings that differ from the claim's regime); ``metrics`` maps a metric to this arm's own reading of it (e.g.
    the FixMatch arm read off a cRT run's encoder: ``{"tail_accuracy": "cossl.encoder_tail_accuracy"}``; Mean
    Teacher's student read off the teacher's run)."""

    label: str
    method: str
    options: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    def metric_for(self, name: str) -> str:
        """The metric this arm reports for the claim's ``name`` (its own reading of it, if it has one)."""
        return self.metrics.get(name, name)


@dataclass(frozen=True)
class Regime:
    """Where a claim is rerun: dataset, split, label budget and loop settings (``options``: anything else that
    :func:`sslteach.train` takes, e.g. ``imbalance_ratio``, ``mu``, ``eval_every``)."""

    dataset: str = "digits"
    split: str = "balanced"
    labels_per_class: int = 2
    steps: int = 1000
    batch_size: int = 32
    width: int = 16
    options: dict = field(default_factory=dict)

    def with_(self, **changes) -> "Regime":
        """A copy with some fields changed; names that are not fields go into ``options``."""
        own = {k: v for k, v in changes.items() if k in ("dataset", "split", "labels_per_class", "steps",
                                                          "batch_size", "width")}
        rest = {k: v for k, v in changes.items() if k not in own}
        return replace(self, **own, options={**self.options, **rest})

    def quick(self) -> "Regime":
        """The notebooks' smoke-test size: a few steps, a narrow network, a small evaluation."""
        return self.with_(steps=min(self.steps, 40), batch_size=min(self.batch_size, 16), width=min(self.width, 8),
                          eval_every=10, eval_size=300)

    def describe(self) -> str:
        split = {"balanced": f"{self.labels_per_class} labels/class"}.get(self.split, self.split.replace("_", "-"))
        extra = ", ".join(f"{k} {v}" for k, v in self.options.items() if k not in ("eval_every", "eval_size"))
        return (f"{self.dataset}, {split}, {self.steps} steps, B {self.batch_size}, width {self.width}"
                + (f", {extra}" if extra else ""))


@dataclass(frozen=True)
class Claim:
    """A paper's claim: ``id`` (``paper.what``), ``paper`` and ``where`` (section / table), ``statement`` (the claim
    in our words), the ``arms``, the ``regime`` of the notebook (and of ``CLAIMS.md``) and the smaller
    ``test_regime`` of the test suite, the ``metric``, the ``rules`` (all must hold) and ``expect``: the verdict
    the test suite asserts at ``test_regime`` (``{"test": "holds"}``) and the one the notebook's prose expects at
    its own regime."""

    id: str
    paper: str
    where: str
    statement: str
    arms: tuple
    regime: Regime
    test_regime: Regime
    metric: str
    rules: AllOf
    expect: dict
    notebook: str
    note: str = ""
    test_seeds: tuple = (0, 1)

    def arm(self, label: str) -> Arm:
        return next(a for a in self.arms if a.label == label)

    def measured(self) -> list[tuple[str, str]]:
        """Every ``(arm label, metric name)`` a rule reads, in order."""
        out = []
        for rule in self.rules.rules:
            for label in rule.arms():
                key = (label, self.arm(label).metric_for(rule.metric or self.metric))
                if key not in out:
                    out.append(key)
        return out


def _fmt(c: Check | None) -> str:
    return c.sentence if c is not None else ""


@dataclass
class Verdict:
    """``status`` (``holds`` / ``does not hold`` / ``mixed``), each rule's :class:`~sslteach.claims.rules.Check`,
    the seeds and whether the runs were quick-mode smoke tests."""

    claim_id: str
    status: str
    checks: list
    seeds: list
    scale: str

    def sentence(self) -> str:
        """The verdict in one paragraph, every number taken from the checks."""
        head = (f"{self.claim_id}: {self.status.upper()} at this scale ({len(self.seeds)} seed(s): "
                f"{', '.join(map(str, self.seeds))})")
        if self.scale == "quick":
            head += " - quick mode: a smoke test, the numbers say nothing about the claim"
        return head + ". " + " ".join(f"[{c.status}] {c.asked}: {_fmt(c)}." for c in self.checks)

    def to_dict(self) -> dict:
        return {"claim": self.claim_id, "status": self.status, "seeds": self.seeds, "scale": self.scale,
                "checks": [c.to_dict() for c in self.checks]}


@dataclass
class ClaimResult:
    """What :func:`run` returns: the claim, its runs (``{arm label: [TrainResult per seed]}``), the values
    (``{(arm, metric): {seed: value}}``), the :class:`Verdict` and the seconds it took (runs from the cache take
    about none)."""

    claim: Claim
    regime: Regime
    scale: str
    seeds: list
    runs: dict
    values: dict
    verdict: Verdict
    seconds: float
    cached: int = 0

    def sentence(self) -> str:
        return self.verdict.sentence()

    def rows(self) -> list[dict]:
        """One row per (arm, metric): the per-seed values and their mean and sample standard deviation."""
        out = []
        for (label, name), vals in self.values.items():
            m = M.get(name)
            f = M.fmt(m.kind)
            finite = [v for v in vals.values() if isinstance(v, float) and math.isfinite(v)]
            row = {"arm": label, "method": self.claim.arm(label).method, "metric": m.label}
            row.update({f"seed {s}": f(v) for s, v in vals.items()})
            row["mean"] = f(statistics.fmean(finite)) if finite else "n/a"
            row["sd"] = f(statistics.stdev(finite), diff=True) if len(finite) > 1 else "-"
            out.append(row)
        return out

    def table(self):
        """The rows as a pandas ``DataFrame`` (a notebook displays it)."""
        import pandas as pd

        return pd.DataFrame(self.rows())

    def _repr_html_(self) -> str:
        from ..viz import html_table

        return html_table(self.rows(), title=f"{self.claim.id} ({self.regime.describe()})", css_class="sslteach-claim")

    def plot(self, ax=None):
        """Every (arm, metric) with its seeds as dots joined per seed (paired), the mean as a bar."""
        from .plots import plot_claim

        return plot_claim(self, ax)

    def summary(self) -> dict:
        """JSON-ready, for a notebook's results file: the verdict, the seeds and every (arm, metric)'s values per
        seed (``None`` where a value is undefined)."""
        clean = (lambda v: v if isinstance(v, float) and math.isfinite(v) else None)
        return {"status": self.verdict.status, "seeds": self.seeds, "scale": self.scale,
                "values": {f"{a} | {m}": [clean(v) for v in vals.values()] for (a, m), vals in self.values.items()},
                "checks": [c.status for c in self.verdict.checks]}

    def to_dict(self) -> dict:
        return {"claim": self.claim.id, "paper": self.claim.paper, "where": self.claim.where,
                "statement": self.claim.statement, "regime": asdict(self.regime), "scale": self.scale,
                "seeds": self.seeds, "seconds": self.seconds, "cached_runs": self.cached,
                "values": [{"arm": a, "metric": m, "per_seed": {str(s): v for s, v in vals.items()}}
                           for (a, m), vals in self.values.items()],
                "runs": {a: [r.to_dict() | {"history": None} for r in rs] for a, rs in self.runs.items()},
                "verdict": self.verdict.to_dict()}


def judge(claim: Claim, values: dict, seeds: list, scale: str) -> Verdict:
    """The verdict of ``claim`` from ``values[(arm, metric)][seed]``."""
    checks = []
    for rule in claim.rules.rules:
        by_arm = {}
        for label in rule.arms():
            by_arm[label] = values[(label, claim.arm(label).metric_for(rule.metric or claim.metric))]
        kind = M.get(rule.metric or claim.metric).kind
        checks.append(rule.judge(by_arm, M.fmt(kind)))
    return Verdict(claim.id, combine(checks), checks, list(seeds), scale)


def regime_for(claim: Claim, scale: str, **overrides) -> Regime:
    """The regime of ``scale`` (``"notebook"``, ``"test"`` or ``"quick"``) with ``overrides`` (notebook
    parameters such as ``steps`` or ``dataset``) applied."""
    if scale not in ("notebook", "test", "quick"):
        raise ValueError(f"scale must be one of notebook, test, quick; got {scale!r}")
    base = claim.test_regime if scale == "test" else claim.regime
    base = base.with_(**overrides) if overrides else base
    return base.quick() if scale == "quick" else base


def arm_options(arm: Arm, regime: Regime) -> dict:
    """``train(...)`` keyword arguments of one arm in ``regime``: the regime's settings, then the arm's own (which
    win), with the regime's method knobs kept only where the arm's method has them."""
    from dataclasses import fields as dc_fields

    from ..loop import TrainConfig
    from ..methods import METHODS
    from ..train import SPLIT_OPTIONS

    known = ({f.name for f in dc_fields(TrainConfig)} | set(SPLIT_OPTIONS)
             | {f.name for f in dc_fields(METHODS[arm.method].Config)})
    opts = {"labels_per_class": regime.labels_per_class, "steps": regime.steps, "batch_size": regime.batch_size,
            "width": regime.width, **{k: v for k, v in regime.options.items() if k in known}}
    return {**opts, **arm.options}


def run(claim: Claim, seeds=(0, 1, 2), scale: str = "notebook", cache=None, device: str = "auto",
        **overrides) -> ClaimResult:
    """Train every arm of ``claim`` on every seed (seed ``s``: labeled set ``s``, the same for every arm) at
    ``scale``, measure the metrics and judge. Runs go through the run cache (``cache`` as in
    :func:`sslteach.train`), so a run two claims share is trained once."""
    from ..train import prepare_run, run as run_spec

    regime = regime_for(claim, scale, **overrides)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds: give at least one seed, e.g. [0, 1, 2]")
    t0, cached = time.perf_counter(), 0
    runs: dict[str, list] = {}
    done: dict[str, object] = {}  # two arms read off the same run (teacher and student): trained once
    for arm in claim.arms:
        runs[arm.label] = []
        for s in seeds:
            spec = prepare_run(arm.method, regime.dataset, split=regime.split, seed=s, cache=cache, device=device,
                               progress=False, **arm_options(arm, regime))
            key = spec.cache_key()
            if key not in done:
                cached += spec.cached()
                done[key] = run_spec(spec)
            runs[arm.label].append(done[key])
    values = {}
    for (label, name) in claim.measured():
        values[(label, name)] = {s: M.value(name, r) for s, r in zip(seeds, runs[label])}
    verdict = judge(claim, values, seeds, scale)
    return ClaimResult(claim, regime, scale, seeds, runs, values, verdict, time.perf_counter() - t0, cached)


__all__ = ["Arm", "Claim", "ClaimResult", "HOLDS", "MIXED", "NOT", "Regime", "Verdict", "judge", "run"]
