"""The papers' claims, one registry (``sslteach.claims``): every claim rerun at the test suite's claim scale and its
computed verdict asserted (``Claim.expect["test"]``); the verdict rules against hand-made numbers; the notebooks and
the registry use the same claim ids; the command line."""
from __future__ import annotations

import json
import re

import nbformat
import pytest

from sslteach import claims
from sslteach.claims import HOLDS, MIXED, NOT
from sslteach.claims.core import judge
from sslteach.claims.metrics import fmt
from sslteach.claims.rules import Ahead, MeanAhead, NotBehind, PairedAhead, Ratio, Threshold, combine
from sslteach.cli import main

from conftest import NOTEBOOKS, shared_dir


# ------------------------------------------------------------------------------------------ every claim, test scale
@pytest.mark.slow
@pytest.mark.parametrize("claim_id", claims.ids())
def test_claim_verdict_at_the_claim_scale(claim_id, tmp_path_factory):
    """Each claim of the registry at its ``test_regime`` (the notebooks' loop, width 16, B = 16; steps per claim),
    seeds 0 and 1 unless the claim says (2 seeds: the suite's time budget; the notebooks and CLAIMS.md use 3),
    through the run cache shared by the workers (a run two claims share, such as the supervised baseline, is trained
    once). The verdict is the registry's, computed from the numbers; the expected
    one, and the numbers measured when it was set, are in the claim and in CLAIMS.md."""
    claim = claims.get(claim_id)
    result = claims.run(claim_id, seeds=claim.test_seeds, scale="test", cache=shared_dir(tmp_path_factory) / "runs")
    print(result.sentence())
    assert result.verdict.status == claim.expect["test"], result.sentence()


# ------------------------------------------------------------------------------------------ the rules, by hand
def _values(**arms):
    return {k: dict(enumerate(v)) for k, v in arms.items()}


PCT = fmt("share")


def test_ahead_asks_every_seed_and_mean_ahead_the_mean():
    """The same numbers: FixMatch is ahead on the mean (+15 points) but behind on seed 1. "Every seed" must say
    mixed and "the mean" holds — a rule that used the mean where every seed is asked would fail here."""
    v = _values(a=[0.9, 0.8, 0.7], b=[0.6, 0.85, 0.5])
    assert Ahead("a", "b").judge(v, PCT).status == MIXED
    assert MeanAhead("a", "b", 0.05).judge(v, PCT).status == HOLDS
    assert MeanAhead("a", "b", 0.20).judge(v, PCT).status == MIXED  # the right direction, not the margin
    assert Ahead("b", "a").judge(v, PCT).status == MIXED
    assert MeanAhead("b", "a", 0.0).judge(v, PCT).status == NOT
    assert Ahead("a", "b", 0.05).judge(_values(a=[0.9, 0.9], b=[0.5, 0.5]), PCT).status == HOLDS
    assert Ahead("a", "b", 0.05).judge(_values(a=[0.5, 0.52], b=[0.5, 0.5]), PCT).status == NOT
    c = Ahead("a", "b").judge(v, PCT)
    assert c.per_seed == pytest.approx({0: 0.3, 1: -0.05, 2: 0.2}) and "on 2 of 3 seeds" in c.sentence
    assert "+30.0 points / -5.0 points / +20.0 points" in c.sentence


def test_the_other_rules():
    v = _values(a=[0.80, 0.82, 0.81], b=[0.80, 0.86, 0.84])
    assert NotBehind("a", "b", 0.04).judge(v, PCT).status == HOLDS
    assert NotBehind("a", "b", 0.01).judge(v, PCT).status == NOT
    d = _values(a=[0.02, 0.02, 0.03], b=[0.06, 0.05, 0.04])
    assert Ratio("a", "b", below=0.6).judge(d, fmt("value")).status == MIXED  # 0.33, 0.40, 0.75
    assert Ratio("a", "b", below=0.8).judge(d, fmt("value")).status == HOLDS
    e = _values(a=[2.30, 2.29, 1.2])
    assert Threshold("a", above=2.2).judge(e, fmt("nats")).status == MIXED
    assert Threshold("a", below=2.4).judge(e, fmt("nats")).status == HOLDS
    assert Threshold("a", below=1.0).judge(e, fmt("nats")).status == NOT
    p = _values(a=[0.9, 0.8, 0.85], b=[0.7, 0.75, 0.8])  # differences 0.2, 0.05, 0.05: mean 0.1, sd 0.087
    assert PairedAhead("a", "b", k=1).judge(p, PCT).status == HOLDS
    assert PairedAhead("a", "b", k=2).judge(p, PCT).status == MIXED
    assert PairedAhead("b", "a", k=1).judge(p, PCT).status == NOT
    checks = [Ahead("a", "b").judge(p, PCT), Ahead("b", "a").judge(p, PCT)]
    assert combine(checks) == NOT and combine(checks[:1]) == HOLDS


def test_a_verdict_is_computed_from_the_numbers_and_the_right_arms():
    """The claim's verdict follows its numbers (no fixed text): the same claim with the arms' numbers swapped gives
    the opposite verdict, and the sentence carries the numbers."""
    claim = claims.get("fixmatch.strong_view_matters")
    good = {("FixMatch", "accuracy"): {0: 0.86, 1: 0.88, 2: 0.84}, ("weak/weak", "accuracy"): {0: 0.6, 1: 0.62, 2: 0.7}}
    bad = {("FixMatch", "accuracy"): good[("weak/weak", "accuracy")], ("weak/weak", "accuracy"): good[("FixMatch",
                                                                                                        "accuracy")]}
    v1, v2 = judge(claim, good, [0, 1, 2], "test"), judge(claim, bad, [0, 1, 2], "test")
    assert v1.status == HOLDS and v2.status == NOT
    assert "+22.0 points" in v1.sentence() and "-22.0 points" in v2.sentence()
    assert "quick mode" in judge(claim, good, [0], "quick").sentence()


def test_every_claim_is_well_formed():
    seen = set()
    for c in claims.CLAIMS:
        assert c.id not in seen and re.fullmatch(r"[a-z_]+\.[a-z_]+", c.id), c.id
        seen.add(c.id)
        labels = [a.label for a in c.arms]
        assert len(set(labels)) == len(labels), c.id
        for rule in c.rules.rules:
            assert set(rule.arms()) <= set(labels), (c.id, rule)
        assert c.expect["test"] in claims.STATUSES and c.expect["notebook"] in claims.STATUSES, c.id
        assert (NOTEBOOKS / f"{c.notebook}.ipynb").exists(), c.id
        assert c.statement and c.paper and c.where, c.id
        assert claims.regime_for(c, "test").steps <= c.regime.steps


# ------------------------------------------------------------------------------------------ the notebooks
def _claim_ids_in(notebook: str) -> set[str]:
    """The claim ids a notebook's code names as strings (``claims.run("fixmatch.strong_view_matters", ...)``, or in
    a tuple it loops over), if it calls ``claims.run`` at all."""
    nb = nbformat.read(NOTEBOOKS / f"{notebook}.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    if "claims.run(" not in code:
        return set()
    return set(re.findall(r"[\"']([a-z_]+\.[a-z_]+)[\"']", code))


@pytest.mark.parametrize("notebook", sorted({c.notebook for c in claims.CLAIMS}))
def test_the_notebook_runs_its_claims_through_the_registry(notebook):
    """Every claim of a notebook is run in it through ``claims.run`` (and the notebook runs no id the registry does
    not know): the notebook and the test suite run the same claim objects."""
    from sslteach.claims.metrics import REGISTRY

    prefixes = {cid.split(".")[0] for cid in claims.ids()}
    used = {c for c in _claim_ids_in(notebook) if c.split(".")[0] in prefixes and c not in REGISTRY}
    assert used <= set(claims.ids()), used - set(claims.ids())  # a misspelled or retired id
    assert set(claims.ids(notebook)) <= used, set(claims.ids(notebook)) - used


# ------------------------------------------------------------------------------------------ the command line
def test_the_command_line_lists_and_runs_claims(tmp_path, capsys):
    assert main(["claims", "--scale", "test"]) == 0
    out = capsys.readouterr().out
    assert all(c.id in out for c in claims.CLAIMS) and "runs" in out
    path, md = tmp_path / "c.json", tmp_path / "c.md"
    assert main(["claims", "run", "pi_model.beats_supervised", "--scale", "quick", "--seeds", "0", "1",
                 "--out", str(path), "--markdown", str(md)]) == 0
    out = capsys.readouterr().out
    assert "pi_model.beats_supervised:" in out and "quick mode" in out
    doc = json.loads(path.read_text())
    c = doc["claims"][0]
    assert c["seeds"] == [0, 1] and c["verdict"]["status"] in claims.STATUSES and len(c["runs"]["Π-model"]) == 2
    text = md.read_text()
    assert "| `pi_model.beats_supervised` |" in text and "torch" in text


def test_jobs_train_the_claims_side_by_side_into_the_run_cache(tmp_path, monkeypatch, capsys):
    """``--jobs 2``: two worker processes train the claims' runs into the run cache; judging each claim afterwards
    finds every one of its runs there."""
    import argparse

    from sslteach.claims import cli

    monkeypatch.setenv("SSLTEACH_CACHE", str(tmp_path / "cache"))  # the workers inherit it
    ids = ["pi_model.beats_supervised", "mean_teacher.beats_supervised"]  # share the supervised runs
    cli._warm(ids, argparse.Namespace(jobs=2, seeds=[0], scale="quick", device="cpu"))
    out = capsys.readouterr().out
    assert all(f"trained {i}" in out for i in ids), out
    for i in ids:
        r = claims.run(i, seeds=[0], scale="quick", device="cpu")
        assert r.cached == sum(len(v) for v in r.runs.values()), (i, r.cached)


@pytest.mark.parametrize("argv, match", [
    (["claims", "run", "--all", "--jobs", "0"], "--jobs must be between 1 and 16"),
    (["claims", "run", "--all", "--jobs", "2", "--no-cache"], "cannot be combined with --no-cache"),
    (["claims", "run", "nope.claim"], "unknown claim 'nope.claim'"),
    (["claims", "run"], "needs a claim id or --all"),
    (["claims", "run", "pi_model.beats_supervised", "--out", "/no/such/dir/x.json"], "does not exist"),
])
def test_bad_claims_arguments_exit_2_with_one_line(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(match, err[0]), err
