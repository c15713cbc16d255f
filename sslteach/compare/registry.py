"""The comparison's view of the method registry: which methods, their facts (year, family, notebook, what each was
designed for and builds on, the cost of a step) and their colours — all read from the :class:`~sslteach.methods.
base.Method` classes, so a newly registered method joins every comparison without a line here."""
from __future__ import annotations

import warnings
from typing import Iterable

from ..methods import METHODS
from ..utils import check_choice

#: The scale of the comparison: the test suite's claim scale (``tests/conftest.py``: width 16, labeled batch 16,
#: evaluation every 100 steps) with 500 steps, at which the claim tests of notebooks 01-04 measured their margins.
COMPARISON_SCALE = {"steps": 500, "width": 16, "batch_size": 16, "eval_every": 100}

#: The assumed one-thread CPU milliseconds per step of a method whose ``cpu_ms_per_step`` is not measured.
DEFAULT_MS_PER_STEP = 25.0
#: Per-run CPU seconds besides the steps (building the split, the model and the method's state, the evaluations).
RUN_OVERHEAD_S = 0.3
#: Two cores against one thread for these small networks: the collection's convention for time estimates.
TWO_CORE_SPEEDUP = 1.7

FAMILY_COLORS = {"baseline": "#7f7f7f", "pseudo-labels": "#ff7f0e", "consistency": "#1f77b4",
                 "pseudo-labels + consistency": "#d62728", "similarity to labeled images": "#9467bd",
                 "reconstruction": "#2ca02c", "long-tailed data": "#8c564b", "open-set data": "#e377c2",
                 "adaptive thresholds": "#bcbd22", "other": "#17becf"}


def method_info() -> dict[str, dict]:
    """``{method: {"notebook", "year", "family"[, "designed_for"]}}`` for every registered method (the notebook as
    its two-digit number), read from the method classes."""
    out = {}
    for name, cls in METHODS.items():
        d = {"notebook": (cls.notebook or "")[:2], "year": cls.year, "family": cls.family}
        if cls.designed_for != "balanced":
            d["designed_for"] = cls.designed_for
        out[name] = d
    return out


def cpu_ms_per_step() -> dict[str, float]:
    """One-thread CPU milliseconds per training step at :data:`COMPARISON_SCALE` on digits (balanced split, 2
    labels per class), from each method's ``cpu_ms_per_step``: ``time.process_time`` of an 80-step run minus a
    20-step run, divided by 60, on the project's 2-core x86 development machine (about +-20 %). Used only to
    *estimate* the cost of a grid before it runs; the long-tailed and open-set splits cost within ~10 % of these."""
    return {name: cls.cpu_ms_per_step for name, cls in METHODS.items() if cls.cpu_ms_per_step is not None}


def methods(include: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> list[str]:
    """The registered methods, the supervised baseline first, in registry order: every method the package knows,
    so a newly registered one joins every comparison. ``include`` keeps only those (in the registry's order;
    unknown names raise), ``exclude`` drops some."""
    names = list(METHODS)
    if "supervised" in names:
        names.remove("supervised")
        names.insert(0, "supervised")
    if include is not None:
        include = list(include)
        for m in include:
            check_choice("method", m, METHODS)
        names = [m for m in names if m in include]
    return [m for m in names if m not in set(exclude)]


def resolve_methods(spec, default: Iterable[str] | None = None) -> list[str]:
    """A notebook parameter to a list of methods: ``[]`` -> ``default`` (every method when ``None``),
    ``["all"]`` -> every registered method, otherwise the names that are registered (others are skipped with a
    warning: a notebook written for a method that has not landed yet still runs)."""
    spec = list(spec or [])
    if not spec:
        return methods() if default is None else resolve_methods(list(default))
    if spec == ["all"]:
        return methods()
    missing = [m for m in spec if m not in METHODS]
    if missing:
        warnings.warn(f"not registered (skipped): {', '.join(missing)}", stacklevel=2)
    return methods(include=[m for m in spec if m in METHODS])


def info(method: str) -> dict:
    """The facts of ``method`` (:func:`method_info`) with its summary, paper, title and the method it builds on
    (``family`` "other" for a name that is not registered)."""
    d = {"notebook": "", "year": None, "family": "other", **method_info().get(method, {})}
    cls = METHODS.get(method)
    d["summary"] = getattr(cls, "summary", "") if cls else ""
    d["paper"] = getattr(cls, "paper", "") if cls else ""
    d["title"] = getattr(cls, "title", "") or method if cls else method
    d["builds_on"] = getattr(cls, "builds_on", None) if cls else None
    return d


def color(method: str) -> str:
    return FAMILY_COLORS.get(info(method)["family"], FAMILY_COLORS["other"])
