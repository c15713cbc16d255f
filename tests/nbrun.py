"""Each notebook executed once per test suite, whoever asks first.

``notebook_run(name, shared)`` executes ``notebooks/<name>.ipynb`` in quick mode and returns a record::

    {"name", "executor": "jupyterlab" | "papermill", "results": <the JSON the notebook wrote> | None,
     "error": <why it failed> | None, "executed": <path of the executed notebook>, "seconds", "report": [...]}

The record is stored in the folder ``shared`` (common to all pytest-xdist workers) under a file lock, so the
browser test, the notebook's own assertions and the book test all read the same execution. The executor is
JupyterLab in Chromium (:mod:`browser`: Run All as a student would, the widgets checked, the panel driven), or
papermill's parameters run by the project's watchdog executor (:func:`sslteach.execute.execute_notebook`) where
Chromium is missing (outside CI) or ``SSLTEACH_NB_EXECUTOR=papermill``.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT = 300  # seconds per cell: the back-stop; a reply the kernel lost is noticed within a minute (execute.py)


def all_notebooks() -> list[str]:
    return sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


class Busy(Exception):
    """Another worker holds the lock (``file_lock(..., block=False)``)."""


@contextlib.contextmanager
def file_lock(path: Path, block: bool = True):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            raise Busy(str(path)) from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def quick_parameters(name: str, results_path: Path) -> dict:
    return {"quick": True, "results_path": str(results_path)}


def executor_kind() -> str:
    forced = os.environ.get("SSLTEACH_NB_EXECUTOR", "")
    if forced in ("papermill", "jupyterlab"):
        return forced
    import browser

    return "jupyterlab" if browser.available() is None else "papermill"


def notebook_run(name: str, shared: Path, block: bool = True) -> dict | None:
    """The suite's one quick-mode execution of notebook ``name`` (executed now if nobody has yet). With
    ``block=False``, ``None`` while another worker is executing it."""
    folder = shared / "notebooks"
    record_path = folder / f"{name}.run.json"
    try:
        with file_lock(folder / f"{name}.lock", block=block):
            return _notebook_run_locked(name, folder, record_path)
    except Busy:
        return None


def _notebook_run_locked(name: str, folder: Path, record_path: Path) -> dict:
    if record_path.exists():
        return json.loads(record_path.read_text())
    t0 = time.perf_counter()
    kind = executor_kind()
    record = {"name": name, "executor": kind, "results": None, "error": None, "report": [],
              "executed": str(folder / f"{name}.ipynb")}
    results_path = folder / f"{name}.results.json"
    try:
        if kind == "jupyterlab":
            import browser

            browser.execute(name, quick_parameters(name, results_path), folder, record)
        else:
            _papermill(name, quick_parameters(name, results_path), folder)
    except Exception as e:  # noqa: BLE001 - stored, and reported by every test that needs this notebook
        record["error"] = f"{type(e).__name__}: {e}"
        record["traceback"] = traceback.format_exc()[-4000:]
    if results_path.exists():
        try:
            record["results"] = json.loads(results_path.read_text())
        except json.JSONDecodeError as e:
            record["error"] = record["error"] or f"results JSON unreadable: {e}"
    elif record["error"] is None:
        record["error"] = f"the notebook wrote no results to {results_path}"
    record["seconds"] = time.perf_counter() - t0
    _write_json(record_path, record)
    artifacts = os.environ.get("SSLTEACH_ARTIFACTS")
    if artifacts and Path(record["executed"]).exists():
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(record["executed"], Path(artifacts) / f"{name}.ipynb")
    return record


def _papermill(name: str, parameters: dict, folder: Path) -> None:
    """The fallback executor: papermill's parameters, run by the project's watchdog executor
    (:func:`sslteach.execute.execute_notebook`: a lost reply or a cell over its limit restarts the notebook)."""
    import kernels
    from sslteach.execute import execute_notebook

    work = folder / "papermill-cwd"
    work.mkdir(exist_ok=True)
    with kernels.private_kernelspec(folder / "jupyter-data"):
        execute_notebook(NOTEBOOKS / f"{name}.ipynb", folder / f"{name}.ipynb", parameters, cwd=work,
                         timeout=CELL_TIMEOUT, attempts=2, label=name)
