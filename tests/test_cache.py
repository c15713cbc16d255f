"""The run cache (issue 16): a hit is the stored run; anything that decides a result changes the key; damaged or
foreign files are reported and retrained, never trusted or unpickled; concurrent writers do not corrupt it; every
registered method's learned state survives the round trip."""
from __future__ import annotations

import json
import multiprocessing as mp
import time
import warnings

import pytest
import torch

import sslteach
from sslteach import cache as cache_mod
from sslteach import train
from sslteach.cache import RunCache, make_key
from sslteach.data import balanced_split
from sslteach.evaluation import predict_logits
from sslteach.methods import METHODS

FAST = dict(steps=12, eval_every=6, batch_size=8, progress=False)
# the few settings each method needs to run a 12-step smoke run (its own defaults otherwise)
SMOKE = {"noisy_student": {"rounds": 1}}


def _strip(records):
    return [{k: v for k, v in r.items() if k != "time"} for r in records]


def test_hit_returns_the_stored_run_fast_and_says_so(tmp_path):
    a = train("fixmatch", cache=tmp_path, **FAST)
    assert not a.from_cache
    t0 = time.perf_counter()
    b = train("fixmatch", cache=tmp_path, **FAST)
    assert time.perf_counter() - t0 < 1.0
    assert b.from_cache and "from the run cache" in b.summary()
    assert b.test_accuracy == a.test_accuracy and b.wall_seconds == a.wall_seconds
    assert _strip(b.history.records) == _strip(a.history.records)
    assert b.per_class_accuracy == a.per_class_accuracy and b.split == a.split
    x = balanced_split("digits", 2).x_test
    for m_a, m_b in ((a.model, b.model), (a.ema_model, b.ema_model)):
        assert torch.equal(predict_logits(m_a, x), predict_logits(m_b, x))


def test_cached_run_replays_its_curve_to_the_callbacks(tmp_path):
    train("supervised", cache=tmp_path, **FAST)
    seen = []
    r = train("supervised", cache=tmp_path, callbacks={"on_eval": lambda tr, rec: seen.append(rec["step"])}, **FAST)
    assert r.from_cache and seen == [rec["step"] for rec in r.history.records] == [6, 12]


@pytest.mark.parametrize("change", [
    {"tau": 0.5},                      # the method's config
    {"steps": 13},                     # the loop
    {"lr": 0.01},
    {"seed": 1},                       # the seed (and so the labeled set)
    {"labels_per_class": 3},           # the split
    {"split": "long_tailed"},
    {"dataset": "two_moons"},
])
def test_any_change_that_matters_misses(tmp_path, change):
    base = dict(method="fixmatch", dataset="digits", labels_per_class=2, **FAST)
    train(cache=tmp_path, **base)
    r = train(cache=tmp_path, **{**base, **change})
    assert not r.from_cache


def test_same_settings_with_another_split_of_the_data_misses(tmp_path):
    """A ready Split with the same settings but other data (here: other labeled images) is another run."""
    s0 = balanced_split("digits", 2, seed=0)
    s1 = balanced_split("digits", 2, seed=0)
    s1.x_lb = s1.x_lb.flip(0)
    train("supervised", split=s0, cache=tmp_path, **FAST)
    assert not train("supervised", split=s1, cache=tmp_path, **FAST).from_cache
    assert train("supervised", split=s0, cache=tmp_path, **FAST).from_cache


def test_code_and_torch_version_are_in_the_key(tmp_path, monkeypatch):
    train("supervised", cache=tmp_path, **FAST)
    monkeypatch.setattr(cache_mod, "_CODE_DIGEST", "edited-code")
    assert not train("supervised", cache=tmp_path, **FAST).from_cache
    monkeypatch.setattr(torch, "__version__", "0.0.0-other")
    assert not train("supervised", cache=tmp_path, **FAST).from_cache


def test_key_is_a_digest_of_the_canonical_spec():
    assert make_key({"a": 1, "b": [0.1, 2]}) == make_key({"b": [0.1, 2], "a": 1})
    assert make_key({"a": 0.1}) != make_key({"a": 0.1 + 1e-12})
    assert make_key({"a": 1}) != make_key({"a": "1"})


@pytest.mark.parametrize("damage", ["truncate_json", "garbage_json", "foreign_json", "truncate_pt", "pickle_pt",
                                    "missing_pt", "wrong_tensors"])
def test_damaged_entry_warns_and_is_retrained(tmp_path, damage):
    first = train("supervised", cache=tmp_path, **FAST)
    (jpath,) = tmp_path.glob("*.json")
    tpath = jpath.with_suffix(".pt")
    if damage == "truncate_json":
        jpath.write_text(jpath.read_text()[:50])
    elif damage == "garbage_json":
        jpath.write_bytes(b"\x00\xff not json")
    elif damage == "foreign_json":
        jpath.write_text(json.dumps({"format": 1, "key": "someone-else", "record": {}, "tensors": []}))
    elif damage == "truncate_pt":
        tpath.write_bytes(tpath.read_bytes()[:100])
    elif damage == "missing_pt":
        tpath.unlink()
    elif damage == "pickle_pt":  # a pickle that would run code if loaded without weights_only
        import pickle

        class Evil:
            def __reduce__(self):
                return (exec, ("open('" + str(tmp_path / "PWNED") + "', 'w').write('x')",))

        tpath.write_bytes(pickle.dumps({"model.x": Evil()}))
    elif damage == "wrong_tensors":
        torch.save({"model.nonsense": torch.zeros(3)}, tpath)
    with pytest.warns(UserWarning, match="sslteach run cache"):
        again = train("supervised", cache=tmp_path, **FAST)
    assert not again.from_cache and again.test_accuracy == first.test_accuracy  # retrained, same seed
    assert not (tmp_path / "PWNED").exists()
    with warnings.catch_warnings():  # and the retrained run replaced the damaged entry
        warnings.simplefilter("error")
        assert train("supervised", cache=tmp_path, **FAST).from_cache


def test_an_entry_this_code_cannot_restore_is_retrained(tmp_path, monkeypatch):
    """Valid files, but the network they hold does not fit (as after a change of architecture)."""
    train("supervised", cache=tmp_path, **FAST)
    (jpath,) = tmp_path.glob("*.json")
    tensors = torch.load(jpath.with_suffix(".pt"), weights_only=True)
    tensors = {k: (v[:1] if k.startswith("model.") and v.ndim > 1 else v) for k, v in tensors.items()}
    doc = json.loads(jpath.read_text())
    RunCache(tmp_path).store(doc["key"], doc["record"], tensors)
    with pytest.warns(UserWarning, match="could not be restored"):
        assert not train("supervised", cache=tmp_path, **FAST).from_cache


def test_interrupted_runs_and_custom_networks_are_not_stored(tmp_path):
    r = train("supervised", cache=tmp_path, callbacks={"on_step": lambda tr, logs: "stop"}, **FAST)
    assert r.interrupted and not list(tmp_path.glob("*.json"))
    net = sslteach.models.make_model("cnn", (1, 8, 8), 10, width=8)
    train("supervised", network=net, cache=tmp_path, **FAST)
    assert not list(tmp_path.glob("*.json"))


def test_cache_off_and_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLTEACH_CACHE", str(tmp_path / "env"))
    train("supervised", **FAST)
    assert list((tmp_path / "env").glob("*.json"))
    assert train("supervised", **FAST).from_cache
    assert not train("supervised", cache=False, **FAST).from_cache
    monkeypatch.setenv("SSLTEACH_CACHE", "off")
    assert not train("supervised", **FAST).from_cache
    with pytest.raises(ValueError, match="SSLTEACH_CACHE turns the run cache off"):
        train("supervised", cache=True, **FAST)


def _worker(args):
    root, seed = args
    torch.set_num_threads(1)
    r = train("supervised", cache=root, seed=seed, **FAST)
    return r.from_cache, r.test_accuracy


def test_concurrent_writers_train_once_and_agree(tmp_path):
    """Four processes ask for the same two runs at once: the file lock lets one train each run, the others read
    it; every entry is complete and loads."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        out = pool.map(_worker, [(str(tmp_path), s) for s in (0, 0, 1, 1)])
    by_seed = {0: [o for o, s in zip(out, (0, 0, 1, 1)) if s == 0], 1: [o for o, s in zip(out, (0, 0, 1, 1)) if s == 1]}
    for runs in by_seed.values():
        assert sorted(hit for hit, _ in runs) == [False, True]  # trained once, read once
        assert runs[0][1] == runs[1][1]
    assert len(list(tmp_path.glob("*.json"))) == 2 and not list(tmp_path.glob("*.tmp"))
    store = RunCache(tmp_path)
    for j in tmp_path.glob("*.json"):
        assert store.load(j.stem) is not None


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_round_trips_with_its_learned_state(tmp_path, name):
    """Train 12 steps, read the run back: the reported model, the EMA model and every evaluated model of the
    method predict exactly what they did, and the method's learned tensors are back."""
    opts = {**FAST, **SMOKE.get(name, {})}
    a = train(name, cache=tmp_path, **opts)
    b = train(name, cache=tmp_path, **opts)
    assert b.from_cache and b.test_accuracy == a.test_accuracy
    x = balanced_split("digits", 2).x_test[:64]
    assert torch.equal(predict_logits(a.report_model(), x), predict_logits(b.report_model(), x))
    models_a, models_b = a.method_obj.eval_models(), b.method_obj.eval_models()
    assert sorted(models_a) == sorted(models_b)
    for k in models_a:
        assert torch.equal(predict_logits(models_a[k], x), predict_logits(models_b[k], x)), k
    sa, sb = a.method_obj.state_tensors(), b.method_obj.state_tensors()
    for k, v in sa.items():
        if k in sb:
            assert torch.equal(v.cpu(), sb[k].cpu()), k


def test_the_digest_covers_the_training_code_and_not_the_figures():
    """Editing a figure, a widget or the comparison's tables keeps a lecture's cache warm; editing anything that
    trains invalidates it. The list of files left out is a deny-list of files and folders: a new file is hashed."""
    from pathlib import Path

    import sslteach
    from sslteach.cache import _is_training_code, training_code_files

    root = Path(sslteach.__file__).resolve().parent
    names = {p.relative_to(root).as_posix() for p in training_code_files()}
    for must in ("train.py", "loop.py", "cache.py", "phases.py", "data.py", "augment.py", "models.py",
                 "evaluation.py", "utils.py", "methods/fixmatch.py", "methods/base.py"):
        assert must in names, must
    for never in ("viz.py", "diagrams.py", "notebook.py", "cli.py", "presets.py", "widgets/__init__.py",
                  "widgets/training.py", "compare/__init__.py", "compare/plots.py", "compare/table.py"):
        assert never not in names, never
    assert not any(n.startswith(("compare/", "widgets/")) for n in names)
    assert _is_training_code("methods/a_new_method.py") and _is_training_code("a_new_module.py")
    assert not _is_training_code("compare/a_new_plot.py")
