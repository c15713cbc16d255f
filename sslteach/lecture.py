"""A lecturer's kit from the same notebooks: slide metadata by rule, handouts without solutions, a class warmed up
the day before, and the generated parts of the lecturers' guide.

    python -m sslteach.lecture slides --apply notebooks/*.ipynb   # set every cell's slide type by the rule below
    python -m sslteach.lecture slides --check notebooks/*.ipynb   # exit 1 where a notebook differs from the rule
    python -m sslteach.lecture handouts --out build/handouts notebooks/*.ipynb
    python -m sslteach.lecture guide [--check] [LECTURERS.md]     # refresh (or check) the guide's generated blocks
    python -m sslteach prepare 03_fixmatch                        # run every default training into the run cache

**The slide rule** (:func:`slide_types`; deterministic, it reads only the cells' sources and tags, so running it
twice changes nothing). Sections are delimited by ``#`` / ``##`` headings, subsections by ``###``; a heading is
*optional* when its text says "optional" and not "core", *plumbing* when it is "Parameters", a *reading group* when
it says "reading group" or "questions to think about"; any other heading is core.

* a markdown cell with a ``#`` or ``##`` heading starts a **slide**, one with a ``###`` heading a **subslide**
  (headings inside code fences do not count);
* the install cell, the ``parameters`` / ``injected-parameters`` cells, every cell of the Parameters section, the
  code cells of the title section (imports) and the cell that writes the results JSON are **skip**;
* every cell of an optional section or subsection is **skip** (RISE cannot reorder cells; the optional sections are
  in the notebook, the lecturer scrolls there in the normal view);
* in a reading-group section the heading cell is a slide (its questions are on it), the other cells **notes**;
* a markdown cell without a heading is **notes** when it is a ``<details>`` block (hints, solutions) or long prose
  (more than :data:`LONG_PROSE_WORDS` words and no display math), a **subslide** when it follows a code cell (a new
  explanation after a figure), else it continues the slide (``-``);
* every other code cell continues the slide (``-``): the explanation, its code and the code's output are one
  (scrolling) slide.

The notebook's ``metadata.rise`` gets :data:`RISE_SETTINGS` (scrolling slides, the slideshow starts at the first
cell).
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import re
import sys
import tempfile
from pathlib import Path

LONG_PROSE_WORDS = 150
RISE_SETTINGS = {"scroll": True, "start_slideshow_at": "beginning", "center": False}
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
_DISPLAY_MATH = re.compile(r"\$\$|\\begin\{")
_READING = re.compile(r"reading group|questions to think about", re.I)
_PLUMBING = re.compile(r"^\s*parameters\s*$", re.I)
_SKIP_TAGS = {"install", "parameters", "injected-parameters"}


# ------------------------------------------------------------------------------------------------- reading cells
def _source(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def _tags(cell) -> list:
    return list(cell.get("metadata", {}).get("tags", []))


def headings(markdown: str) -> list[tuple[int, str, int]]:
    """``(level, text, position)`` of every heading of a markdown cell, fenced code blocks left out."""
    text = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), markdown)
    return [(len(m.group(1)), m.group(2).strip(), m.start()) for m in _HEADING.finditer(text)]


def _segments(text: str) -> list[tuple[str | None, str]]:
    """The ``;``-separated parts of a heading's parentheses, each with its marker: ``core`` or ``optional`` where
    one of the part's first three words says so (``(4a-4b core, ~8 min; 4c-4d optional)``), else ``None`` (so the
    "core" of "2 CPU cores" or "one CPU core" later in a part is no marker)."""
    out = []
    for group in re.findall(r"\(([^()]*)\)", text.replace("*", "")):
        for part in group.split(";"):
            words = [w.strip(",:.").lower() for w in part.split()[:3]]
            marker = next((w for w in words if w in ("core", "optional")), None)
            out.append((marker, part))
    return out


def heading_kind(text: str) -> str:
    """``plumbing``, ``reading``, ``optional`` or ``core`` (a heading that says neither counts as core)."""
    if _PLUMBING.match(re.sub(r"[*_`]", "", text)):
        return "plumbing"
    if _READING.search(text):
        return "reading"
    markers = {m for m, _ in _segments(text)}
    if "optional" in markers and "core" not in markers:
        return "optional"
    return "core"


def heading_marked(text: str) -> bool:
    """Whether the heading says core or optional."""
    return any(m for m, _ in _segments(text))


def heading_minutes(text: str) -> float | None:
    """The minutes a heading gives its core part: ``(core, ~5 min)`` -> 5, ``(core, 1-2 min)`` -> 2, ``(core,
    instant)`` -> 0, ``(4a-4b core, ~8 min; 4c-4d optional)`` -> 8; ``None`` when it gives none."""
    segs = _segments(text)
    if not segs:
        return None
    part = next((p for m, p in segs if m == "core"), segs[0][1])
    if re.search(r"\binstant\b", part):
        return 0.0
    n = re.search(r"(\d+(?:\.\d+)?)(?:\s*[-–]\s*(\d+(?:\.\d+)?))?\s*min", part)
    if not n:
        return None
    return float(n.group(2) or n.group(1))


def _words(markdown: str) -> int:
    return len(re.sub(r"<[^>]+>", " ", markdown).split())


def _writes_results(source: str) -> bool:
    return "write_results(" in source


# ------------------------------------------------------------------------------------------------- the slide rule
def slide_types(nb: dict) -> list[str]:
    """The slide type of every cell of ``nb`` (a notebook as JSON or a ``NotebookNode``) by the rule of this module."""
    section = "title"       # kind of the current # / ## section ("title" until the first heading after the title)
    sub = None              # kind of the current ### subsection (None: as its section)
    titled = False          # the notebook's first heading (its title) was seen
    out: list[str] = []
    last_visible = None     # cell_type of the last cell put on a slide (not skip, not notes)

    for cell in nb["cells"]:
        src = _source(cell)
        if cell["cell_type"] == "markdown":
            hs = headings(src)
            parts = []  # the kinds of the cell's parts: before its first heading, then after each heading
            if not hs or src[: hs[0][2]].strip():
                parts.append(sub or section)
            for level, text, _ in hs:
                if level <= 2:
                    section, sub = (heading_kind(text) if titled else "title"), None
                    titled = True
                elif section == "plumbing":
                    sub = "plumbing"
                else:
                    k = heading_kind(text)
                    sub = k if (k != "core" or heading_marked(text)) else None
                parts.append(sub or section)
            kind = sub or section
            visible = any(k in ("title", "core", "reading") for k in parts)
            if not visible:
                t = "skip"
            elif any(level <= 2 for level, _, _ in hs):
                t = "slide"
            elif hs:
                t = "subslide"
            elif kind == "reading":
                t = "notes"
            elif "<details" in src or (_words(src) > LONG_PROSE_WORDS and not _DISPLAY_MATH.search(src)):
                t = "notes"
            elif last_visible == "code":
                t = "subslide"
            else:
                t = "-"
        else:
            skip = set(_tags(cell)) & _SKIP_TAGS or _writes_results(src) or not src.strip()
            t = "skip" if skip or (sub or section) in ("title", "plumbing", "optional", "reading") else "-"
        out.append(t)
        if t not in ("skip", "notes"):
            last_visible = cell["cell_type"]
    return out


def _sorted_like(d: dict, before: list) -> dict:
    """``d`` with its keys sorted where the keys it had were sorted (nbformat writes sorted keys)."""
    return dict(sorted(d.items())) if before == sorted(before) else d


def apply_rule(nb: dict) -> dict:
    """A copy of ``nb`` whose cells carry ``metadata.slideshow.slide_type`` by the rule (and ``metadata.rise``)."""
    nb = copy.deepcopy(nb)
    for cell, t in zip(nb["cells"], slide_types(nb)):
        md = cell.setdefault("metadata", {})
        before = list(md)
        show = dict(md.get("slideshow", {}))
        show["slide_type"] = t
        md["slideshow"] = show
        cell["metadata"] = _sorted_like(md, before)
    before = list(nb.get("metadata", {}))
    nb.setdefault("metadata", {})["rise"] = dict(RISE_SETTINGS)
    nb["metadata"] = _sorted_like(nb["metadata"], before)
    return nb


def differences(nb: dict) -> list[str]:
    """Where ``nb``'s slide metadata differs from the rule (empty: it follows the rule)."""
    want = slide_types(nb)
    out = []
    for i, (cell, t) in enumerate(zip(nb["cells"], want)):
        got = cell.get("metadata", {}).get("slideshow", {}).get("slide_type")
        if got != t:
            first = next((ln for ln in _source(cell).splitlines() if ln.strip()), "")[:50]
            out.append(f"cell {i} ({cell['cell_type']}, {first!r}): slide_type {got!r}, the rule gives {t!r}")
    if nb.get("metadata", {}).get("rise") != RISE_SETTINGS:
        out.append(f"metadata.rise {nb.get('metadata', {}).get('rise')!r}, the rule gives {RISE_SETTINGS!r}")
    return out


def _read_json(path: Path) -> tuple[dict, str]:
    raw = Path(path).read_text(encoding="utf-8")
    return json.loads(raw), raw


def _dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def apply_file(path: Path) -> bool:
    """Apply the rule to the notebook file ``path`` (written only where something changes); returns whether it did.
    Only the slide metadata changes: the file is read and written as JSON, byte for byte otherwise."""
    nb, raw = _read_json(path)
    new = _dump(apply_rule(nb))
    if new == raw:
        return False
    tmp = Path(path).with_suffix(".ipynb.tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)
    return True


def slide_counts(nb: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in slide_types(nb):
        counts[t] = counts.get(t, 0) + 1
    return counts


# ------------------------------------------------------------------------------------------------- handouts
_DETAILS = re.compile(r"<details>\s*<summary>(.*?)</summary>.*?</details>[ \t]*\n?", re.S | re.I)


def strip_solutions(markdown: str) -> str:
    """``markdown`` without its ``<details>`` blocks whose summary says "Solution" (hints stay)."""
    out = _DETAILS.sub(lambda m: "" if re.search(r"solution", m.group(1), re.I) else m.group(0), markdown)
    return re.sub(r"\n{3,}", "\n\n", out).strip("\n")


def solution_blocks(nb: dict) -> list[str]:
    """The python code of every solution block of ``nb`` (the fenced code inside each "Solution" ``<details>``)."""
    blocks = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for m in _DETAILS.finditer(_source(cell)):
            if re.search(r"solution", m.group(1), re.I):
                blocks += re.findall(r"```python\n(.*?)```", m.group(0), re.S)
    return blocks


def solutions(nb: dict) -> dict[str, str]:
    """``{function name: the solution's code}`` for each function a solution block defines."""
    out = {}
    for code in solution_blocks(nb):
        try:
            tree = ast.parse(code)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.setdefault(node.name, code)
    return out


HANDOUT_NOTE = ("> **Handout.** This copy has no solutions: the hints stay, and every checker (`check(...)`) still "
                "says whether your answer matches the package. The full notebook is in the repository's "
                "`notebooks/` folder.")


def handout(nb: dict) -> dict:
    """``nb`` without its solution blocks (cells left empty are dropped), outputs cleared, a note after the title."""
    nb = copy.deepcopy(nb)
    cells = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            src = _source(cell)
            new = strip_solutions(src)
            if not new.strip():
                continue
            if new != src:
                cell["source"] = new
        elif cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cells.append(cell)
    note = {"cell_type": "markdown", "id": "sslteach-handout-note", "metadata": {}, "source": HANDOUT_NOTE}
    cells.insert(1 if cells and cells[0]["cell_type"] == "markdown" else 0, note)
    nb["cells"] = cells
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def write_handouts(paths, out: Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for p in paths:
        nb, _ = _read_json(Path(p))
        dst = out / Path(p).name
        dst.write_text(_dump(handout(nb)), encoding="utf-8")
        removed = len(solution_blocks(nb))
        print(f"handout {dst} ({removed} solution block(s) removed, hints kept)")
        written.append(dst)
    return written


# ------------------------------------------------------------------------------------------------- warm the class
def notebook_path(name: str) -> Path:
    """``03_fixmatch``, ``03`` or a path -> the notebook's path."""
    p = Path(name)
    if p.suffix == ".ipynb" and p.exists():
        return p
    hits = sorted(NOTEBOOKS.glob(f"{name}*.ipynb")) if re.fullmatch(r"\d\d[\w-]*", name) else []
    if len(hits) == 1:
        return hits[0]
    valid = ", ".join(q.stem for q in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")))
    raise SystemExit(f"prepare: no notebook {name!r} (valid: {valid}, or a path to a .ipynb)")


def prepare(name: str, cache: str | None = None, timeout: float | None = 1800, log=None,
            parameters: dict | None = None) -> dict:
    """Execute the notebook at its default parameters (every training it asks for goes into the run cache), then
    once more (all cached: the time the class will wait for Run All). Returns both times and the slowest cells.
    ``parameters`` (papermill's ``-p``) warms another setting instead, e.g. ``{"dataset": "fashion_mnist"}`` for a
    live swap: the class then sets the same values in the parameters cell."""
    from . import cache as run_cache
    from .execute import execute_notebook, private_kernelspec

    say = log or (lambda s: print(s, flush=True))
    path = notebook_path(name)
    old = os.environ.get("SSLTEACH_CACHE")
    if cache:
        os.environ["SSLTEACH_CACHE"] = str(Path(cache).expanduser().resolve())
    try:
        folder = run_cache.default_dir()
        if folder is None:
            raise SystemExit("prepare fills the run cache, and SSLTEACH_CACHE turns it off: unset it or pass --cache")
        with tempfile.TemporaryDirectory(prefix="sslteach-prepare-") as tmp, private_kernelspec(Path(tmp) / "jd"):
            what = f"with {parameters}" if parameters else "at its default parameters"
            say(f"prepare {path.stem}: running it {what} into the run cache {folder} ...")
            first = execute_notebook(path, Path(tmp) / "first.ipynb", parameters or None, cwd=tmp, timeout=timeout,
                                     progress=True, label=path.stem, log=say)
            say(f"prepare {path.stem}: {first['seconds']:.0f} s to run every training of the notebook (now cached); "
                "running it again as the class will ...")
            second = execute_notebook(path, Path(tmp) / "second.ipynb", parameters or None, cwd=tmp,
                                      timeout=timeout, progress=False, label=path.stem, log=say)
            nb = second["notebook"]
            slow = sorted(second["cell_seconds"].items(), key=lambda kv: -kv[1])[:3]
            slowest = ", ".join(f"cell {i} {s:.1f} s ({_source(nb.cells[i]).splitlines()[0][:40]!r})"
                                for i, s in slow)
            say(f"prepare {path.stem}: done. Warming took {first['seconds']:.0f} s; with the cache warm the whole "
                f"notebook runs in {second['seconds']:.0f} s (Run All: the total the class waits; slowest: "
                f"{slowest}).")
            return {"notebook": path.stem, "cache": str(folder), "warm_seconds": first["seconds"],
                    "class_seconds": second["seconds"], "slowest": slow,
                    "retries": first["retries"] + second["retries"]}
    finally:
        if cache:
            if old is None:
                os.environ.pop("SSLTEACH_CACHE", None)
            else:
                os.environ["SSLTEACH_CACHE"] = old


def add_prepare_parser(sub) -> None:
    """``python -m sslteach prepare NOTEBOOK``: the sub-command of :mod:`sslteach.cli`."""
    pp = sub.add_parser("prepare", help="warm the class: run every training a notebook asks for into the run cache",
                        description="Execute NOTEBOOK at its default parameters (every training it asks for goes into "
                                    "the run cache), print how long that took, then run it again and print the "
                                    "total the class will wait (everything cached). Do it the day before.")
    pp.add_argument("notebook", help="a notebook name (03_fixmatch, or just 03) or a path to a .ipynb")
    pp.add_argument("--cache", default=None, help="the run cache folder (default: $SSLTEACH_CACHE or "
                                                  "~/.cache/sslteach/runs); the class must use the same one")
    pp.add_argument("--timeout", type=float, default=1800, help="seconds one cell may run (default: 1800)")
    pp.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="warm another setting, as papermill's -p (e.g. -p dataset fashion_mnist for a live swap; "
                         "the class then sets the same value in the parameters cell)")


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def prepare_command(parser, args, unknown) -> int:
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    prepare(args.notebook, cache=args.cache, timeout=args.timeout,
            parameters={k: _value(v) for k, v in args.parameter} or None)
    return 0


# ------------------------------------------------------------------------------------------------- the guide
def sections(nb: dict) -> list[dict]:
    """The notebook's sections and subsections with a kind or minutes: ``{"level", "title", "kind", "minutes"}``."""
    out, first = [], True
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for level, text, _ in headings(_source(cell)):
            if first:
                first = False
                continue
            if level > 3:
                continue
            kind = heading_kind(text)
            marked = heading_marked(text)
            if level == 3 and not marked and kind not in ("reading",):
                continue
            out.append({"level": level, "title": re.sub(r"[*]", "", text).strip(), "kind": kind,
                        "minutes": heading_minutes(text), "marked": marked or kind in ("plumbing",)})
    return out


def title(nb: dict) -> str:
    for cell in nb["cells"]:
        for level, text, _ in headings(_source(cell)) if cell["cell_type"] == "markdown" else []:
            if level == 1:
                return text
    return ""


def _mins(m: float | None) -> str:
    return "?" if m is None else f"{m:.0f}"


def _short(text: str) -> str:
    return re.sub(r"\s*\(.*$", "", text).strip()


def reading_group_questions(nb: dict, limit: int = 6) -> list[str]:
    """The numbered discussion questions of the notebook's reading-group section (its first ``limit``)."""
    text, inside = [], False
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        src = _source(cell)
        hs = headings(src)
        for level, t, pos in hs:
            if level <= 2:
                if _READING.search(t):
                    inside = True
                    src = src[pos:]
                elif inside:
                    inside = False
        if inside:
            text.append(src)
    body = "\n".join(text)
    items = re.findall(r"^\s*\d+\.\s+(.+?)(?=^\s*\d+\.\s|^\s*$|^\*\*|\Z)", body, re.M | re.S)
    return [" ".join(i.split()) for i in items[:limit]]


def guide_block(path: Path) -> str:
    """The generated part of the guide for one notebook: its core path with minutes, the optional sections, how to
    warm it up, the slide counts, the reading-group questions."""
    nb, _ = _read_json(path)
    name = path.stem
    secs = [s for s in sections(nb) if s["kind"] != "plumbing"]
    core = [s for s in secs if s["kind"] == "core"]
    core_top = [s for s in core if s["level"] == 2 or (s["level"] == 1 and s["marked"])]  # not "# Part 1" titles
    total = sum(s["minutes"] or 0 for s in core_top)
    unmarked = [s["title"] for s in secs if not s["marked"] and s["level"] == 2 and s["kind"] == "core"]
    optional = [s for s in secs if s["kind"] == "optional"]
    reading = [s for s in secs if s["kind"] == "reading"]
    counts = slide_counts(nb)
    lines = [f"**Core path ({total:.0f} min, from the section headings):** "
             + " · ".join(f"{_short(s['title'])} ({_mins(s['minutes'])} min)" for s in core_top) + "."]
    sub_core = [s for s in core if s["level"] == 3]
    if sub_core:
        lines.append("Core subsections marked in their headings: " + "; ".join(
            f"{_short(s['title'])} ({_mins(s['minutes'])} min)" for s in sub_core)
            + ".")
    if optional:
        lines.append("**Optional (skipped on the slides):** " + " · ".join(
            f"{_short(s['title'])}" + (f" ({s['minutes']:.0f} min)" if s["minutes"] is not None else "")
            for s in optional) + ".")
    if reading:
        lines.append("**Reading group:** " + "; ".join(_short(s["title"]) for s in reading)
                     + " — its heading cell is the last slide, the rest speaker notes.")
    if unmarked:
        lines.append("*Headings that say neither core nor optional (counted as core, no minutes):* "
                     + "; ".join(_short(u) for u in unmarked) + ".")
    lines.append(f"**Warm up the day before:** `python -m sslteach prepare {name}` (or `make prepare NB={name}`); "
                 "it prints how long the warm-up took and how long Run All then takes.")
    lines.append(f"**Slides:** {counts.get('slide', 0)} slides, {counts.get('subslide', 0)} subslides, "
                 f"{counts.get('notes', 0)} cells of speaker notes, {counts.get('skip', 0)} cells skipped "
                 "(`python -m sslteach.lecture slides --apply`; live: *View → Rise Slides*; static: "
                 f"`slides/{name}.html` in the book).")
    qs = reading_group_questions(nb)
    if qs:
        lines.append("**Questions students ask** (the notebook's reading-group section):")
        lines += [f"{i}. {q}" for i, q in enumerate(qs, 1)]
    return "\n".join(lines)


_BLOCK = re.compile(r"(<!-- BEGIN generated (\S+) -->\n)(.*?)(<!-- END generated \2 -->)", re.S)


def update_guide(guide: Path, notebooks: Path = NOTEBOOKS, check: bool = False) -> list[str]:
    """Rewrite (or, with ``check``, compare) every generated block ``<!-- BEGIN generated NAME -->`` ... of the
    guide from the notebook NAME. Returns the names of the blocks that differ."""
    text = Path(guide).read_text(encoding="utf-8")
    stale = []

    def repl(m):
        path = Path(notebooks) / f"{m.group(2)}.ipynb"
        new = guide_block(path) + "\n" if path.exists() else m.group(3)
        if new != m.group(3):
            stale.append(m.group(2))
        return m.group(1) + new + m.group(4)

    new = _BLOCK.sub(repl, text)
    if not check and new != text:
        Path(guide).write_text(new, encoding="utf-8")
    return stale


# ------------------------------------------------------------------------------------------------- command line
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sslteach.lecture", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("slides", help="slide metadata by rule: --apply sets it, --check compares")
    g = sp.add_mutually_exclusive_group(required=True)
    g.add_argument("--apply", action="store_true")
    g.add_argument("--check", action="store_true")
    sp.add_argument("notebooks", nargs="+")
    hp = sub.add_parser("handouts", help="copies of the notebooks without their solution blocks")
    hp.add_argument("--out", default=str(ROOT / "build" / "handouts"))
    hp.add_argument("notebooks", nargs="+")
    gp = sub.add_parser("guide", help="refresh (or --check) the generated blocks of LECTURERS.md")
    gp.add_argument("--check", action="store_true")
    gp.add_argument("guide", nargs="?", default=str(ROOT / "LECTURERS.md"))
    add_prepare_parser(sub)
    args = ap.parse_args(argv)
    if args.command == "slides":
        bad = 0
        for p in args.notebooks:
            if args.apply:
                changed = apply_file(Path(p))
                print(f"{p}: {'slide metadata set' if changed else 'already follows the rule'} "
                      f"({slide_counts(_read_json(Path(p))[0])})")
            else:
                diff = differences(_read_json(Path(p))[0])
                if diff:
                    bad += 1
                    print(f"{p}: {len(diff)} cell(s) differ from the slide rule (fix: python -m sslteach.lecture "
                          f"slides --apply {p}):\n  " + "\n  ".join(diff[:8]))
        return 1 if bad else 0
    if args.command == "handouts":
        write_handouts(args.notebooks, Path(args.out))
        return 0
    if args.command == "guide":
        stale = update_guide(Path(args.guide), check=args.check)
        if args.check and stale:
            print(f"{args.guide}: generated blocks out of date for {stale} (fix: python -m sslteach.lecture guide)")
            return 1
        print(f"{args.guide}: {'up to date' if not stale else 'refreshed: ' + ', '.join(stale)}")
        return 0
    if args.command == "prepare":
        return prepare_command(ap, args, [])
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
