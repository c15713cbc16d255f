"""The lecturer's kit (issue 28): the slide rule, handouts whose checkers still work, the watchdog executor that
notices a lost reply, ``prepare``, the lecturers' guide, and the book's slides and pages read in Chromium.

The handout test runs each handout's exercises in one kernel: the cells an exercise needs (found by reading which
names it uses and which earlier cells bind them, so no training runs unless an exercise needs it), then every
exercise three times — with the notebook's own solution put in place of the stub (the checker must pass), with the
solution's answers perturbed (it must fail), and as the handout has it (``NotImplementedError``: it must fail).
"""
from __future__ import annotations

import ast
import builtins
import json
import os
import re
import symtable
import time
from pathlib import Path

import nbformat
import pytest

from conftest import IN_CI, NOTEBOOKS, ROOT
from sslteach import lecture
from sslteach.execute import LostReply, WatchdogClient, execute_notebook, private_kernelspec, read_notebook

ALL = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _md(text):
    return nbformat.v4.new_markdown_cell(text)


def _code(text, tags=()):
    c = nbformat.v4.new_code_cell(text)
    if tags:
        c.metadata["tags"] = list(tags)
    return c


# ------------------------------------------------------------------------------------------------- the slide rule
def test_the_slide_rule_on_a_hand_made_notebook():
    long_prose = " ".join(["word"] * (lecture.LONG_PROSE_WORDS + 1))
    cells = [
        _md("# 99 · Title\nThe idea."),                                   # slide
        _code("!pip install sslteach", tags=["install"]),                  # skip
        _code("import torch"),                                             # skip: code of the title section
        _md("## Parameters\nThe next cell."),                              # skip
        _code("steps: int = 10", tags=["parameters"]),                     # skip
        _code("if quick:\n    steps = 2"),                                 # skip: Parameters section
        _md("## 1. Intuition (core, ~5 min)\nText."),                      # slide
        _code("plot()"),                                                   # -
        _md("**What to look for.** Short."),                               # subslide: after a code cell
        _md("More, right after."),                                         # -
        _md(long_prose),                                                   # notes: long prose
        _md(long_prose + "\n$$ a = b $$"),                                 # -: long, but display math
        _md("<details><summary>Hint</summary>\n\nx\n</details>"),          # notes
        _md("### 1a. A subsection\n```bash\n# not a heading\n```"),       # subslide
        _md("### 1b. Slow *(optional, about 4 minutes of one CPU core)*"),  # skip ("core" of "CPU core" no marker)
        _code("train(steps=1000)"),                                        # skip
        _md("## 2. Claims (optional, ~6 min)"),                            # skip
        _code("claims()"),                                                 # skip
        _md("### 2a. But this one is core (core, 2 min)"),                 # subslide
        _code("small()"),                                                  # -
        _md("## 3. For a reading group (optional, ~10 min)\n1. Why?"),     # slide
        _md("**Limitations** ..."),                                        # notes
        _code("notebook.write_results(results_path, x=1)"),               # skip
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    want = ["slide", "skip", "skip", "skip", "skip", "skip", "slide", "-", "subslide", "-", "notes", "-", "notes",
            "subslide", "skip", "skip", "skip", "skip", "subslide", "-", "slide", "notes", "skip"]
    assert lecture.slide_types(nb) == want
    applied = lecture.apply_rule(nb)
    assert lecture.differences(applied) == []
    assert lecture.differences(nb)  # no metadata yet: every cell differs
    assert applied["metadata"]["rise"] == lecture.RISE_SETTINGS


def test_heading_markers_and_minutes():
    cases = {
        "## 1. The data (core, ~5 min)": ("core", 5),
        "## 4. Claims (4a-4b core, ~8 min; 4c-4d optional)": ("core", 8),
        "### 5b. Three sets *(optional, about 4 minutes of one CPU core; instant from the run cache)*": ("optional", 4),
        "## 5. Outlier scores (core, instant)": ("core", 0),
        "### 4a. Reconstruction (core, 1-2 min)": ("core", 2),
        "## 7. Exercises *(core: exercises 1-2, 10 min; exercise 3 optional, 10 min)*": ("core", 10),
        "## 7. Scaling up on a GPU": ("core", None),
        "## Parameters": ("plumbing", None),
        "## 8. For a reading group *(optional, 5-30 min of discussion)*": ("reading", 30),
    }
    for heading, (kind, minutes) in cases.items():
        text = heading.lstrip("# ")  # what lecture.headings gives
        assert (lecture.heading_kind(text), lecture.heading_minutes(text)) == (kind, minutes), heading


def test_apply_is_idempotent_changes_only_slide_metadata_and_check_agrees(tmp_path):
    for name in ALL:
        src = NOTEBOOKS / f"{name}.ipynb"
        dst = tmp_path / src.name
        dst.write_bytes(src.read_bytes())
        before = json.loads(src.read_text())
        lecture.apply_file(dst)
        after_text = dst.read_text()
        assert lecture.differences(json.loads(after_text)) == [], name
        assert lecture.apply_file(dst) is False and dst.read_text() == after_text, f"{name}: a second apply changed it"
        after = json.loads(after_text)
        for c in after["cells"]:
            c["metadata"].pop("slideshow")
        after["metadata"].pop("rise")
        for c in before["cells"]:
            c["metadata"].pop("slideshow", None)
        before["metadata"].pop("rise", None)
        assert after == before, f"{name}: --apply changed more than the slide metadata"
    assert lecture.main(["slides", "--check", str(tmp_path / f"{ALL[0]}.ipynb")]) == 0


def test_committed_notebooks_follow_the_slide_rule():
    problems = {n: lecture.differences(json.loads((NOTEBOOKS / f"{n}.ipynb").read_text())) for n in ALL}
    problems = {n: p[:3] for n, p in problems.items() if p}
    assert not problems, problems


def test_every_notebook_has_a_core_path_on_its_slides():
    for name in ALL:
        nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
        counts = lecture.slide_counts(nb)
        assert counts.get("slide", 0) >= 4, (name, counts)
        types = lecture.slide_types(nb)
        for cell, t in zip(nb["cells"], types):
            tags = cell.get("metadata", {}).get("tags", [])
            if "install" in tags or "parameters" in tags:
                assert t == "skip", name


# ------------------------------------------------------------------------------------------------- the guide
def test_the_lecturers_guide_is_up_to_date_with_the_notebooks():
    stale = lecture.update_guide(ROOT / "LECTURERS.md", check=True)
    assert not stale, f"LECTURERS.md: regenerate with `python -m sslteach.lecture guide` ({stale})"


def test_the_lecturers_guide_covers_every_notebook():
    text = (ROOT / "LECTURERS.md").read_text()
    for name in ALL:
        assert f"<!-- BEGIN generated {name} -->" in text, name
        assert f"make prepare NB={name}" in text, name
    assert "TODO-MEASURE" in text or "measured" in text


# ------------------------------------------------------------------------------------------------- handouts
def test_handouts_drop_the_solutions_and_keep_the_hints(tmp_path):
    paths = lecture.write_handouts([NOTEBOOKS / f"{n}.ipynb" for n in ALL], tmp_path)
    assert len(paths) == len(ALL)
    for name in ALL:
        nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
        ho = json.loads((tmp_path / f"{name}.ipynb").read_text())
        text = json.dumps(ho)
        assert not re.search(r"<summary>[^<]*Solution", text), name
        hints = len(re.findall(r"<summary>\s*Hints?\s*</summary>", json.dumps(nb)))
        assert len(re.findall(r"<summary>\s*Hints?\s*</summary>", text)) == hints, f"{name}: a hint went missing"
        src = [c["source"] for c in nb["cells"] if c["cell_type"] == "code"]
        assert [c["source"] for c in ho["cells"] if c["cell_type"] == "code"] == src, f"{name}: code changed"
        assert all(not c.get("outputs") for c in ho["cells"] if c["cell_type"] == "code")
        assert lecture.HANDOUT_NOTE in text.replace("\\n", "\n") or "Handout" in text


_BUILTINS = set(dir(builtins))


def _py(src: str) -> str:
    return "\n".join(("pass  # " + ln) if ln.lstrip().startswith(("%", "!")) else ln for ln in src.splitlines())


def _free_and_bound(src: str, modules: set) -> tuple[set, set]:
    """(names a cell reads from the notebook's namespace, names it binds or changes there)."""
    table = symtable.symtable(src, "<cell>", "exec")
    top = {s.get_name(): s for s in table.get_symbols()}
    bound = {n for n, s in top.items() if s.is_assigned() or s.is_imported()}
    free = {n for n, s in top.items() if s.is_referenced() and n not in bound}

    def walk(t):
        for child in t.get_children():
            free.update(s.get_name() for s in child.get_symbols()
                        if s.is_referenced() and (s.is_global() or s.is_free()) and s.get_name() not in bound)
            walk(child)

    walk(table)
    changed = set()  # x[k] = ..., x.a = ..., x.method(...) change x
    for stmt in ast.parse(src).body:
        if not isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
            for node in ast.walk(stmt):
                if isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(node.ctx, (ast.Store, ast.Del)):
                    base = node.value
                    while isinstance(base, (ast.Subscript, ast.Attribute)):
                        base = base.value
                    if isinstance(base, ast.Name):
                        changed.add(base.id)
        if (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
                and isinstance(stmt.value.func, ast.Attribute) and isinstance(stmt.value.func.value, ast.Name)):
            changed.add(stmt.value.func.value.id)
    return free - _BUILTINS, bound | (changed - modules)


def _stub(src: str):
    """The function a checked exercise cell asks the reader to write (its body raises NotImplementedError)."""
    if "check(" not in src:
        return None
    for node in ast.parse(_py(src)).body:
        if isinstance(node, ast.FunctionDef) and any(
                isinstance(n, ast.Raise) and "NotImplementedError" in ast.unparse(n) for n in ast.walk(node)):
            return node
    return None


def _exercise_slice(nb) -> tuple[list[int], dict]:
    """The code cells the checked exercises need (in order), and ``{cell index: stub function node}``."""
    cells = nb["cells"]
    code = [(i, lecture._source(c)) for i, c in enumerate(cells) if c["cell_type"] == "code"]
    ex = {i: f for i, s in code if (f := _stub(s)) is not None}
    if not ex:
        return [], {}
    modules = {(a.asname or a.name).split(".")[0] for _, s in code for node in ast.walk(ast.parse(_py(s)))
               if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
    needed = set().union(*(_free_and_bound(_py(lecture._source(cells[i])), modules)[0] for i in ex))
    chosen = set(ex)
    for i, s in reversed(code):
        tags = set(cells[i].get("metadata", {}).get("tags", []))
        if i >= max(ex) or i in ex or "install" in tags:
            continue
        free, bound = _free_and_bound(_py(s), modules)
        if tags & {"parameters", "injected-parameters"} or bound & needed:
            chosen.add(i)
            needed |= free
    return sorted(chosen), ex


_RECORDER = '''import json as _json
import sslteach.exercises as _ex
if not hasattr(_ex, "_sslteach_original"):
    _ex._sslteach_original = _ex.check
def _make_recorder(original, path, dumps):  # closures: the namespace is reset between notebooks
    def recorder(*args, **kwargs):
        ok = original(*args, **kwargs)
        with open(path, "a") as f:
            f.write(dumps({"label": _ex._sslteach_label, "ok": bool(ok)}) + "\\n")
        return ok
    return recorder
_ex.check = _make_recorder(_ex._sslteach_original, LOG, _json.dumps)
_ex._sslteach_label = None

def _sslteach_wrong(fn):  # the solution's answers, each one changed: a wrong answer of the right shape
    import torch
    def bad(v):
        if isinstance(v, tuple):
            return tuple(bad(x) for x in v)
        if isinstance(v, list):
            return [bad(x) for x in v]
        if isinstance(v, torch.Tensor):
            return ~v if v.dtype == torch.bool else v + 1
        if isinstance(v, bool):
            return not v
        if isinstance(v, (int, float)):
            return v + 1
        return v
    def wrong(*args, **kwargs):
        return bad(fn(*args, **kwargs))
    return wrong
'''


def _variants(src: str, stub, solution: str) -> dict[str, str]:
    lines = src.splitlines()
    start = (stub.decorator_list[0].lineno if stub.decorator_list else stub.lineno) - 1
    before, after = lines[:start], lines[stub.end_lineno:]
    sol = solution.rstrip("\n").splitlines()
    join = "\n".join
    return {"solution": join(before + sol + after),
            "wrong": join(before + sol + [f"{stub.name} = _sslteach_wrong({stub.name})"] + after),
            "stub": src}


def _harness(names: list[str], log: Path) -> tuple[nbformat.NotebookNode, dict]:
    """One notebook that runs, for each handout, the cells its exercises need and each exercise in three variants."""
    cells, expected = [], {}
    for name in names:
        full = json.loads(json.dumps(read_notebook(NOTEBOOKS / f"{name}.ipynb", {"quick": True})))
        ho = lecture.handout(full)
        sols = lecture.solutions(full)
        chosen, ex = _exercise_slice(ho)
        if not ex:
            continue
        cells.append(_code("%reset -f\nimport matplotlib\nmatplotlib.use('Agg')\n"
                           f"LOG = {str(log)!r}\n" + _RECORDER))
        for i in chosen:
            src = lecture._source(ho["cells"][i])
            if i not in ex:
                cells.append(_code(src))
                continue
            fn = ex[i].name
            assert fn in sols, f"{name}: no solution block defines {fn} (the handout test needs one)"
            for variant, code in _variants(src, ex[i], sols[fn]).items():
                label = f"{name}:{fn}:{variant}"
                expected[label] = variant == "solution"
                cells.append(_code(f"import sslteach.exercises as _ex\n_ex._sslteach_label = {label!r}\n{code}"))
    return nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                          "display_name": "Python 3"}}), expected


@pytest.mark.notebook  # runs the exercises' cells in a kernel (07's need a quick training): not in test-fast
def test_handout_checkers_pass_with_the_solutions_and_fail_with_wrong_answers(tmp_path):
    log = tmp_path / "checks.jsonl"
    nb, expected = _harness(ALL, log)
    assert len({k.rsplit(":", 1)[0] for k in expected}) >= 2 * (len(ALL) - 1), sorted(expected)
    with private_kernelspec(tmp_path / "jupyter-data"):
        execute_notebook(nb, tmp_path / "harness.ipynb", cwd=tmp_path, timeout=600, attempts=2, label="handouts")
    got: dict[str, list[bool]] = {}
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        got.setdefault(rec["label"], []).append(rec["ok"])
    missing = sorted(set(expected) - set(got))
    assert not missing, f"these exercise variants never called check(): {missing}"
    wrong = {k: v for k, v in got.items() if k in expected and any(ok != expected[k] for ok in v)}
    assert not wrong, f"the checker gave the wrong verdict (label: results): {wrong}"


# ------------------------------------------------------------------------------------------------- the executor
class _DropsOneReply(WatchdogClient):
    """A kernel client that loses the execute reply of the cell that prints 'drop me' (as the issue's kernel did)."""

    dropped_at: list[float] = []

    async def async_start_new_kernel_client(self):
        from nbclient.util import ensure_async

        kc = await super().async_start_new_kernel_client()
        channel, get_msg = kc.shell_channel, kc.shell_channel.get_msg
        target = next(i for i, c in enumerate(self.nb.cells) if "drop me" in c.source)

        async def lossy(*args, **kwargs):
            while True:
                msg = await ensure_async(get_msg(*args, **kwargs))
                if (msg["msg_type"] == "execute_reply" and not _DropsOneReply.dropped_at
                        and self._current_index == target):
                    _DropsOneReply.dropped_at.append(time.monotonic())
                    continue
                return msg

        channel.get_msg = lossy
        return kc


def test_the_executor_notices_a_lost_reply_and_runs_the_notebook_again(tmp_path):
    idle = 2.0
    nb = nbformat.v4.new_notebook(cells=[
        _code("import time\nt = time.monotonic()\ntime.sleep(3 * %r)\nx = 1" % idle),  # busy longer than `idle`
        _code("x += 1\nprint('drop me')"),
        _code("print(x)")])
    nbformat.write(nb, tmp_path / "tiny.ipynb")
    lines: list[tuple[float, str]] = []
    _DropsOneReply.dropped_at = []
    with private_kernelspec(tmp_path / "jupyter-data"):
        out = execute_notebook(tmp_path / "tiny.ipynb", tmp_path / "out.ipynb", cwd=tmp_path, idle_timeout=idle,
                               client_class=_DropsOneReply, log=lambda s: lines.append((time.monotonic(), s)))
    assert _DropsOneReply.dropped_at, "the fake client dropped nothing"
    assert out["attempts"] == 2 and len(out["retries"]) == 1, out["retries"]
    line_at, line = next((t, s) for t, s in lines if "lost reply" in s)
    assert "\n" not in line and "cell 1" in line and "running the notebook again" in line, line
    noticed = line_at - _DropsOneReply.dropped_at[0]
    # the idle time, then a probe of the kernel; a loaded 2-core machine (the other test worker) can delay the probe's
    # reply by seconds: the bound stays far below the "within a minute" and the cell timeout a hang would hit
    assert noticed <= idle + 6.0, f"noticed {noticed:.1f} s after the reply was lost (bound: {idle} s + a probe)"
    done = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert done.cells[2].outputs[0]["text"].strip() == "2"  # the retry ran every cell once, in order


def test_a_kernel_that_dies_is_started_again(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        _code("import os, pathlib\nflag = pathlib.Path('died-once')\nif not flag.exists():\n    flag.touch()\n"
              "    os._exit(1)"),
        _code("print('alive')")])
    lines: list[str] = []
    with private_kernelspec(tmp_path / "jupyter-data"):
        out = execute_notebook(nb, tmp_path / "out.ipynb", cwd=tmp_path, idle_timeout=2.0, log=lines.append)
    assert out["attempts"] == 2 and any("the kernel died" in ln for ln in lines), lines
    assert nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[1].outputs[0]["text"].strip() == "alive"


def test_a_cell_that_errors_is_reported_not_retried(tmp_path):
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.v4.new_notebook(cells=[_code("1/0")])
    with private_kernelspec(tmp_path / "jupyter-data"), pytest.raises(CellExecutionError):
        execute_notebook(nb, tmp_path / "out.ipynb", cwd=tmp_path, idle_timeout=1.0)
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert out.cells[0].outputs[0]["output_type"] == "error"
    assert issubclass(LostReply, RuntimeError)


# ------------------------------------------------------------------------------------------------- prepare
@pytest.mark.notebook  # two kernels and a training: not in test-fast
def test_prepare_fills_the_run_cache_and_reports_both_times(tmp_path, capsys):
    nb = nbformat.v4.new_notebook(cells=[
        _md("# 99 · tiny"),
        _code("steps: int = 30", tags=["parameters"]),
        _code("from sslteach import train\n"
              "r = train('supervised', 'two_moons', labels_per_class=2, steps=steps, progress=False)\n"
              "print('from cache:', r.from_cache)")],
        metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}})
    path = tmp_path / "99_tiny.ipynb"
    nbformat.write(nb, path)
    res = lecture.prepare(str(path), cache=str(tmp_path / "runs"))
    out = capsys.readouterr().out
    assert res["warm_seconds"] > 0 and res["class_seconds"] > 0
    assert "Warming took" in out and "the total the class waits" in out, out
    assert any((tmp_path / "runs").rglob("*")), "nothing was written to the run cache"
    assert os.environ.get("SSLTEACH_CACHE") == "off"  # restored (conftest turns the cache off)


def test_prepare_refuses_a_turned_off_cache_and_an_unknown_notebook():
    with pytest.raises(SystemExit, match="SSLTEACH_CACHE"):
        lecture.prepare("03_fixmatch")  # conftest sets SSLTEACH_CACHE=off
    with pytest.raises(SystemExit, match="valid"):
        lecture.notebook_path("99_nothing")
    assert lecture.notebook_path("03").stem == "03_fixmatch"


def test_prepare_is_on_the_command_line():
    from sslteach.cli import build_parser

    args = build_parser().parse_args(["prepare", "03_fixmatch", "--cache", "/tmp/x"])
    assert args.command == "prepare" and args.notebook == "03_fixmatch"


# ------------------------------------------------------------------------------------------------- the book
def _load_build():
    import importlib.util

    spec = importlib.util.spec_from_file_location("book_build", ROOT / "book" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_injected_parameters_cell_shows_no_machine_path(tmp_path):
    build = _load_build()
    nb = read_notebook(NOTEBOOKS / "06_swwae.ipynb", {"quick": True, "results_path": "/home/me/x/build/r.json"})
    src = tmp_path / "in.ipynb"
    nbformat.write(nb, src)
    build.prepare_notebook(src, tmp_path / "out.ipynb", "06_swwae")
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    text = json.dumps([c.source for c in out.cells if "remove-cell" not in c.metadata.get("tags", [])])
    assert "/home/me" not in text and "results_path" not in text.split("# parameters")[0]
    injected = [c for c in out.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "quick = True" in injected[0].source
    assert build.scrub_paths("results written to /home/me/x/build/book/results/06_swwae.json\n") == \
        "results written to 06_swwae.json\n"
    assert build.rewrite_injected('# Parameters\nresults_path = "/x/y.json"\n') is None  # nothing left: hidden


@pytest.mark.book
@pytest.mark.timeout(1200)
def test_book_pages_read_without_sideways_scrolling_and_slides_work_offline(tmp_path_factory):
    """A book of three notebooks (from the suite's own runs) read in Chromium at 1400 px: no code block or output
    scrolls sideways; the slides open offline (reveal.js from the build), their text is >= 24 px and their figures
    fit the slide."""
    import browser
    import nbrun
    from conftest import shared_dir

    why = browser.available()
    if why:
        if IN_CI:
            pytest.fail(f"CI=true and the book pages cannot be checked: {why}", pytrace=False)
        pytest.skip(why)
    shared = shared_dir(tmp_path_factory)
    names = ["03_fixmatch", "06_swwae", "10_compare"]
    runs = {n: nbrun.notebook_run(n, shared) for n in names}
    failed = {n: r["error"] for n, r in runs.items() if not Path(r["executed"]).exists()}
    if failed:
        pytest.fail(f"these notebooks did not run: {failed}", pytrace=False)
    executed = tmp_path_factory.mktemp("executed")
    for n in names:
        (executed / f"{n}.ipynb").write_bytes(Path(runs[n]["executed"]).read_bytes())
    html = _load_build().build(tmp_path_factory.mktemp("book"), names, executed, quick=True)
    shots = tmp_path_factory.mktemp("lecture-shots")
    report: dict = {"problems": [], "network": [], "js_errors": []}
    import threading  # Playwright's sync API needs a thread without a running asyncio loop (see test_book)

    t = threading.Thread(target=_read_book, args=(html, names, shots, report), daemon=True)
    t.start()
    t.join()
    if "error" in report:
        raise report["error"]
    artifacts = os.environ.get("SSLTEACH_ARTIFACTS")
    if artifacts:
        import shutil

        shutil.copytree(shots, Path(artifacts) / "book-lecture", dirs_exist_ok=True)
    assert not report["network"], f"tried to load from the network: {report['network'][:10]}"
    assert not report["problems"], report["problems"][:20]
    assert not report["js_errors"], report["js_errors"][:5]


JS_OVERFLOW = """() => Array.from(document.querySelectorAll('article pre, article div.cell_output, article table'))
  .filter(e => e.scrollWidth > e.clientWidth + 1)
  .map(e => `${e.tagName}.${e.className.slice(0, 30)} ${e.scrollWidth} > ${e.clientWidth}: `
             + e.innerText.slice(0, 50))"""
JS_SLIDE = """() => {
  const s = Reveal.getCurrentSlide(), out = {small: [], wide: []}, box = s.getBoundingClientRect();
  for (const e of s.querySelectorAll('p, li, td, th, pre, code, h1, h2, h3, summary, .jp-RenderedText')) {
    if (e.getClientRects().length === 0 || !e.innerText.trim()) continue;
    const f = parseFloat(getComputedStyle(e).fontSize);
    if (f < 24) out.small.push(`${e.tagName} ${f}px: ${e.innerText.slice(0, 30)}`);
  }
  for (const im of s.querySelectorAll('img')) {
    const r = im.getBoundingClientRect();
    if (r.width > box.width + 1) out.wide.push(`img ${Math.round(r.width)} px on a ${Math.round(box.width)} px slide`);
  }
  return out;
}"""


def _read_book(html: Path, names: list, shots: Path, report: dict) -> None:
    try:
        import browser
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=str(browser.CHROMIUM), headless=True, args=browser.CHROMIUM_ARGS)
            try:
                ctx = b.new_context(viewport={"width": 1400, "height": 900})

                def route(r):  # offline: anything not in the build is refused, and noted
                    if r.request.url.startswith("file://"):
                        return r.continue_()
                    report["network"].append(r.request.url)
                    return r.abort()

                ctx.route("**/*", route)
                page = ctx.new_page()
                page.on("pageerror", lambda e: report["js_errors"].append(str(e)))
                for name in names:
                    page.goto((html / "notebooks" / f"{name}.html").as_uri())
                    page.wait_for_load_state("load")
                    report["problems"] += [f"{name} page at 1400 px scrolls sideways: {o}"
                                           for o in page.evaluate(JS_OVERFLOW)]
                    text = page.inner_text("article")
                    if re.search(r"results_path\s*=\s*\"/", text) or "/tmp/" in text or str(ROOT) in text:
                        report["problems"].append(f"{name} page shows a path of the build machine")
                    link = page.locator("a.sslteach-slides-link")
                    if not link.count():
                        report["problems"].append(f"{name}: no slides link on the page")
                    page.screenshot(path=str(shots / f"{name}_page.png"))
                    page.goto((html / "slides" / f"{name}.html").as_uri())
                    page.wait_for_function("() => document.documentElement.dataset.slidesReady === '1'",
                                           timeout=60_000)
                    total = page.evaluate("() => Reveal.getTotalSlides()")
                    if total < 4:
                        report["problems"].append(f"{name}: only {total} slides")
                    for i in range(total):
                        st = page.evaluate(JS_SLIDE)
                        report["problems"] += [f"{name} slide {i + 1}: {x}" for x in st["small"][:3] + st["wide"]]
                        if i < 3:
                            page.screenshot(path=str(shots / f"{name}_slide{i + 1}.png"))
                        page.evaluate("() => Reveal.next()")
            finally:
                b.close()
    except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
        report["error"] = e
