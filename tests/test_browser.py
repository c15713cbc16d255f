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


# ------------------------------------------------------------------------------------------------ the slideshow
@pytest.mark.parametrize("name", browser.SLIDESHOW)
def test_notebook_as_a_rise_slideshow(name, tmp_path_factory):
    """The suite's run of the notebook, then the same notebook (the slide rule's metadata, its kernel still running)
    as a RISE slideshow: a section per slide and subslide, Space reaches the last slide, markdown rendered, figures
    shown, the widgets rendered on their slides (not their text repr), and Train on the panel's slide runs and adds
    a row to the panel's table (see :func:`browser.slideshow`; the live curve: the next test). Screenshots of the
    slides go with the notebook's (``$SSLTEACH_ARTIFACTS``)."""
    _require_browser()
    run = nbrun.notebook_run(name, shared_dir(tmp_path_factory))
    show = run.get("slideshow")
    if show is None:
        pytest.fail(f"{name}: the slideshow was not reached: {run.get('error') or run.get('executor')}", pytrace=False)
    print(f"\n{name}: slides {show.get('counts')}, opened in {show.get('open_seconds', 0):.0f} s, "
          f"{len(show.get('seen', []))} slides seen; {show.get('trained')}")
    assert "error" not in show, show["error"]


@pytest.mark.xfail(strict=False, reason="in jupyterlab-rise's slideshow app the plotly FigureWidget draws its axes but "
                                        "no traces: the graph div holds the data (gd.data has them) and no .trace "
                                        "node is drawn, neither restored nor added by a run, and a window resize does "
                                        "not help (seen 2026-12-02; the panel's buttons and table work on the slide)")
@pytest.mark.parametrize("name", [n for n in browser.SLIDESHOW if browser._needs_panel(n)])
def test_the_live_curve_moves_in_the_rise_slideshow(name, tmp_path_factory):
    _require_browser()
    show = nbrun.notebook_run(name, shared_dir(tmp_path_factory)).get("slideshow") or {}
    before, after = show.get("curve_points") or (0, 0)
    assert after > before, f"{name}: the live curve on the slide has {before} -> {after} points after Train"
