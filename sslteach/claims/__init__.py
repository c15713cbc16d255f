"""The papers' claims as one registry: each claim is data (arms, regime, metric, verdict rules), running it trains
its arms on several seeds through the run cache, and its verdict — ``holds``, ``does not hold`` or ``mixed`` — is
computed from the numbers, never chosen without them::

    from sslteach import claims
    result = claims.run("fixmatch.strong_view_matters", seeds=[0, 1, 2])
    result.table(); result.plot(); print(result.sentence())

The notebooks (their claim sections), the test suite (``tests/test_claims.py``, the same claims at a smaller
regime), the command line (``python -m sslteach claims``) and ``CLAIMS.md`` all run these objects.
"""
from __future__ import annotations

from .catalog import BY_ID, CLAIMS
from .core import Arm, Claim, ClaimResult, Regime, Verdict, arm_options, judge, regime_for
from .core import run as _run_claim
from .rules import HOLDS, MIXED, NOT, STATUSES, Ahead, AllOf, MeanAhead, NotBehind, PairedAhead, Ratio, Threshold
from ..utils import check_choice


def get(claim_id: str) -> Claim:
    """The claim ``claim_id``; a one-line error lists the valid ids."""
    check_choice("claim", claim_id, BY_ID)
    return BY_ID[claim_id]


def ids(notebook: str | None = None) -> list[str]:
    """Every claim id, or those of one notebook (``"03_fixmatch"`` or ``"03"``)."""
    return [c.id for c in CLAIMS if notebook is None or c.notebook == notebook or c.notebook[:2] == notebook]


def run(claim_id: str, seeds=(0, 1, 2), scale: str = "notebook", quick: bool = False, cache=None,
        device: str = "auto", **overrides) -> ClaimResult:
    """Run one claim: every arm on every seed at ``scale`` (``"notebook"``: its notebook's regime, the default;
    ``"test"``: the test suite's; ``quick=True``: the notebooks' smoke-test size) with ``overrides`` (loop, split
    or method settings, e.g. a notebook's ``steps``; an arm's own options always win). Returns a
    :class:`ClaimResult` with the runs, the numbers and the computed :class:`Verdict`."""
    return _run_claim(get(claim_id), seeds, "quick" if quick else scale, cache, device, **overrides)


def show(result: ClaimResult, plot: bool = True) -> ClaimResult:
    """In a notebook: the claim's table, its figure (a static figure: the book shows it) and the verdict sentence."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    display(result)
    if plot:
        result.plot()
        plt.show()
    print(result.sentence())
    return result


def estimate(claim_id: str, seeds=(0, 1, 2), scale: str = "notebook", cache=None, **overrides) -> dict:
    """Before running: the claim's distinct runs, how many the run cache holds, and the seconds the others take
    on 2 CPU cores, estimated from each method's measured ``cpu_ms_per_step`` (at the comparison scale: batch 16,
    width 16, digits) scaled by batch and width squared — digits only (``nan`` elsewhere)."""
    from ..compare.registry import DEFAULT_MS_PER_STEP, RUN_OVERHEAD_S, TWO_CORE_SPEEDUP
    from ..methods import METHODS
    from ..train import prepare_run

    claim = get(claim_id)
    regime = regime_for(claim, scale, **overrides)
    keys, cold, todo, hits = set(), 0.0, 0.0, 0
    for arm in claim.arms:
        ms = METHODS[arm.method].cpu_ms_per_step or DEFAULT_MS_PER_STEP
        opts = arm_options(arm, regime)
        factor = opts["batch_size"] / 16 * (opts["width"] / 16) ** 2
        for s in seeds:
            spec = prepare_run(arm.method, regime.dataset, split=regime.split, seed=s, cache=cache,
                               progress=False, **opts)
            key = spec.cache_key()
            if key in keys:
                continue
            keys.add(key)
            cpu = ms * factor * opts["steps"] / 1000 + RUN_OVERHEAD_S
            cold += cpu
            hit = spec.cached()
            hits += hit
            todo += 0.0 if hit else cpu
    if regime.dataset != "digits":
        cold = todo = float("nan")
    return {"runs": len(keys), "cached": hits, "seconds_2_cores_cold": cold / TWO_CORE_SPEEDUP,
            "seconds_2_cores": todo / TWO_CORE_SPEEDUP}


__all__ = ["Ahead", "AllOf", "Arm", "CLAIMS", "Claim", "ClaimResult", "HOLDS", "MIXED", "MeanAhead", "NOT",
           "NotBehind", "PairedAhead", "Ratio", "Regime", "STATUSES", "Threshold", "Verdict", "estimate", "get",
           "ids", "judge", "run", "show"]
