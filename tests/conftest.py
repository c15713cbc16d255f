"""Shared fixtures and helpers.

* **Claims** (``claim_runs``): a method trained on digits with 2 labels per class, seeds 0-2, at the *claim scale*
  (:data:`CLAIM_SCALE`: a smaller network and batch than the notebooks' defaults, so every claim of the collection
  fits the suite's time budget). Runs go through the package's run cache in a folder shared by the pytest-xdist
  workers, under a file lock: a run that two tests need (the supervised baseline, FixMatch) is trained once per
  suite, by whichever worker asks first, and read by the others.
* **Notebooks** (``notebook_results``): each notebook is executed once per suite in quick mode — in JupyterLab in
  Chromium (:mod:`nbrun`), which also checks the widgets — and every test that asks for it reads the same run.
* Nothing is written into the checkout: runs, executed notebooks and screenshots go to pytest's temporary folder
  (set ``SSLTEACH_ARTIFACTS=<dir>`` to keep the screenshots and executed notebooks).
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SEEDS = (0, 1, 2)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

#: The scale of the claim tests: the notebooks' loop (SGD, cosine decay, EMA evaluation, weak/strong views) with a
#: narrower network and a smaller labeled batch than their defaults (width 32, B = 32), so that the claims of every
#: notebook fit into the suite's 15 minutes on 2 cores. Each claim test says its steps and the margins measured
#: at this scale.
CLAIM_SCALE = {"width": 16, "batch_size": 16, "eval_every": 100}

# Every worker trains with one thread: small networks gain little from intra-op threads, and the two pytest-xdist
# workers must not fight over the 2 cores. Notebook kernels started by the tests inherit these settings.
torch.set_num_threads(1)
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning
# The run cache is off unless a test asks for it (a test that trains twice must train twice); the claim helpers
# pass the shared folder explicitly.
os.environ["SSLTEACH_CACHE"] = "off"


def _git_status() -> set[str]:
    """``git status`` lines (new, changed and deleted files of the checkout)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return set(out.stdout.splitlines()) if out.returncode == 0 else set()


def pytest_configure(config):
    import time as _time

    config._sslteach_t0 = _time.monotonic()
    config._sslteach_before = _git_status() if not hasattr(config, "workerinput") else None


def _notebook_of(item) -> str:
    """The notebook a notebook test reads: its ``name`` parameter, or the number in ``test_notebook_03_...``."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "name" in callspec.params:
        return str(callspec.params["name"])
    m = re.search(r"notebook_(\d\d)", item.name)
    return m.group(1) if m else item.name


def pytest_collection_modifyitems(config, items):
    """Schedule for 2 workers (pytest-xdist hands each worker a contiguous half of this list, then lets an idle
    worker steal from the other's tail): the notebook tests — each notebook is executed once, by the first test that
    needs it — are spread evenly through the list, so both workers execute notebooks while the other trains
    claims, and the tests of one notebook sit together (no worker waits on the other's lock); the book, which
    needs every notebook, comes last."""
    book = [i for i in items if i.get_closest_marker("book")]
    nbs = sorted((i for i in items if (i.get_closest_marker("notebook") or i.get_closest_marker("browser"))
                  and not i.get_closest_marker("book")),
                 key=lambda i: _notebook_of(i)[:2])
    rest = [i for i in items if i not in set(book) | set(nbs)]
    groups: dict[str, list] = {}
    for i in nbs:
        groups.setdefault(_notebook_of(i)[:2], []).append(i)
    out, chunks = [], list(groups.values())
    every = max(1, len(rest) // (len(chunks) + 1))
    for k, item in enumerate(rest):
        if k and k % every == 0 and chunks:
            out += chunks.pop(0)
        out.append(item)
    for c in chunks:
        out += c
    items[:] = out + book


def pytest_sessionfinish(session, exitstatus):
    """The suite must not write into the checkout (screenshots, outputs, caches go to pytest's tmp folders)."""
    before = getattr(session.config, "_sslteach_before", None)
    if before is None:
        return
    new = sorted(_git_status() - before)
    if new:
        print(f"\nFAILED: the test suite wrote into the checkout: {new[:10]}")
        session.exitstatus = 1


# ----------------------------------------------------------------------------------------------- time by part
_PARTS = ("unit", "claims", "notebooks", "browser", "book")
_TIME_BY_PART: dict[str, float] = {}


def _part(keywords) -> str:
    for marker, part in (("book", "book"), ("browser", "browser"), ("notebook", "notebooks"), ("slow", "claims")):
        if marker in keywords:
            return part
    return "unit"


def pytest_runtest_logreport(report):
    """Add up the time of every test phase by part of the suite (on the controller, reports from both workers)."""
    part = _part(report.keywords)
    _TIME_BY_PART[part] = _TIME_BY_PART.get(part, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if not _TIME_BY_PART or hasattr(terminalreporter.config, "workerinput"):
        return
    import time as _time

    start = getattr(terminalreporter.config, "_sslteach_t0", None)
    wall = f"; wall time {_time.monotonic() - start:.0f} s" if start is not None else ""
    parts = ", ".join(f"{p} {_TIME_BY_PART[p]:.0f} s" for p in _PARTS if p in _TIME_BY_PART)
    terminalreporter.write_line(f"sslteach: test time by part (summed over the workers): {parts}{wall}. A notebook "
                                f"runs once, in the first test that needs it (usually browser).")


# ----------------------------------------------------------------------------------------------- shared folder
def shared_dir(tmp_path_factory) -> Path:
    """A folder shared by every pytest-xdist worker of this run (and by the controller)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    d = root / "sslteach-shared"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> Path:
    return shared_dir(tmp_path_factory)


_SHARED: Path | None = None


@pytest.fixture(scope="session", autouse=True)
def _remember_shared(tmp_path_factory):
    global _SHARED
    _SHARED = shared_dir(tmp_path_factory)
    yield


@pytest.fixture(scope="session")
def digits():
    from sslteach.data import load_dataset

    return load_dataset("digits")


# ----------------------------------------------------------------------------------------------- claims
def claim_runs(method: str, seeds=SEEDS, dataset: str = "digits", labels_per_class: int = 2, **options) -> list:
    """Train ``method`` once per seed (seed s -> labeled set s) at :data:`CLAIM_SCALE` (``options`` override it),
    through the run cache shared by the workers: the same run asked for by two tests is trained once."""
    from sslteach import train

    assert _SHARED is not None, "claim_runs needs the session fixture (call it from a test)"
    opts = {**CLAIM_SCALE, **options}
    return [train(method, dataset, labels_per_class=labels_per_class, seed=s, progress=False,
                  cache=_SHARED / "runs", **opts) for s in seeds]


def run_default(method: str, seeds=SEEDS, **options) -> list:
    """Train ``method`` on digits with 2 labels per class at the notebooks' *default* settings, once per seed
    (cached across workers like :func:`claim_runs`). Expensive: the claim tests use :func:`claim_runs`."""
    from sslteach import train

    return [train(method, "digits", labels_per_class=2, seed=s, progress=False, cache=_SHARED / "runs", **options)
            for s in seeds]


def mean_accuracy(results) -> float:
    return statistics.mean(r.test_accuracy for r in results)


def accuracies(results) -> list[float]:
    return [round(r.test_accuracy, 4) for r in results]


# ----------------------------------------------------------------------------------------------- notebooks
@pytest.fixture(scope="session")
def notebook_results(tmp_path_factory):
    """``notebook_results("03_fixmatch")`` -> the dict the notebook wrote, from the suite's one quick-mode run of it
    (in JupyterLab; see :mod:`nbrun`). A failed run fails every test that asks for it, with the run's error."""
    import nbrun

    def get(name: str) -> dict:
        run = nbrun.notebook_run(name, shared_dir(tmp_path_factory))
        if run.get("results") is None:
            pytest.fail(f"{name} did not run: {run.get('error', 'no results written')}", pytrace=False)
        return run["results"]

    return get
