"""The notebooks in a real browser: each runs in JupyterLab in Chromium as a student would run it (see
:mod:`browser`): all cells run without an error, every widget renders and the TrainingPanel responds to its slider,
Train and Stop. This execution is the suite's one run of each notebook: the notebook assertions
(``notebook_results``) and the book test read the same run.

Where Chromium is missing the notebooks run under papermill instead and these tests are skipped with the fix — except
under CI (``CI=true``), where a missing browser is a failure. Screenshots: in pytest's temporary folder, copied to
``$SSLTEACH_ARTIFACTS`` when it is set. Run alone: ``.venv/bin/pytest tests/test_browser.py -q -s``.
"""
from __future__ import annotations

import pytest

import browser
import nbrun
from conftest import IN_CI, shared_dir

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1800)]


def _require_browser():
    why = browser.available()
    if why is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and the browser test cannot run: {why}", pytrace=False)
    pytest.skip(why)


@pytest.mark.parametrize("name", nbrun.all_notebooks())
def test_notebook_in_jupyterlab(name, tmp_path_factory):
    _require_browser()
    run = nbrun.notebook_run(name, shared_dir(tmp_path_factory))
    print(f"\n{name}: {run.get('seconds', 0):.0f} s | " + " | ".join(run.get("report", [])))
    if run["executor"] != "jupyterlab":
        pytest.fail(f"{name} was executed by {run['executor']}, not in JupyterLab (SSLTEACH_NB_EXECUTOR?)")
    assert run["error"] is None, run["error"] + "\n" + run.get("traceback", "")[-2000:]
    assert run.get("screenshots"), f"{name}: no screenshot taken"
