"""The published book (issue 18): built from the suite's own quick-mode runs of the notebooks (no extra execution),
then read in Chromium as a reader would: every page loads offline, math is rendered by the bundled MathJax, every
notebook page shows its figures and the live-kernel note with its launch links, no error output, and every link
between pages leads to a page. Screenshots go to the run's folder (``$SSLTEACH_ARTIFACTS`` keeps them).
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import browser
import nbrun
import pytest
from conftest import IN_CI, ROOT, shared_dir

pytestmark = [pytest.mark.book, pytest.mark.timeout(2400)]


def _load_build():
    spec = importlib.util.spec_from_file_location("book_build", ROOT / "book" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    shared = shared_dir(tmp_path_factory)
    names = nbrun.all_notebooks()
    # the suite's runs, executed now where nobody has yet: first those no other worker is executing, then wait
    runs = {n: r for n in names if (r := nbrun.notebook_run(n, shared, block=False)) is not None}
    runs.update({n: nbrun.notebook_run(n, shared) for n in names if n not in runs})
    failed = {n: r["error"] for n, r in runs.items() if r["error"] and not Path(r["executed"]).exists()}
    if failed:
        pytest.fail(f"the book needs every notebook executed; these did not run: {failed}", pytrace=False)
    build = _load_build()
    out = tmp_path_factory.mktemp("book")
    html = build.build(out, names, shared / "notebooks", quick=True)
    return {"html": html, "names": names, "build": build}


def test_every_notebook_has_a_page_and_the_landing_page_maps_them(book):
    html = book["html"]
    index = (html / "index.html").read_text()
    assert (html / "notation.html").exists()
    for name in book["names"]:
        assert (html / "notebooks" / f"{name}.html").exists(), name
        assert f"notebooks/{name}.html" in index, f"the landing page does not link {name}"
    text = " ".join(re.sub(r"<[^>]+>", " ", index).split())  # the words a reader sees (inline code is split in spans)
    for words in ("What semi-supervised learning is", "How to run them yourself", "Binder", "Colab", "make lab"):
        assert words in text, words


def test_pages_have_no_error_output_and_the_widgets_are_explained(book):
    for name in book["names"]:
        page = (book["html"] / "notebooks" / f"{name}.html").read_text()
        assert "Traceback (most recent call last)" not in page, name
        assert 'class="sslteach-live-note"' in page and "mybinder.org" in page and "colab.research.google.com" in page
        assert "ipywidgets" not in page.lower() or "[interactive widget" in page  # no dead widget placeholders
        assert "cdn.jsdelivr" not in page and "unpkg.com" not in page, f"{name} loads from a CDN"


def test_the_build_refuses_a_notebook_with_an_error_output(book, tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), nbformat.v4.new_code_cell("1/0")]
    nb.cells[1].outputs = [nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero",
                                                  traceback=[])]
    nbformat.write(nb, tmp_path / "in.ipynb")
    with pytest.raises(SystemExit, match="error outputs"):
        book["build"].prepare_notebook(tmp_path / "in.ipynb", tmp_path / "out.ipynb", "x")


def _internal_links(page_html: str) -> list[str]:
    hrefs = re.findall(r'href="([^"#]+)(?:#[^"]*)?"', page_html)
    return [urlparse(h).path for h in hrefs  # a cache-busting ?digest=... is not part of the file name
            if not urlparse(h).scheme and not h.startswith(("//", "mailto:")) and urlparse(h).path]


def test_every_link_between_pages_leads_to_a_page(book):
    html = book["html"]
    broken = []
    for page in html.rglob("*.html"):
        if "_static" in page.parts:
            continue
        for href in _internal_links(page.read_text()):
            target = (page.parent / unquote(href)).resolve()
            if not target.exists():
                broken.append(f"{page.relative_to(html)} -> {href}")
    assert not broken, broken[:20]


def test_pages_in_chromium_offline_math_and_figures(book, tmp_path_factory):
    why = browser.available()
    if why:
        if IN_CI:
            pytest.fail(f"CI=true and the book pages cannot be checked: {why}", pytrace=False)
        pytest.skip(why)
    html = book["html"]
    shots = shared_dir(tmp_path_factory) / "book-screenshots"
    shots.mkdir(exist_ok=True)
    pages = ["index.html", "notation.html"] + [f"notebooks/{n}.html" for n in book["names"]]
    problems, network, js_errors = [], [], []
    # Playwright's sync API refuses to run in a thread with a running asyncio loop (a notebook executor may have
    # left one in this worker): read the pages in a thread of their own.
    outcome: dict = {}

    def read_pages():
        try:
            _read_pages(html, pages, shots, problems, network, js_errors)
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = e

    t = threading.Thread(target=read_pages, daemon=True)
    t.start()
    t.join()
    if "error" in outcome:
        raise outcome["error"]
    artifacts = os.environ.get("SSLTEACH_ARTIFACTS")
    if artifacts:
        shutil.copytree(shots, Path(artifacts) / "book", dirs_exist_ok=True)
    assert not network, f"the book tried to load from the network: {network[:10]}"
    assert not problems, problems
    assert not js_errors, js_errors[:5]


def _read_pages(html, pages, shots, problems, network, js_errors):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(browser.CHROMIUM), headless=True, args=browser.CHROMIUM_ARGS)
        try:
            ctx = b.new_context(viewport={"width": 1300, "height": 900})

            def route(r):  # offline: anything not in the book itself is refused, and noted
                if r.request.url.startswith("file://"):
                    return r.continue_()
                network.append(r.request.url)
                return r.abort()

            ctx.route("**/*", route)
            page = ctx.new_page()
            page.on("pageerror", lambda e: js_errors.append(str(e)))
            for rel in pages:
                page.goto((html / rel).as_uri())
                page.wait_for_load_state("load")
                has_math = bool(re.search(r'class="math|\\\(|\\\[', (html / rel).read_text()))  # not a $ in code
                if has_math:
                    try:
                        page.wait_for_function("() => document.querySelectorAll('mjx-container').length > 0",
                                               timeout=30_000)
                    except Exception:  # noqa: BLE001
                        problems.append(f"{rel}: math not rendered (no mjx-container)")
                text = page.inner_text("article") if page.locator("article").count() else page.inner_text("body")
                if "$$" in text:
                    problems.append(f"{rel}: raw $$ left in the text")
                if rel.startswith("notebooks/"):
                    imgs = page.evaluate("""() => Array.from(document.querySelectorAll('article img'))
                        .map(i => [i.complete && i.naturalWidth > 0, i.getAttribute('src').slice(0, 40)])""")
                    if not imgs:
                        problems.append(f"{rel}: no figure on the page")
                    problems += [f"{rel}: figure did not load ({s})" for ok, s in imgs if not ok]
                page.screenshot(path=str(shots / (rel.replace("/", "_") + ".png")))
        finally:
            b.close()
