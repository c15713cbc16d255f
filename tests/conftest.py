"""Shared fixtures: the digits dataset, the supervised baseline on digits with 2 labels per class (3 seeds, computed
once per session), and a cached papermill run of each notebook in quick mode."""
from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SEEDS = (0, 1, 2)

# Under pytest-xdist (`make test` runs one worker per core) each worker trains with one thread: small networks
# gain little from intra-op threads, and workers must not fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # notebook kernels started by papermill inherit it
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning


@pytest.fixture(scope="session")
def digits():
    from sslteach.data import load_dataset

    return load_dataset("digits")


def run_default(method: str, seeds=SEEDS, **options) -> list:
    """Train ``method`` on digits with 2 labels per class and its default settings, once per seed."""
    from sslteach import train

    return [train(method, "digits", labels_per_class=2, seed=s, progress=False, **options) for s in seeds]


def mean_accuracy(results) -> float:
    return statistics.mean(r.test_accuracy for r in results)


@pytest.fixture(scope="session")
def baseline_digits_2():
    """The supervised baseline on the same splits the method claims use (seed s -> split s)."""
    return run_default("supervised")


_NB_CACHE: dict[str, dict] = {}


def run_notebook(name: str, tmp_dir: Path, **parameters) -> dict:
    """Execute ``notebooks/<name>.ipynb`` with papermill in quick mode (once per session) and return the JSON
    results it wrote."""
    key = name + json.dumps(parameters, sort_keys=True)
    if key in _NB_CACHE:
        return _NB_CACHE[key]
    import papermill as pm

    out_json = tmp_dir / f"{name}.results.json"
    params = {"quick": True, "results_path": str(out_json), **parameters}
    for attempt in (1, 2):
        try:
            # A per-cell limit: nbclient can wait forever for a reply that the kernel lost (jupyter/nbclient#312,
            # seen here about once in twenty runs of a cell with `interact`). Such a hang is retried once.
            pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(tmp_dir / f"{name}.out.ipynb"),
                                parameters=params, kernel_name="python3", cwd=str(NOTEBOOKS), progress_bar=False,
                                execution_timeout=300)
            break
        except Exception as e:  # noqa: BLE001
            if attempt == 2 or "Timeout" not in type(e).__name__ + str(e)[:300]:
                raise
    _NB_CACHE[key] = json.loads(out_json.read_text())
    return _NB_CACHE[key]


@pytest.fixture(scope="session")
def notebook_results(tmp_path_factory):
    """``notebook_results("03_fixmatch")`` -> the dict the notebook wrote (run once per session)."""
    tmp = tmp_path_factory.mktemp("notebooks")
    return lambda name, **p: run_notebook(name, tmp, **p)
