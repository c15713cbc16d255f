"""JupyterLab in Chromium: the executor of :mod:`nbrun` (each notebook runs once per suite, as a student runs it).

One JupyterLab server per test worker (the venv's, on a free localhost port, token auth, offline: no news, no
update check, read-only extension manager; a private kernelspec so ``python3`` is this interpreter) serves copies of
the notebooks with the quick parameters injected (the repository is never touched). Debian's Chromium, driven
headless by Playwright, opens each notebook, runs all cells from the Run menu, and checks that

* every code cell ran, no cell has an error output or a traceback, the notebook wrote its results JSON;
* every widget rendered: no "Error displaying widget", no "Loading widget..." left, no widget shown as its plain-text
  repr, every plotly figure drawn as an SVG;
* the first TrainingPanel responds: moving the label-budget (or imbalance-ratio) slider with the keyboard and
  pressing Train adds points to the live curve and a row to the results table; Stop interrupts a long run (steps
  slider at its maximum), the row says "stopped early" and the curve keeps its points.

The executed notebook (saved by JupyterLab right after Run All) is kept for the book; screenshots of the notebook
and of its panel go to the run's folder (``SSLTEACH_ARTIFACTS=<dir>`` copies them out). The server gets SIGTERM when
the test process dies (``PR_SET_PDEATHSIG``), and its kernels follow their parent, so a killed test run leaves no
server behind.
"""
from __future__ import annotations

import atexit
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import kernels

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CHROMIUM = Path(os.environ.get("SSLTEACH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

# Bounded waits (seconds). Generous: CI machines are small and the other worker trains at the same time.
SCALE = float(os.environ.get("SSLTEACH_BROWSER_TIMEOUT_SCALE", "1"))
T_SERVER = 120 * SCALE      # JupyterLab server answering /api/status
T_PAGE = 120 * SCALE        # JupyterLab loaded in the page, kernel started and idle
T_NOTEBOOK = 600 * SCALE    # Run All Cells of one quick notebook
T_TRAIN = 240 * SCALE       # one quick run from the Train button
T_FIRST_POINT = 240 * SCALE  # first evaluation of the long run before Stop is pressed
T_STOP = 120 * SCALE        # Stop pressed -> row in the table

VIEWPORT = {"width": 1400, "height": 1000}
SHOT_MAX_HEIGHT = 15000     # Chromium cannot capture arbitrarily tall pages in one go; taller notebooks get parts
INSTALL_HINT = "apt-get install -y chromium (and pip install -e '.[test]' for playwright)"


def available() -> str | None:
    """``None`` when Chromium and Playwright are there, else why not (with the fix)."""
    if not CHROMIUM.exists():
        return f"Chromium not found at {CHROMIUM}: {INSTALL_HINT}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (python package) not installed: pip install -e '.[test]' (it drives the system Chromium)"
    return None


def _die_with_parent():  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


# ----------------------------------------------------------------------------------------------- JupyterLab server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server for the session, serving ``root``."""

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "root"
        self.results = base / "results"
        self.token = uuid.uuid4().hex
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log_path = base / "jupyterlab.log"

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.results.mkdir(exist_ok=True)

    def add_notebook(self, name: str, parameters: dict) -> None:
        """A copy of ``notebooks/<name>.ipynb`` with ``parameters`` injected, as papermill would do it."""
        import nbformat
        from papermill.iorw import load_notebook_node
        from papermill.parameterize import parameterize_notebook

        nb = load_notebook_node(str(NOTEBOOKS / f"{name}.ipynb"))
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nb = parameterize_notebook(nb, parameters, kernel_name="python3", language="python")
        nbformat.write(nb, str(self.root / f"{name}.ipynb"))
        from sslteach import lecture  # the slide metadata of the lecture rule (RISE reads it; nothing else does)

        lecture.apply_file(self.root / f"{name}.ipynb")

    def env(self) -> dict:
        """Private Jupyter config/data/runtime/settings/workspaces dirs: nothing from ~/.jupyter leaks in, nothing is
        written there, and the user settings turn off the news and update-check notifications and cell windowing
        (every cell stays in the DOM, so the checks see all outputs)."""
        env = dict(os.environ)
        d = {k: self.base / k.lower() for k in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR",
                                                "JUPYTERLAB_WORKSPACES_DIR", "IPYTHONDIR")}
        d["JUPYTERLAB_SETTINGS_DIR"] = self.base / "lab-user-settings"
        for k, p in d.items():
            p.mkdir(parents=True, exist_ok=True)
            env[k] = str(p)
        settings = {"@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
                    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"}}
        for key, value in settings.items():
            f = d["JUPYTERLAB_SETTINGS_DIR"] / f"{key}.jupyterlab-settings"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(value))
        # jupyterlab-rise pulls in @jupyterlab/mathjax3-extension, a JupyterLab 3 extension that JupyterLab 4 lists as
        # incompatible (its own MathJax renders the math): off, as `make lab` turns it off; SSLTEACH_LAB_DISABLE adds more
        disabled = ["@jupyterlab/mathjax3-extension"] + [e for e in os.environ.get("SSLTEACH_LAB_DISABLE", "").split(",")
                                                        if e]
        labconfig = d["JUPYTER_CONFIG_DIR"] / "labconfig"
        labconfig.mkdir(parents=True, exist_ok=True)
        (labconfig / "page_config.json").write_text(json.dumps({"disabledExtensions": {e: True for e in disabled}}))
        env.update(kernels.env_for(d["JUPYTER_DATA_DIR"]))  # `python3` = this interpreter, whatever ~/.local holds
        env.pop("JUPYTER_TOKEN", None)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        return env

    def start(self) -> None:
        env = self.env()
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between picking it and binding it
            self.port = _free_port()
            cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                   f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                   f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
                   "--ServerApp.shutdown_no_activity_timeout=3600",  # a leaked server ends by itself
                   "--LabApp.news_url=None",
                   "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
                   "--LabApp.extension_manager=readonly",
                   "--LabApp.expose_app_in_browser=True"]  # window.jupyterapp: kernel status, save, layout
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                cmd.append("--allow-root")  # CI containers run as root
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=_die_with_parent)
            log.close()
            deadline = time.monotonic() + T_SERVER
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if self.api("GET", "/api/status") is not None:
                        return
                except (urllib.error.URLError, ConnectionError, OSError) as e:
                    last_error = str(e)
                time.sleep(0.5)
            self.stop()
        raise RuntimeError(f"JupyterLab did not start ({last_error}); log:\n{self.log_tail()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str):
        req = urllib.request.Request(self.url + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else {}

    def notebook_url(self, name: str) -> str:
        # a workspace per notebook + ?reset: each page opens exactly one notebook, whatever was open before
        return f"{self.url}/lab/workspaces/{name}/tree/{name}.ipynb?reset&token={self.token}"

    def shutdown_kernels(self) -> None:
        """Free the CPU for the next notebook (a panel may still be training in a background thread)."""
        try:
            for s in self.api("GET", "/api/sessions"):
                self.api("DELETE", f"/api/sessions/{s['id']}")
        except (urllib.error.URLError, OSError):
            pass

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.shutdown_kernels()
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # our own session: the server and its kernels
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass



# ------------------------------------------------------------------------------------------ one session per process
class _Session:
    """The JupyterLab server and the browser of this test process, started on first use, closed at exit."""

    def __init__(self, base: Path):
        from playwright.sync_api import sync_playwright

        t0 = time.perf_counter()
        self.lab = Lab(base)
        self.lab.prepare()
        self.lab.start()
        specs = self.lab.api("GET", "/api/kernelspecs")
        argv = specs["kernelspecs"].get("python3", {}).get("spec", {}).get("argv", [])
        if not argv or argv[0] != sys.executable:
            raise RuntimeError(f"JupyterLab's python3 kernel is not this interpreter: {argv}")
        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        self.start_seconds = time.perf_counter() - t0

    def close(self) -> None:
        for fn in (self.browser.close, self._pw.stop, self.lab.stop):
            try:
                fn()
            except Exception:  # noqa: BLE001 - closing at exit: nothing left to report to
                pass


_SESSION: _Session | None = None


def session(base: Path) -> _Session:
    global _SESSION
    if _SESSION is None:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        folder = base / f"jupyterlab-{worker}-{uuid.uuid4().hex[:6]}"
        folder.mkdir(parents=True)
        _SESSION = _Session(folder)
        atexit.register(_SESSION.close)
    return _SESSION


# ------------------------------------------------------------------------------------------- in-page JavaScript
JS_KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle';
}"""
JS_PROMPTS = """() => Array.from(document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell'))
  .map(c => { const p = c.querySelector('.jp-InputPrompt'); return p ? p.textContent.trim() : ''; })"""
JS_OUTPUT_TYPES = """() => {
  const w = window.jupyterapp.shell.currentWidget, cells = w.content.model.cells, out = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type === 'code') out.push(c.outputs.toJSON());
  }
  return out;
}"""
JS_PANEL_STATE = """(panel) => {
  const q = s => panel.querySelectorAll(s);
  const table = panel.querySelector('table.sslteach-results');
  const head = table ? Array.from(table.querySelectorAll('thead th')).map(e => e.textContent.trim()) : [];
  const rows = table ? Array.from(table.querySelectorAll('tbody tr'))
      .map(r => Array.from(r.querySelectorAll('td')).map(e => e.textContent.trim())) : [];
  return {
    head, rows,
    htmls: Array.from(q('.widget-html-content')).map(e => e.textContent.trim()),
    outputs: Array.from(q('.widget-output')).map(e => e.innerText.trim()).filter(t => t),
    points: q('.js-plotly-plot .subplot.xy .scatterlayer .trace .point').length,
    accTraces: q('.js-plotly-plot .subplot.xy .scatterlayer .trace').length,
    diagTraces: q('.js-plotly-plot .subplot.x2y2 .scatterlayer .trace').length,
    legend: Array.from(q('.js-plotly-plot .legend .legendtext')).map(e => e.textContent),
  };
}"""
JS_WIDGET_PROBLEMS = """() => {
  const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  const problems = [];
  for (const o of nb.querySelectorAll('.jp-OutputArea-output')) {
    const t = o.innerText || '';
    if (t.includes('Error displaying widget')) problems.push('widget failed to render: ' + t.slice(0, 200));
    if (t.trim() === 'Loading widget...') problems.push('widget never loaded ("Loading widget...")');
    if (/^(VBox|HBox|Box|FigureWidget|IntSlider|Button|Output|HTML|Tab|Accordion)\\(/.test(t.trim()))
      problems.push('widget shown as its text repr (widget JS missing?): ' + t.slice(0, 120));
  }
  for (const p of nb.querySelectorAll('.js-plotly-plot')) {
    const svg = p.querySelector('svg.main-svg');
    const r = p.getBoundingClientRect();
    if (!svg || r.width < 50 || r.height < 50) problems.push('plotly figure not drawn (' + r.width + 'x' + r.height + ')');
  }
  return problems;
}"""
JS_TRACEBACKS = """() => Array.from(document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
  .map(e => e.innerText).filter(t => /Traceback \\(most recent call last\\)|^\\w*(Error|Exception):/m.test(t))
  .map(t => t.slice(0, 1500))"""
JS_SCROLLER = "document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer')"


# ---------------------------------------------------------------------------------------------------- helpers
def _wait(page, js: str, timeout_s: float, what: str, arg=None, polling: int = 500):
    from playwright.sync_api import TimeoutError as PWTimeout

    try:
        page.wait_for_function(js, arg=arg, timeout=timeout_s * 1000, polling=polling)
    except PWTimeout:
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}") from None


def _open_notebook(page, lab: "Lab", name: str) -> None:
    page.goto(lab.notebook_url(name), timeout=T_PAGE * 1000)
    page.wait_for_selector(".jp-NotebookPanel .jp-CodeCell", timeout=T_PAGE * 1000)
    deadline = time.monotonic() + T_PAGE
    while not page.evaluate(JS_KERNEL_IDLE):
        dialog = page.locator(".jp-Dialog")
        if dialog.count():
            raise AssertionError(f"JupyterLab shows a dialog instead of starting the kernel: "
                                 f"{dialog.first.inner_text()[:300]!r}")
        assert time.monotonic() < deadline, f"kernel of {name} not idle after {T_PAGE:.0f} s"
        time.sleep(0.5)


def _run_all(page) -> None:
    """Run > Run All Cells, as a student would; then wait until no cell is queued or running."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    item = page.locator('.lm-Menu-content .lm-Menu-item[data-command="runmenu:run-all"]')
    item.wait_for(state="visible", timeout=10_000)
    assert "Run All Cells" in item.inner_text()
    item.click()
    # started: some cell queued/running, or (very fast) every code cell already has a number
    _wait(page, f"""() => {{ const p = ({JS_PROMPTS})();
             return p.some(t => t.includes('*')) || (p.length > 0 && p.every(t => /\\[\\d+\\]/.test(t))); }}""",
          60, "Run All Cells to start")
    _wait(page, f"() => ({JS_KERNEL_IDLE})() && !({JS_PROMPTS})().some(t => t.includes('*'))", T_NOTEBOOK,
          "all cells to finish (kernel idle, no [*] prompt)", polling=1000)


def _save(page, lab: "Lab", name: str) -> dict:
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    _wait(page, "() => !window.jupyterapp.shell.currentWidget.context.model.dirty", 60, f"{name} to be saved")
    return json.loads((lab.root / f"{name}.ipynb").read_text())


def _collapse_sidebars(page) -> None:
    page.evaluate("() => { window.jupyterapp.shell.collapseLeft(); window.jupyterapp.shell.collapseRight(); }")


JS_CONTENT_HEIGHT = f"""() => {{
  const o = {JS_SCROLLER}, cells = o.querySelectorAll('.jp-Cell');
  const last = cells[cells.length - 1].getBoundingClientRect().bottom;
  return [Math.ceil(last - o.getBoundingClientRect().top + o.scrollTop) + 20, o.clientHeight];
}}"""


def _frames(page, n: int = 2) -> None:
    """Wait until the browser has painted ``n`` more frames (layout settled after a change), not a fixed time."""
    page.evaluate("(n) => new Promise(r => { const f = k => k ? requestAnimationFrame(() => f(k - 1)) : r(); f(n); })",
                  n)


def _screenshot(page, path: Path) -> list[Path]:
    """The whole notebook: the viewport is made as tall as the notebook's cells (in parts of at most
    ``SHOT_MAX_HEIGHT`` pixels when taller), so the image shows every cell and output as the student sees it."""
    _collapse_sidebars(page)
    _frames(page)
    chrome = VIEWPORT["height"] - page.evaluate(JS_CONTENT_HEIGHT)[1]  # menu, toolbar, status bar
    # lay the notebook out at the screenshot size first: outputs (math, plots) settle there, then measure
    page.set_viewport_size({"width": VIEWPORT["width"], "height": SHOT_MAX_HEIGHT})
    content, previous = 0, -1
    for _ in range(40):  # until the notebook's height stops changing (math, plots laid out)
        _frames(page, 4)
        content, previous = page.evaluate(JS_CONTENT_HEIGHT)[0], content
        if content == previous:
            break
    paths, offset = [], 0
    while offset < content:
        for _ in range(5):  # outputs scrolled into view may still grow the notebook: fit the part to them
            height = min(chrome + content - offset, SHOT_MAX_HEIGHT)
            page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
            _frames(page, 4)
            page.evaluate(f"(y) => {{ {JS_SCROLLER}.scrollTop = y; }}", offset)
            _frames(page, 4)
            content, client = page.evaluate(JS_CONTENT_HEIGHT)
            if min(chrome + content - offset, SHOT_MAX_HEIGHT) == height:
                break
        p = path if not paths else path.with_name(f"{path.stem}_part{len(paths) + 1}{path.suffix}")
        page.screenshot(path=str(p))
        paths.append(p)
        offset += client
    page.set_viewport_size(VIEWPORT)
    return paths


def _panel_screenshot(page, path: Path) -> None:
    """The TrainingPanel alone, with the viewport tall enough that no toolbar covers part of it."""
    _collapse_sidebars(page)
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .sslteach-panel").first
    box = panel.bounding_box()
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], int(box["height"]) + 400)})
    _frames(page, 4)
    panel.scroll_into_view_if_needed()
    _frames(page, 2)
    panel.screenshot(path=str(path))
    page.set_viewport_size(VIEWPORT)


def _panel_state(panel) -> dict:
    return panel.evaluate(JS_PANEL_STATE)


def _has_slider(panel, label: str) -> bool:
    return panel.locator(".widget-slider").filter(has=panel.page.locator(".widget-label", has_text=re.compile(
        rf"^\s*{re.escape(label)}\s*$"))).count() > 0


def _slider(panel, label: str):
    box = panel.locator(".widget-slider").filter(has=panel.page.locator(".widget-label", has_text=re.compile(
        rf"^\s*{re.escape(label)}\s*$")))
    assert box.count() >= 1, f"no slider labelled {label!r} in the TrainingPanel"
    box = box.first
    return box, box.locator(".noUi-handle"), box.locator(".widget-readout")


def _press_on_slider(page, handle, readout, key: str, expect: str, what: str) -> None:
    handle.scroll_into_view_if_needed()
    handle.focus()
    handle.press(key)
    try:
        page.wait_for_function("([r, v]) => r.textContent.trim() === v", arg=[readout.element_handle(), expect],
                               timeout=10_000)
    except Exception:  # noqa: BLE001 - fall back to typing into the editable readout, as a student also can
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type(expect)
        page.keyboard.press("Enter")
    got = readout.inner_text().strip()
    assert got == expect, f"{what}: slider reads {got!r} after {key}, expected {expect!r}"


def _row(state: dict, i: int) -> dict:
    return dict(zip(state["head"], state["rows"][i]))


def _exercise_panel(page, name: str, report: list[str]) -> None:
    """Slider + Train updates the curve and the table; Stop ends a long run and keeps its curve."""
    from playwright.sync_api import expect

    panels = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .sslteach-panel")
    assert panels.count() >= 1, f"{name}: no TrainingPanel (.sslteach-panel) rendered"
    panel = panels.first
    panel.scroll_into_view_if_needed()
    budget_label = "labels/class" if _has_slider(panel, "labels/class") else "imbalance ratio"
    _, labels_handle, labels_readout = _slider(panel, budget_label)
    _, steps_handle, steps_readout = _slider(panel, "steps")
    train = panel.locator("button.widget-button", has_text=re.compile(r"^\s*Train\s*$")).first
    stop = panel.locator("button.widget-button", has_text=re.compile(r"^\s*Stop\s*$")).first
    for what, loc in ((f"{budget_label} slider", labels_handle), ("Train button", train), ("Stop button", stop),
                      ("live plot", panel.locator(".js-plotly-plot").first),
                      ("results table", panel.locator("table.sslteach-results, .widget-html-content").first)):
        expect(loc, f"{name}: {what} not visible").to_be_visible(timeout=10_000)
    expect(train).to_be_enabled()
    expect(stop).to_be_disabled()

    # --- the notebook's own method (first one that is not the baseline): its knobs replace the previous ones
    select = panel.locator(".widget-dropdown").filter(has=page.locator(".widget-label", has_text="method")).first
    methods = [o.strip() for o in select.locator("option").all_inner_texts()]
    method = next((m for m in methods if m != "supervised"), methods[0])
    if select.locator("select").input_value() != method:
        select.locator("select").select_option(method)
        _wait(page, """([p, m]) => Array.from(p.querySelectorAll('.widget-html-content b'))
                  .some(b => b.textContent.trim() === m)""", 60, f"the knobs of {method} to appear",
              arg=[panel.element_handle(), method])

    # --- label budget slider + Train
    s0 = _panel_state(panel)
    n0 = len(s0["rows"])
    v0 = int(float(labels_readout.inner_text().strip()))
    vmax = int(float(labels_handle.get_attribute("aria-valuemax")))
    vmin = int(float(labels_handle.get_attribute("aria-valuemin")))
    if budget_label == "imbalance ratio" or v0 >= vmax:  # a smaller imbalance ratio is always a valid split
        key, v1 = ("ArrowLeft", v0 - 1) if v0 > vmin else ("ArrowRight", v0 + 1)
    else:
        key, v1 = "ArrowRight", v0 + 1
    _press_on_slider(page, labels_handle, labels_readout, key, str(v1), "label budget")
    steps_quick = int(steps_readout.inner_text().strip())
    t0 = time.perf_counter()
    train.click()
    _wait(page, "([p, n]) => p.querySelectorAll('table.sslteach-results tbody tr').length > n", T_TRAIN,
          "the Train button's run to reach the results table", arg=[panel.element_handle(), n0])
    s1 = _panel_state(panel)
    deadline = time.perf_counter() + 30 * SCALE  # the table's row can reach the page before the figure's update
    while (s1["points"] <= s0["points"] or s1["accTraces"] <= s0["accTraces"]) and time.perf_counter() < deadline:
        page.wait_for_timeout(500)
        s1 = _panel_state(panel)
    row = _row(s1, -1)
    shown = [t for t in s1["htmls"] if t.startswith("Error")] + s1["outputs"]
    assert not shown, f"{name}: the panel shows an error: {shown}"
    if budget_label == "labels/class":
        assert row.get("labels/class") == str(v1), f"{name}: the slider's budget {v1} did not reach training: {row}"
    assert row.get("method") == method, f"{name}: the dropdown's method {method!r} did not reach training: {row}"
    assert row.get("steps") == str(steps_quick), f"{name}: expected a {steps_quick}-step run: {row}"
    assert s1["points"] > s0["points"], f"{name}: live accuracy curve got no points ({s0['points']} -> {s1['points']})"
    assert s1["accTraces"] > s0["accTraces"], f"{name}: no new accuracy curve for the new run"
    assert s1["diagTraces"] >= 1, f"{name}: no loss/diagnostic curve in the right-hand plot"
    assert any(t.startswith(f"#{row['run']} ") for t in s1["legend"]), \
        f"{name}: no legend entry for run #{row['run']}: {s1['legend']}"
    expect(train).to_be_enabled(timeout=30_000)
    expect(stop).to_be_disabled(timeout=30_000)
    report.append(f"Train {method} ({steps_quick} steps, labels/class {v1}) {time.perf_counter() - t0:.1f} s: "
                  f"+{s1['points'] - s0['points']} points, row {row.get('test accuracy')}, curves {s1['legend']}")

    # --- Stop interrupts a long run; the curve and the row are kept
    smax = str(int(float(steps_handle.get_attribute("aria-valuemax"))))
    _press_on_slider(page, steps_handle, steps_readout, "End", smax, "steps slider to its maximum")
    t0 = time.perf_counter()
    train.click()
    expect(stop, f"{name}: Stop not enabled while training").to_be_enabled(timeout=60_000)
    _wait(page, "([p, n]) => p.querySelectorAll('.js-plotly-plot .subplot.xy .scatterlayer .trace .point').length > n",
          T_FIRST_POINT, "the first evaluation of the long run", arg=[panel.element_handle(), s1["points"]])
    points_at_stop = _panel_state(panel)["points"]
    stop.click()
    _wait(page, "([p, n]) => p.querySelectorAll('table.sslteach-results tbody tr').length > n", T_STOP,
          "the stopped run to reach the results table", arg=[panel.element_handle(), n0 + 1])
    _frames(page, 4)
    s2 = _panel_state(panel)
    row = _row(s2, -1)
    shown = [t for t in s2["htmls"] if t.startswith("Error")] + s2["outputs"]
    assert not shown, f"{name}: the panel shows an error after Stop: {shown}"
    assert row.get("note") == "stopped early", f"{name}: the stopped run's row: {row}"
    assert int(row["steps"]) < int(smax), f"{name}: Stop did not end the {smax}-step run early: {row}"
    assert s2["points"] >= points_at_stop > s1["points"], \
        f"{name}: the curve lost its points on Stop ({points_at_stop} -> {s2['points']})"
    expect(train).to_be_enabled(timeout=30_000)
    expect(stop).to_be_disabled(timeout=30_000)
    report.append(f"Stop after {row['steps']}/{smax} steps ({time.perf_counter() - t0:.1f} s): row 'stopped early', "
                  f"curve kept {s2['points'] - s1['points']} points")



# ------------------------------------------------------------------------------------------------- the executor
def _needs_panel(name: str) -> bool:
    """The paper notebooks and the start page each have a TrainingPanel (the comparison notebook has its own)."""
    return name[:2].isdigit() and int(name[:2]) <= 9


def execute(name: str, parameters: dict, folder: Path, record: dict) -> None:
    """Run ``name`` in JupyterLab with ``parameters``; fill ``record`` (report, screenshots, timings); save the
    executed notebook to ``folder/<name>.ipynb``. Raises ``AssertionError`` with what a student would have seen
    go wrong."""
    sess = session(folder)
    lab = sess.lab
    lab.add_notebook(name, parameters)
    record["browser_start_seconds"] = sess.start_seconds
    shots = folder / "screenshots"
    shots.mkdir(exist_ok=True)
    context = sess.browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page_errors: list[str] = []
    console_errors: list[str] = []
    page.on("pageerror", lambda e: page_errors.append(str(e)))
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    report = record["report"]
    try:
        _open_notebook(page, lab, name)
        t0 = time.perf_counter()
        _run_all(page)
        record["run_all_seconds"] = time.perf_counter() - t0
        report.append(f"Run All Cells {record['run_all_seconds']:.0f} s")

        # every code cell ran, none has an error output (the model's outputs, the DOM and the saved file agree)
        prompts = page.evaluate(JS_PROMPTS)
        not_run = [i for i, p in enumerate(prompts) if not re.search(r"\[\d+\]", p)]
        outputs = page.evaluate(JS_OUTPUT_TYPES)
        errors = [f"code cell {i}: {o.get('ename')}: {o.get('evalue')}" for i, outs in enumerate(outputs)
                  for o in outs if o.get("output_type") == "error"]
        assert not errors, f"{name}: error output(s) after Run All Cells: {errors}"
        assert not not_run, f"{name}: code cells {not_run} did not run (prompts {prompts})"
        saved = _save(page, lab, name)
        shutil.copy(lab.root / f"{name}.ipynb", folder / f"{name}.ipynb")  # the executed notebook, for the book
        saved_errors = ["".join(c["source"])[:80] for c in saved["cells"] if c["cell_type"] == "code"
                        and any(o["output_type"] == "error" for o in c.get("outputs", []))]
        assert not saved_errors, f"{name}: saved notebook has error outputs in cells starting {saved_errors}"
        results = Path(parameters["results_path"])
        assert results.exists(), f"{name}: the last cell did not write its results to {results}"
        json.loads(results.read_text())

        # widgets rendered
        _wait(page, """() => !document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)').innerText
                 .includes('Loading widget...')""", 60, "every widget to load")
        problems = page.evaluate(JS_WIDGET_PROBLEMS)
        assert not problems, f"{name}: widgets did not render: {problems}"
        has_panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .sslteach-panel").count() > 0
        if _needs_panel(name) or has_panel:
            assert page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .js-plotly-plot").count() >= 1, \
                f"{name}: no plotly figure rendered"
            _exercise_panel(page, name, report)

        tracebacks = page.evaluate(JS_TRACEBACKS)
        assert not tracebacks, f"{name}: traceback(s) in the page:\n" + "\n---\n".join(tracebacks)
        widget_console = [m for m in console_errors if re.search(r"widget|anywidget|plotly|model", m, re.I)]
        assert not page_errors, f"{name}: uncaught JavaScript errors: {page_errors}"
        assert not widget_console, f"{name}: widget errors in the browser console: {widget_console}"

        page.mouse.move(0, 0)  # no hover effects (plotly's mode bar) in the pictures
        t0 = time.perf_counter()
        paths = []
        if has_panel:
            _panel_screenshot(page, shots / f"{name}_panel.png")
            paths.append(shots / f"{name}_panel.png")
        paths += _screenshot(page, shots / f"{name}.png")
        record["screenshots"] = [str(p) for p in paths]
        record["screenshot_seconds"] = time.perf_counter() - t0
        report.append(f"screenshots ({record['screenshot_seconds']:.0f} s): " + ", ".join(p.name for p in paths))
        if name in SLIDESHOW:  # the same kernel, its widgets live: the notebook as a RISE slideshow
            show = record["slideshow"] = {}
            try:
                slideshow(context, lab, name, show, shots)
            except Exception as e:  # noqa: BLE001 - reported by test_notebook_as_a_rise_slideshow only
                show["error"] = f"{type(e).__name__}: {e}"
            record["screenshots"] += show.get("screenshots", [])
    except BaseException:
        try:
            page.screenshot(path=str(shots / f"{name}_FAILED.png"), full_page=True)
            record["screenshots"] = record.get("screenshots", []) + [str(shots / f"{name}_FAILED.png")]
        except Exception:  # noqa: BLE001 - the original failure matters more
            pass
        if console_errors:
            report.append(f"browser console errors: {console_errors[:20]}")
        raise
    finally:
        context.close()
        lab.shutdown_kernels()
        artifacts = os.environ.get("SSLTEACH_ARTIFACTS")
        if artifacts:
            Path(artifacts).mkdir(parents=True, exist_ok=True)
            for p in record.get("screenshots", []):
                if Path(p).exists():
                    shutil.copy(p, Path(artifacts) / Path(p).name)


# ------------------------------------------------------------------------------------------------ the slideshow
#: The notebooks the suite also shows as a RISE slideshow (issue 28): the start page, a method, the comparison.
SLIDESHOW = ("00_start_here", "03_fixmatch", "10_compare")
T_SLIDES = 120 * SCALE      # the RISE app loaded, reveal.js showing the first slide
#: What the browser console says when the RISE app cannot load the ipywidgets manager (jupyterlab-contrib/rise#119;
#: labextension/static/remoteEntry.js is the stand-in that fixes it).
WIDGET_MANAGER_FAILURES = re.compile(r"Failed to create module: package: @jupyter-widgets|jupyterWidgetRegistry|"
                                     r"anywidget:plugin", re.I)
JS_SLIDE_STATE = """() => {
  const cur = document.querySelector('.reveal .slides > section.present');
  const sub = cur && (cur.querySelector('section.present') || cur);
  const q = s => sub ? sub.querySelectorAll(s) : [];
  return {hash: location.hash, text: sub ? sub.innerText.trim().slice(0, 200) : '',
          images: Array.from(q('img')).filter(i => i.naturalWidth > 0).length,
          panels: q('.sslteach-panel').length, compare: q('.sslteach-compare').length,
          plots: q('.js-plotly-plot svg.main-svg').length,
          reprs: Array.from(q('.jp-OutputArea-output')).map(o => o.innerText.trim())
                   .filter(t => /^(VBox|HBox|FigureWidget|Box)\\(/.test(t)).length};
}"""
JS_SLIDE_POINTS = """() => {
  const cur = document.querySelector('.reveal .slides > section.present');
  const sub = cur && (cur.querySelector('section.present') || cur);
  return sub ? sub.querySelectorAll('.sslteach-panel .js-plotly-plot .subplot.xy .scatterlayer .trace .point').length : 0;
}"""


def slideshow(context, lab: "Lab", name: str, record: dict, shots: Path) -> None:
    """The executed notebook (its kernel still running, with the slide metadata of :mod:`sslteach.lecture`'s rule) as
    a RISE slideshow, what *View → Rise Slides* opens (jupyterlab-rise's ``/rise/`` app): one reveal.js section per
    slide and subslide of the rule; Space moves through every one to the last; the markdown is rendered and the
    figures shown; the widgets render on their slides (no "VBox(...)" text); on the training panel's slide, Train
    starts a run, Stop ends it and its row reaches the results table. Fills ``record`` (counts, slides
    seen, screenshots, the live curve's points); raises ``AssertionError`` with what went wrong."""
    from sslteach import lecture

    counts = lecture.slide_counts(json.loads((lab.root / f"{name}.ipynb").read_text()))
    page = context.new_page()
    page.set_default_timeout(60_000)
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type in ("error", "warning") else None)
    record.update(counts=counts, seen=[], screenshots=[], trained=None)
    try:
        t0 = time.perf_counter()
        page.goto(f"{lab.url}/rise/{name}.ipynb?token={lab.token}", timeout=T_SLIDES * 1000)
        page.wait_for_selector(".reveal .slides > section.present", timeout=T_SLIDES * 1000)
        _wait(page, "() => location.hash.startsWith('#/slide-0')", T_SLIDES, "reveal.js to show the first slide")
        _wait(page, "() => !document.querySelector('.reveal').innerText.includes('Loading widget...')", 60,
              "the widgets of the slideshow to load")
        _frames(page, 4)
        record["open_seconds"] = time.perf_counter() - t0
        top = page.evaluate("() => document.querySelectorAll('.reveal .slides > section').length")
        every = page.evaluate("() => document.querySelectorAll('.reveal .slides section').length") - top
        assert top == counts.get("slide", 0), f"{name}: {top} slides in the slideshow, the rule gives {counts}"
        assert every == counts.get("slide", 0) + counts.get("subslide", 0), \
            f"{name}: {every} slides and subslides in the slideshow, the rule gives {counts}"
        title = page.evaluate(JS_SLIDE_STATE)["text"]
        assert title.startswith(name[:2]), f"{name}: the first slide does not show the title: {title[:80]!r}"
        seen = record["seen"]
        for _ in range(every + 2):  # Space: the next slide or subslide, in reading order
            state = page.evaluate(JS_SLIDE_STATE)
            if seen and state["hash"] == seen[-1]["hash"]:
                break
            seen.append(state)
            if len(seen) <= 2 or state["panels"] or state["compare"]:
                path = shots / f"{name}_slide{len(seen)}.png"
                page.screenshot(path=str(path))
                record["screenshots"].append(str(path))
            if state["panels"] and record["trained"] is None:
                record["trained"] = _train_on_slide(page, name, shots, record)
            page.keyboard.press("Space")
            _frames(page, 3)
        assert len(seen) == every, f"{name}: Space went through {len(seen)} of {every} slides"
        raw = [s["text"][:60] for s in seen if re.match(r"#{1,3} ", s["text"])]
        assert not raw, f"{name}: markdown not rendered on the slides: {raw}"
        assert any(s["images"] for s in seen), f"{name}: no figure on any slide"
        manager = [m[:300] for m in console if WIDGET_MANAGER_FAILURES.search(m)]
        assert not manager, f"{name}: the widget manager did not load in the slideshow: {manager[:3]}"
        reprs = [i + 1 for i, s in enumerate(seen) if s["reprs"]]
        assert not reprs, f"{name}: widgets shown as text (not rendered) on slides {reprs}"
        if _needs_panel(name):
            assert record["trained"], f"{name}: no training panel on any slide"
        else:
            assert any(s["panels"] or s["compare"] for s in seen), f"{name}: no panel rendered on any slide"
        record["seconds"] = time.perf_counter() - t0
    except BaseException:
        try:
            page.screenshot(path=str(shots / f"{name}_slides_FAILED.png"))
            record["screenshots"].append(str(shots / f"{name}_slides_FAILED.png"))
        except Exception:  # noqa: BLE001 - the original failure matters more
            pass
        raise
    finally:
        page.close()


def _train_on_slide(page, name: str, shots: Path, record: dict) -> str:
    """On the panel's slide: Train starts a run (the steps slider is at its maximum after the panel test), Stop ends
    it, and its row reaches the results table ("stopped early"): the buttons and the table of the live widgets work
    on the slide. (No key presses on the sliders: RISE takes Home / End / Page keys for moving between slides.) The
    live curve's points before and after go to ``record["curve_points"]``."""
    from playwright.sync_api import expect

    slide = page.locator(".reveal .slides > section.present")
    panel = slide.locator(".sslteach-panel").first
    train = panel.locator("button.widget-button", has_text=re.compile(r"^\s*Train\s*$")).first
    stop = panel.locator("button.widget-button", has_text=re.compile(r"^\s*Stop\s*$")).first
    panel.scroll_into_view_if_needed()
    expect(train, f"{name}: Train not enabled on the slide").to_be_enabled(timeout=30_000)
    rows = panel.locator("table.sslteach-results tbody tr").count()
    before = page.evaluate(JS_SLIDE_POINTS)
    t0 = time.perf_counter()
    train.click()
    expect(stop, f"{name}: Stop not enabled while training on the slide").to_be_enabled(timeout=60_000)
    time.sleep(2)  # a few steps and, in quick mode, an evaluation or two
    stop.click()
    _wait(page, "([p, n]) => p.querySelectorAll('table.sslteach-results tbody tr').length > n", T_STOP,
          "the run started on the slide to reach the results table", arg=[panel.element_handle(), rows])
    expect(train, f"{name}: Train not enabled again after the run on the slide").to_be_enabled(timeout=30_000)
    _frames(page, 4)
    last = panel.locator("table.sslteach-results tbody tr").last.inner_text()
    after = page.evaluate(JS_SLIDE_POINTS)
    record["curve_points"] = [before, after]
    path = shots / f"{name}_slide_trained.png"
    page.screenshot(path=str(path))
    record["screenshots"].append(str(path))
    return (f"Train + Stop on the slide: a new row in {time.perf_counter() - t0:.1f} s ({' '.join(last.split())}); "
            f"live curve points {before} -> {after}")
