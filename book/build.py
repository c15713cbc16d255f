"""Build the sslteach book: every notebook executed, rendered as a static HTML site (``make book``).

    python book/build.py                    # execute every notebook at its default settings, then build
    python book/build.py --quick            # quick mode (a smoke test of the whole pipeline)
    python book/build.py --executed DIR     # build from notebooks already executed (the test suite's runs)
    python book/build.py --only 03_fixmatch --out /tmp/book

Execution uses papermill with this interpreter's kernel and the run cache (``$SSLTEACH_CACHE`` or
``~/.cache/sslteach/runs``), so a rebuild re-trains nothing that has not changed. The site (``build/book/html`` by
default; open ``index.html``) works offline: MathJax is bundled, nothing is loaded from a CDN. Each notebook page
gets a note with its launch links, since the sliders and buttons need a live kernel; interactive widget outputs
are replaced by that note (the notebooks draw every figure a reader needs as a static figure too). An error output
in any notebook stops the build.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NOTEBOOKS = ROOT / "notebooks"
REPO = "sslteach/sslteach"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
CELL_TIMEOUT = 1800       # seconds per cell at default settings (the longest optional cells train for minutes)
CELL_TIMEOUT_QUICK = 300

#: The notebooks that teach no method of their own (the others take their papers from the method classes).
OTHER_NOTEBOOKS = {"00_start_here": "—", "10_compare": "every method of the collection"}


def papers() -> dict[str, str]:
    """The paper(s) of each notebook, for the map on the landing page: the ``paper`` of every registered method,
    grouped by its ``notebook`` (a new method's notebook needs no line here)."""
    from sslteach.methods import METHODS

    out: dict[str, list[str]] = {}
    for cls in METHODS.values():
        if cls.notebook and cls.paper:
            out.setdefault(cls.notebook, [])
            if cls.paper not in out[cls.notebook]:
                out[cls.notebook].append(cls.paper)
    return {**OTHER_NOTEBOOKS, **{nb: "; ".join(p) for nb, p in out.items()}}


def all_notebooks() -> list[str]:
    return sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def launch_links(name: str) -> tuple[str, str]:
    binder = f"https://mybinder.org/v2/gh/{REPO}/HEAD?urlpath=lab/tree/notebooks/{name}.ipynb"
    colab = f"https://colab.research.google.com/github/{REPO}/blob/main/notebooks/{name}.ipynb"
    return binder, colab


# ------------------------------------------------------------------------------------------------ execution
def execute(names: list[str], out: Path, quick: bool) -> dict[str, float]:
    """Run each notebook with papermill into ``out``; returns the seconds each took."""
    import papermill as pm

    from sslteach.execute import private_kernelspec  # the project's own interpreter as the `python3` kernel

    work = out.parent / "work"
    work.mkdir(parents=True, exist_ok=True)
    results = out.parent / "results"
    results.mkdir(exist_ok=True)
    seconds = {}
    with private_kernelspec(out.parent / "jupyter-data"):
        for name in names:
            t0 = time.perf_counter()
            print(f"executing {name} ({'quick' if quick else 'default settings'}) ...", flush=True)
            params = {"results_path": str(results / f"{name}.json")}
            if quick:
                params["quick"] = True
            for attempt in (1, 2):  # a cell that outlives its limit is retried once (finished runs: from the cache)
                try:
                    pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out / f"{name}.ipynb"),
                                        parameters=params, kernel_name="python3", cwd=str(work), progress_bar=False,
                                        execution_timeout=CELL_TIMEOUT_QUICK if quick else CELL_TIMEOUT)
                    break
                except Exception as e:  # noqa: BLE001
                    if attempt == 2 or "Timeout" not in type(e).__name__ + str(e)[:300]:
                        raise
                    print(f"  {name}: a cell timed out; running the notebook again", flush=True)
            seconds[name] = time.perf_counter() - t0
            print(f"  {name}: {seconds[name]:.0f} s", flush=True)
    return seconds


# ------------------------------------------------------------------------------------------------ the pages
def _note(name: str) -> str:
    binder, colab = launch_links(name)
    return (f'<div class="sslteach-live-note">This page is a static, executed copy of '
            f'<code>notebooks/{name}.ipynb</code>. Its sliders and buttons (the training panels, the interactive '
            f'plots) need a live kernel: <a href="{binder}">open it on Binder</a> or '
            f'<a href="{colab}">in Colab</a>, or run <code>make lab</code> locally. Every figure they make is also '
            f'drawn below as a static figure.</div>')


def prepare_notebook(src: Path, dst: Path, name: str) -> None:
    """Check an executed notebook (no error output) and adapt it for a static page."""
    nb = nbformat.read(src, as_version=4)
    errors = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
              and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    if errors:
        raise SystemExit(f"book: {name} has error outputs in code cells {errors}: fix the notebook first")
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "install" in tags:
            tags.append("remove-cell")  # the Colab install cell: noise on a static page
        if cell.cell_type != "code":
            continue
        kept = []
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if WIDGET_MIME in data:  # an interactive widget: nothing to show without a kernel
                kept.append(nbformat.v4.new_output("display_data", data={
                    "text/html": "<p><i>[interactive widget: it needs a live kernel — see the note at the top of "
                                 "the page; its result is drawn as a static figure below]</i></p>",
                    "text/plain": "[interactive widget]"}))
                continue
            kept.append(o)
        cell.outputs = kept
    nb.metadata.pop("widgets", None)
    note = nbformat.v4.new_markdown_cell(_note(name))
    first_heading = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
                          and c.source.lstrip().startswith("# ")), 0)
    nb.cells.insert(first_heading + 1, note)
    nbformat.write(nb, dst)


def title_of(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        if c.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", c.source, re.M)
            if m:
                return m.group(1).strip()
    return path.stem


def notebook_map(names: list[str], src: Path, seconds: dict[str, float], mode: str) -> str:
    rows = ["| notebook | paper(s) | executed for this build |", "|---|---|---|"]
    by_notebook = papers()
    for name in names:
        secs = f"{seconds[name]:.0f} s ({mode})" if name in seconds else mode
        rows.append(f"| [{title_of(src / 'notebooks' / f'{name}.ipynb')}](notebooks/{name}.ipynb) | "
                    f"{by_notebook.get(name, '—')} | {secs} |")
    return "\n".join(rows) + "\n"


def build(out: Path, names: list[str], executed: Path | None, quick: bool) -> Path:
    t0 = time.perf_counter()
    src, html = out / "src", out / "html"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(HERE, src, ignore=shutil.ignore_patterns("build.py", "__pycache__", "_build"))
    (src / "notebooks").mkdir()
    (src / "_generated").mkdir()
    if executed is None:
        executed = out / "executed"
        executed.mkdir(parents=True, exist_ok=True)
        seconds = execute(names, executed, quick)
        mode = "quick mode" if quick else "default settings"
    else:
        seconds, mode = {}, "executed elsewhere"
        timing = executed / "timings.json"
        if timing.exists():
            seconds = json.loads(timing.read_text())
    for name in names:
        path = executed / f"{name}.ipynb"
        if not path.exists():
            raise SystemExit(f"book: no executed notebook {path}")
        prepare_notebook(path, src / "notebooks" / f"{name}.ipynb", name)
    (src / "_generated" / "notebooks.md").write_text(notebook_map(names, src, seconds, mode))
    cmd = [sys.executable, "-m", "sphinx", "-q", "-b", "html", "-d", str(out / "doctrees"), str(src), str(html)]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if p.returncode != 0:
        raise SystemExit(f"book: sphinx failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    bad = [line for line in p.stderr.splitlines() if "ERROR" in line or "CRITICAL" in line]
    if bad:
        raise SystemExit("book: sphinx reported errors:\n" + "\n".join(bad[:20]))
    print(f"book: {len(names)} notebooks, built in {time.perf_counter() - t0:.0f} s -> {html / 'index.html'}")
    return html


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "build" / "book"), help="output folder (default: build/book)")
    ap.add_argument("--quick", action="store_true", help="execute the notebooks in quick mode")
    ap.add_argument("--executed", default=None, help="folder of executed notebooks to build from (no execution)")
    ap.add_argument("--only", nargs="*", default=None, help="notebook names (default: all)")
    args = ap.parse_args(argv)
    names = args.only or all_notebooks()
    unknown = [n for n in names if n not in all_notebooks()]
    if unknown:
        ap.error(f"unknown notebooks {unknown}; valid: {', '.join(all_notebooks())}")
    build(Path(args.out), names, Path(args.executed) if args.executed else None, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
