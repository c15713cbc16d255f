"""Build the sslteach book: every notebook executed, rendered as a static HTML site (``make book``).

    python book/build.py                    # execute every notebook at its default settings, then build
    python book/build.py --quick            # quick mode (a smoke test of the whole pipeline)
    python book/build.py --executed DIR     # build from notebooks already executed (the test suite's runs)
    python book/build.py --only 03_fixmatch --out /tmp/book
    python book/build.py --slides-only --out build/slides   # ``make slides``: the reveal.js slides alone

Execution uses papermill's parameters and the project's watchdog executor (:func:`sslteach.execute.execute_notebook`:
a kernel that goes idle with a reply outstanding is noticed within a minute, said in one line, and the notebook is run
again; one line per cell) with this interpreter's kernel and the run cache (``$SSLTEACH_CACHE`` or
``~/.cache/sslteach/runs``), so a rebuild re-trains nothing that has not changed. The site (``build/book/html`` by
default; open ``index.html``) works offline: MathJax is bundled, nothing is loaded from a CDN. Each notebook page
gets a note with its launch links, since the sliders and buttons need a live kernel; interactive widget outputs
are replaced by that note (the notebooks draw every figure a reader needs as a static figure too). An error output
in any notebook stops the build. papermill's injected-parameters cell shows only the parameters a reader needs (no
path of the build machine). Beside each page: its reveal.js slides (``slides/NN.html``, nbconvert's slides exporter,
the cells' slide types by :mod:`sslteach.lecture`'s rule), with reveal.js and MathJax copied into the build (from
the ``sphinx-revealjs`` and ``sphinx-mathjax-offline`` packages): the slides work offline too.
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
SLIDES_TEMPLATE = HERE / "slides_template"   # nbconvert template: reveal.js and MathJax from the build, no CDN
SLIDE_SIZE = (1280, 720)                     # reveal.js slide size (16:9); fonts >= 24 px at this size

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
    """Run each notebook (papermill's parameters, the watchdog executor) into ``out``; returns the seconds each took."""
    from sslteach.execute import execute_notebook, private_kernelspec  # the project's own interpreter as `python3`

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
            # a lost reply or a cell over its limit: the notebook runs again (finished runs come from the cache)
            execute_notebook(NOTEBOOKS / f"{name}.ipynb", out / f"{name}.ipynb", params, cwd=work, label=name,
                             timeout=CELL_TIMEOUT_QUICK if quick else CELL_TIMEOUT, progress=True)
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
            f'drawn below as a static figure. <a class="sslteach-slides-link" href="../slides/{name}.html">Slides</a> '
            f'of this notebook (the core path; press <kbd>S</kbd> for the speaker notes).</div>')


#: Injected parameters a reader of the page does not need (plumbing of the build: where the results JSON goes).
HIDDEN_PARAMETERS = ("results_path",)


def rewrite_injected(source: str) -> str | None:
    """papermill's injected cell as the page shows it: without the build's plumbing (``results_path``, a path on the
    build machine); ``None`` when nothing else was injected (the cell is then left off the page)."""
    kept = [ln for ln in source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
            and ln.split("=")[0].strip() not in HIDDEN_PARAMETERS]
    if not kept:
        return None
    return "# Parameters of this build (injected by papermill; they override the cell above)\n" + "\n".join(kept)


def scrub_paths(text: str) -> str:
    """Printed output without the build machine's paths: "results written to <folder>/NN.json" keeps the file's
    name; the run cache folder, the checkout and the home folder become ``$SSLTEACH_CACHE``, ``<checkout>``, ``~``;
    any other path under /tmp, /home, /root, /Users keeps only its last part (``…/runs``)."""
    text = re.sub(r"(results written to )\S*/([^/\s]+\.json)", r"\1\2", text)
    cache = os.environ.get("SSLTEACH_CACHE", "")
    for path, label in sorted(((cache, "$SSLTEACH_CACHE"), (str(ROOT), "<checkout>"), (str(Path.home()), "~")),
                              key=lambda pl: -len(pl[0])):
        if len(path) > 1 and path.startswith("/"):
            text = text.replace(path, label)
    # any other folder of the build machine (a temporary folder, another user's home): its last part only
    return re.sub(r"(?<![\w.~$<])/(?:tmp|home|root|Users|var/folders)/\S*/([^/\s]+)", r"…/\1", text)


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
        if "injected-parameters" in tags:
            shown = rewrite_injected(cell.source)
            if shown is None:
                tags.append("remove-cell")
            else:
                cell.source = shown
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
            if o.get("output_type") == "stream":
                o["text"] = scrub_paths(o.get("text", ""))
            elif "text/plain" in data:
                data["text/plain"] = scrub_paths(data["text/plain"])
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
    rows = ["| notebook | paper(s) | slides | executed for this build |", "|---|---|---|---|"]
    by_notebook = papers()
    for name in names:
        secs = f"{seconds[name]:.0f} s ({mode})" if name in seconds else mode
        rows.append(f"| [{title_of(src / 'notebooks' / f'{name}.ipynb')}](notebooks/{name}.ipynb) | "
                    f"{by_notebook.get(name, '—')} | <a href=\"slides/{name}.html\">slides</a> | {secs} |")
    return "\n".join(rows) + "\n"


# ------------------------------------------------------------------------------------------------ the slides
def _package_dir(module: str) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(module)
    return Path(list(spec.submodule_search_locations)[0]) if spec and spec.submodule_search_locations else None


def reveal_source() -> Path:
    """A reveal.js 4/5 distribution (``dist/reveal.js``, ``plugin/notes/notes.js``): ``$SSLTEACH_REVEAL_DIR``, the
    copy inside the ``sphinx-revealjs`` package (PyPI; ``pip install -e '.[book]'``), or the npm package
    ``reveal.js@5.2.0`` fetched once with ``npm pack`` into ``~/.cache/sslteach/vendor``."""
    env = os.environ.get("SSLTEACH_REVEAL_DIR")
    candidates = [Path(env)] if env else []
    pkg = _package_dir("sphinx_revealjs")
    if pkg:
        candidates.append(pkg / "_static" / "revealjs")
    cache = Path.home() / ".cache" / "sslteach" / "vendor" / "reveal.js-5.2.0"
    candidates.append(cache / "package")
    for c in candidates:
        if (c / "dist" / "reveal.js").exists() and (c / "plugin" / "notes" / "notes.js").exists():
            return c
    if shutil.which("npm"):
        cache.mkdir(parents=True, exist_ok=True)
        p = subprocess.run(["npm", "pack", "reveal.js@5.2.0", "--silent"], cwd=cache, capture_output=True, text=True)
        tgz = next(cache.glob("reveal.js-*.tgz"), None)
        if p.returncode == 0 and tgz:
            import tarfile

            with tarfile.open(tgz) as t:
                t.extractall(cache, filter="data")
            if (cache / "package" / "dist" / "reveal.js").exists():
                return cache / "package"
    raise SystemExit("slides: no reveal.js found: pip install -e '.[book]' (sphinx-revealjs ships one), or set "
                     "SSLTEACH_REVEAL_DIR to an unpacked reveal.js 5 (npm pack reveal.js@5.2.0)")


def mathjax_source() -> Path:
    pkg = _package_dir("sphinx-mathjax-offline")
    if pkg and (pkg / "static" / "mathjax" / "tex-chtml.js").exists():
        return pkg / "static" / "mathjax"
    raise SystemExit("slides: MathJax not found: pip install sphinx-mathjax-offline (pip install -e '.[book]')")


def vendor_slide_assets(slides: Path) -> Path:
    """Copy reveal.js (the files the slides use), MathJax (CHTML, its fonts) and the slides' CSS to
    ``slides/assets``: the slides load nothing from outside the build."""
    assets = slides / "assets"
    reveal, mathjax = reveal_source(), mathjax_source()
    rdst = assets / "reveal.js"
    def only_white(folder, names):  # the one theme the slides use (others import fonts from the network)
        skip = set(shutil.ignore_patterns("*.map", "*.esm.js")(folder, names))
        if Path(folder).name == "theme":
            skip |= {n for n in names if n.endswith(".css") and n != "white.css"}
        if Path(folder).name == "fonts":
            skip |= {n for n in names if n != "source-sans-pro"}
        return skip

    shutil.copytree(reveal / "dist", rdst / "dist", dirs_exist_ok=True, ignore=only_white)
    (rdst / "plugin" / "notes").mkdir(parents=True, exist_ok=True)
    shutil.copy(reveal / "plugin" / "notes" / "notes.js", rdst / "plugin" / "notes" / "notes.js")
    if (reveal / "LICENSE").exists():
        shutil.copy(reveal / "LICENSE", rdst / "LICENSE")
    mdst = assets / "mathjax"
    mdst.mkdir(parents=True, exist_ok=True)
    shutil.copy(mathjax / "tex-chtml.js", mdst / "tex-chtml.js")
    shutil.copytree(mathjax / "output" / "chtml" / "fonts", mdst / "output" / "chtml" / "fonts", dirs_exist_ok=True)
    shutil.copy(HERE / "_static" / "slides.css", assets / "slides.css")
    return assets


def export_slides(prepared: Path, dst: Path) -> dict[str, int]:
    """The reveal.js slides of a prepared (executed, widget-free) notebook: the slide types by the rule of
    :mod:`sslteach.lecture` (whatever the notebook's own metadata says), reveal.js from ``assets/``."""
    from nbconvert import SlidesExporter

    from sslteach import lecture

    nb_json = lecture.apply_rule(json.loads(Path(prepared).read_text()))
    for cell in nb_json["cells"]:  # a cell the page hides (the install cell) is not a slide either
        if "remove-cell" in cell.get("metadata", {}).get("tags", []):
            cell["metadata"]["slideshow"]["slide_type"] = "skip"
    nb = nbformat.reads(json.dumps(nb_json), as_version=4)
    exporter = SlidesExporter(extra_template_basedirs=[str(SLIDES_TEMPLATE)], template_name="sslteach_slides",
                              reveal_url_prefix="assets/reveal.js", reveal_theme="white", reveal_scroll=True,
                              reveal_transition="none",
                              reveal_number="c/t", reveal_width=str(SLIDE_SIZE[0]), reveal_height=str(SLIDE_SIZE[1]),
                              exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title_of(prepared)}})
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(body, encoding="utf-8")
    return lecture.slide_counts(nb_json)


def build_slides(prepared_dir: Path, names: list[str], slides: Path) -> None:
    t0 = time.perf_counter()
    vendor_slide_assets(slides)
    for name in names:
        export_slides(prepared_dir / f"{name}.ipynb", slides / f"{name}.html")
    print(f"slides: {len(names)} decks in {time.perf_counter() - t0:.0f} s -> {slides}")


def build(out: Path, names: list[str], executed: Path | None, quick: bool, slides_only: bool = False) -> Path:
    t0 = time.perf_counter()
    src, html = out / "src", out / "html"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(HERE, src, ignore=shutil.ignore_patterns("build.py", "__pycache__", "_build", "slides_template"))
    (src / "notebooks").mkdir()
    (src / "_generated").mkdir()
    for page, target in (("LECTURERS.md", "lecturers.md"), ("CLAIMS.md", "claims.md")):
        path = ROOT / page  # the lecturers' guide and the table of the papers' claims are pages of the book too
        if path.exists():
            (src / target).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
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
    if slides_only:  # make slides: the decks in OUT itself (OUT/03_fixmatch.html, OUT/assets/)
        build_slides(src / "notebooks", names, out)
        return out
    cmd = [sys.executable, "-m", "sphinx", "-q", "-b", "html", "-d", str(out / "doctrees"), str(src), str(html)]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if p.returncode != 0:
        raise SystemExit(f"book: sphinx failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    bad = [line for line in p.stderr.splitlines() if "ERROR" in line or "CRITICAL" in line]
    if bad:
        raise SystemExit("book: sphinx reported errors:\n" + "\n".join(bad[:20]))
    build_slides(src / "notebooks", names, html / "slides")
    print(f"book: {len(names)} notebooks, built in {time.perf_counter() - t0:.0f} s -> {html / 'index.html'}")
    return html


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "build" / "book"), help="output folder (default: build/book)")
    ap.add_argument("--quick", action="store_true", help="execute the notebooks in quick mode")
    ap.add_argument("--executed", default=None, help="folder of executed notebooks to build from (no execution)")
    ap.add_argument("--only", nargs="*", default=None, help="notebook names (default: all)")
    ap.add_argument("--notebooks", default=None, help="folder of the notebooks to execute (default: notebooks/)")
    ap.add_argument("--slides-only", action="store_true",
                    help="only the reveal.js slides, in OUT (make slides: build/slides); no Sphinx")
    args = ap.parse_args(argv)
    if args.notebooks:
        global NOTEBOOKS
        NOTEBOOKS = Path(args.notebooks).resolve()
    names = args.only or all_notebooks()
    unknown = [n for n in names if n not in all_notebooks()]
    if unknown:
        ap.error(f"unknown notebooks {unknown}; valid: {', '.join(all_notebooks())}")
    build(Path(args.out), names, Path(args.executed) if args.executed else None, args.quick, args.slides_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
