"""The step-cost benchmark (``benchmarks/step_cost.py``) counts and times what it says: the images that pass through
the network in the *timed* steps, and the method's own passes on ready-made images. The timings themselves are
``make bench``'s (benchmarks/RESULTS.md), not asserted here."""
from __future__ import annotations

import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
step_cost = pytest.importorskip("step_cost")


def test_step_cost_counts_the_images_of_the_timed_steps():
    # FixMatch: B labeled weak views, mu*B weak and mu*B strong unlabeled views, all with gradient, nothing without
    per_step, n_grad, n_nograd, r, (batch, ctx) = step_cost.step_time(
        "fixmatch", "digits", dict(width=8, batch_size=4, labels_per_class=2, mu=2), steps=3)
    assert (n_grad, n_nograd) == (4 + 2 * 2 * 4, 0) and per_step > 0
    # Mean Teacher: the teacher's forward has no gradient
    _, n_grad, n_nograd, _, _ = step_cost.step_time(
        "mean_teacher", "digits", dict(width=8, batch_size=4, labels_per_class=2, mu=2), steps=3)
    assert n_nograd > 0 and n_grad > 0


def test_step_cost_counts_openmatch_fixmatch_term_once_it_starts():
    # OpenMatch: 2B labeled + 2 mu B unlabeled views from the start; the FixMatch term on the pseudo-inliers (weak +
    # strong views) only after the warm-up. Counted over the timed steps, with the term on from step 1 the count
    # must exceed the first forward alone (a count taken before the warm-up ended missed it).
    opts = dict(width=8, batch_size=4, labels_per_class=2, mu=2, fix_start=0.1, select_every=2)
    _, n_grad, _, r, _ = step_cost.step_time("openmatch", "digits", opts, steps=10)
    first_forward = 2 * 4 + 2 * 2 * 4
    assert r.method_obj.selections > 0
    assert n_grad > first_forward


def test_own_passes_runs_the_method_step_on_ready_images(monkeypatch):
    per_step, n_grad, _, r, (batch, ctx) = step_cost.step_time(
        "swwae", "digits", dict(batch_size=4, labels_per_class=2), steps=3)
    seen = []
    orig = r.method_obj.step

    def spy(model, b, c):
        x = b.x_lb
        seen.append((c.aug.weak(x) is x, c.aug.strong(x) is x, b is batch))
        return orig(model, b, c)

    monkeypatch.setattr(r.method_obj, "step", spy)
    own = step_cost.own_passes(r, batch, ctx, repeats=2)
    assert own > 0 and seen and all(all(s) for s in seen)
    assert all(p.grad is None for p in r.model.parameters()), "own_passes leaves no gradient behind"


def _fashion_record(method, seed, accuracy, seconds):
    return {"method": method, "label": method, "seed": seed, "accuracy": accuracy, "seconds": seconds,
            "eval_share": 0.02, "curve": [accuracy - 0.05, accuracy - 0.02, accuracy - 0.01],
            "recall": [accuracy] * 10, "threads": 2, "load_at_start": 0.1}


def test_the_fashion_table_reads_its_targets_from_the_measured_numbers():
    """Issue 27's targets are computed from the runs: the time as a multiple of the supervised runs measured beside
    them, the best method's mean, FixMatch's mean, every seed ahead of supervised. Both verdicts can come out."""
    import run as bench

    sup = [_fashion_record("supervised", s, 0.65, 30.0) for s in range(3)]
    good = sup + [_fashion_record("fixmatch", s, 0.76, 150.0) for s in range(3)] + \
        [_fashion_record("flexmatch", s, a, 240.0) for s, a in enumerate((0.80, 0.81, 0.82))]
    table = bench.fashion_table(good)
    assert "| fixmatch | 76.0% | 76.0% / 76.0% / 76.0% | 150 | 5.0 |" in table
    assert "| flexmatch | 81.0% |" in table and "| 240 | 8.0 |" in table
    assert "Best method: **flexmatch**, 81.0% in 8.0x" in table and "(>= 80 % within 10x) is **met**" in table
    assert "(>= 75 % within 6x) is **met**; ahead of supervised on every seed" in table
    assert "Trouser" in table  # the per-class recall table names the classes
    slow = sup + [_fashion_record("fixmatch", s, 0.76, 190.0) for s in range(3)] + \
        [_fashion_record("flexmatch", s, a, 240.0) for s, a in enumerate((0.60, 0.81, 0.82))]
    table = bench.fashion_table(slow)
    assert "FixMatch: 76.0% in 6.3x — the target (>= 75 % within 6x) is **not met**" in table
    assert "Best method: **fixmatch**" in table and "within 10x) is **not met**" in table
    behind = sup + [_fashion_record("fixmatch", s, a, 150.0) for s, a in enumerate((0.64, 0.80, 0.84))]
    assert "not ahead of supervised on every seed" in bench.fashion_table(behind)


def test_interleaved_times_the_step_and_its_references_after_every_burst():
    # FixMatch on digits, 6 steps in bursts of 2: three bursts, each with its own counts and ratios; the counts are
    # the same as a plain timed run's (B + 2 mu B with gradient, nothing without)
    opts = dict(width=8, batch_size=4, labels_per_class=2, mu=2)
    name, n_grad, n_nograd, step, bare, own, lumps, ratios = step_cost.interleaved(
        "fixmatch", "digits", opts, steps=6, burst=2, repeats=1)
    assert name == "fixmatch" and (n_grad, n_nograd) == (4 + 2 * 2 * 4, 0)
    assert len(ratios) == 3 and min(step, bare, own) > 0 and lumps == {}
    assert all(a > 0 and b > 0 for a, b in ratios)
