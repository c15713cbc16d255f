"""The papermill command lines printed in the notebooks must work as written (issue 18): each one is run through
papermill's own command-line parser with ``--prepare-only`` (parameters injected, nothing executed), and every
injected value must name a parameter of the notebook's ``parameters`` cell and have its declared type (a list
parameter needs ``-y "name: [..]"``; ``-p name 5`` would inject an int). ``papermill --help-notebook`` must list every
parameter (papermill silently drops a line it cannot parse)."""
from __future__ import annotations

import re
import shlex

import nbformat
import pytest
from click.testing import CliRunner
from papermill.cli import papermill as papermill_cli

from conftest import ROOT

NOTEBOOKS = ROOT / "notebooks"
TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool, "list": list, "dict": dict}


def _parameters(nb) -> dict[str, str]:
    """{name: declared type} of the notebook's one ``parameters`` cell (``name: type = value  # comment``)."""
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    return {m.group(1): m.group(2) for m in re.finditer(r"^(\w+)\s*:\s*(\w+)\s*=", cells[0].source, re.M)}


def _recipes(nb) -> list[str]:
    """Every ``papermill ...`` command in the notebook's markdown, continuation lines joined."""
    found = []
    for c in nb.cells:
        if c.cell_type != "markdown":
            continue
        text = re.sub(r"\\\n\s*", " ", c.source)  # shell line continuations
        for m in re.finditer(r"(?:^|`|\n)\s*(papermill\s+[^`\n]+)", text):
            cmd = m.group(1).strip()
            if ".ipynb" in cmd:
                found.append(cmd)
    return found


CASES = [(p.stem, cmd) for p in sorted(NOTEBOOKS.glob("*.ipynb")) for cmd in _recipes(nbformat.read(p, 4))]


def test_the_notebooks_have_recipes():
    assert {name for name, _ in CASES} >= {p.stem for p in NOTEBOOKS.glob("0[0-9]_*.ipynb")}


@pytest.mark.parametrize("name,cmd", CASES, ids=[f"{n}:{i}" for i, (n, _) in enumerate(CASES)])
def test_recipe_works_as_written(name, cmd, tmp_path, monkeypatch):
    monkeypatch.chdir(NOTEBOOKS)
    args = shlex.split(cmd)[1:]
    args = [a.replace("notebooks/", "") if a.endswith(".ipynb") else a for a in args]
    declared = _parameters(nbformat.read(NOTEBOOKS / f"{name}.ipynb", 4))
    runner = CliRunner()
    if "--help-notebook" in args:
        res = runner.invoke(papermill_cli, args, catch_exceptions=False)
        assert res.exit_code == 0, res.output
        for p in declared:
            assert re.search(rf"^\s+{p}:", res.output, re.M), f"--help-notebook does not list {p}:\n{res.output}"
        return
    ipynbs = [i for i, a in enumerate(args) if a.endswith(".ipynb")]
    assert len(ipynbs) == 2, f"{cmd!r}: expected an input and an output notebook"
    args[ipynbs[1]] = str(tmp_path / "out.ipynb")
    res = runner.invoke(papermill_cli, [*args, "--prepare-only", "--log-level", "ERROR"], catch_exceptions=False)
    assert res.exit_code == 0, f"{cmd!r}: {res.output}"
    out = nbformat.read(tmp_path / "out.ipynb", 4)
    injected = [c for c in out.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected, f"{cmd!r} injected nothing"
    values: dict = {}
    exec(compile(injected[0].source, "<injected>", "exec"), {}, values)  # noqa: S102 - papermill's own output
    for key, value in values.items():
        assert key in declared, f"{cmd!r}: {key!r} is not a parameter of {name} ({sorted(declared)})"
        want = TYPES.get(declared[key])
        if want is not None:
            assert isinstance(value, want) and not (want is int and isinstance(value, bool)), \
                f"{cmd!r}: {key} = {value!r} but the parameters cell declares {key}: {declared[key]}" + \
                (' (a list needs -y "name: [..]")' if declared[key] == "list" else "")


def test_every_parameter_is_visible_to_papermill():
    """papermill parses ``name: type = value  # comment``; a line it cannot parse is skipped with only a warning,
    and the parameter then cannot be set from the command line without a warning."""
    from papermill.inspection import _infer_parameters
    from papermill.iorw import load_notebook_node

    bad = {}
    for p in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = load_notebook_node(str(p))
        seen = {q.name for q in _infer_parameters(nb)}
        missing = sorted(set(_parameters(nb)) - seen)
        if missing:
            bad[p.stem] = missing
    assert not bad, f"papermill cannot parse these parameter lines: {bad}"


def test_declared_types_are_known():
    for p in sorted(NOTEBOOKS.glob("*.ipynb")):
        for key, t in _parameters(nbformat.read(p, 4)).items():
            assert t in TYPES, f"{p.stem}: {key}: {t}"


