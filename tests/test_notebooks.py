"""Every notebook in notebooks/: clean and documented when committed, and it runs in quick mode under papermill."""
import ast
import json
import math

import nbformat
import torch
import papermill as pm
import pytest

from conftest import NOTEBOOKS

ALL = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))


def test_the_collection_starts_here():
    assert "00_start_here" in ALL


@pytest.mark.parametrize("name", ALL)
def test_committed_clean_with_one_documented_parameters_cell(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{name}: commit notebooks without outputs"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: exactly one cell tagged 'parameters'"
    tree = ast.parse(tagged[0].source)
    names = set()
    for node in tree.body:
        assert isinstance(node, ast.AnnAssign), f"{name}: every parameter is typed (`x: int = 1`)"
        names.add(node.target.id)
    for line in tagged[0].source.splitlines():
        if "=" in line:
            assert "#" in line, f"{name}: parameter line without a comment: {line!r}"
    assert {"quick", "seed", "device", "results_path"} <= names
    # papermill --help-notebook documents them, with their types and comments
    params = pm.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))
    assert params["quick"]["inferred_type_name"] == "bool" and params["quick"]["help"]


def _numbers(d, prefix=""):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _numbers(v, f"{prefix}{k}.")
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _numbers(v, f"{prefix}{i}.")
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        yield prefix.rstrip("."), d


@pytest.mark.notebook
@pytest.mark.parametrize("name", ALL)
def test_runs_in_quick_mode(name, notebook_results):
    """The suite's one quick-mode run of the notebook wrote finite numbers (``write_results`` refuses NaN unless a
    key allows it, and then writes null: only those keys may hold nulls), and every accuracy is a share."""
    res = notebook_results(name)
    nums = list(_numbers(res))
    assert nums, f"{name} wrote no numbers"
    for key, v in nums:
        assert math.isfinite(v), f"{name}: {key} = {v}"
        if "acc" in key.split(".")[-1] or "accuracy" in key:
            assert 0.0 <= v <= 1.0, f"{name}: {key} = {v} is not an accuracy"
    assert res["notebook_seconds"] > 0 and res["peak_memory_mb"] > 0


def test_write_results_refuses_nan_unless_allowed(tmp_path):
    from sslteach.notebook import write_results

    with pytest.raises(ValueError, match="non-finite values at curve.1"):
        write_results(tmp_path / "r.json", curve=[0.5, float("nan")])
    assert not (tmp_path / "r.json").exists()
    data = write_results(tmp_path / "r.json", curve=[0.5, float("nan")], allow_nan=("curve",))
    assert data["curve"] == [0.5, None] and json.loads((tmp_path / "r.json").read_text())["curve"] == [0.5, None]
    with pytest.raises(ValueError, match="acc"):
        write_results("", acc=torch.tensor(float("inf")))


@pytest.mark.notebook
def test_start_here_results(notebook_results):
    res = notebook_results("00_start_here")
    assert res["baseline_accuracy"] > 0.2  # chance is 0.1, even a tiny quick run learns
    curve = res["budget_curve"]
    assert curve["5"] > curve["1"]  # more labels help
    assert res["peak_memory_mb"] < 1500  # Binder gives 2 GB (a kernel measurement, not a timing)
