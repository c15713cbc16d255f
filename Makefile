# Two commands on a fresh machine:
#   make lab    set everything up (first time only) and open the notebooks in JupyterLab
#   make test   set everything up (first time only) and run the whole test suite
#   make test-fast  the unit tests only
#   make book   execute every notebook and build the static book in build/book/html
#   make slides / handouts / prepare NB=03_fixmatch   the lecturer's kit (LECTURERS.md)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.sslteach-installed

.PHONY: lab test test-fast test-browser setup bench claims book book-quick slides handouts prepare clean

RISE_WIDGETS = $(VENV)/share/jupyter/labextensions/sslteach-rise-widgets

$(STAMP): pyproject.toml labextension/package.json labextension/static/remoteEntry.js
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	# an editable install skips pyproject's data-files: the RISE widgets stand-in (labextension/) is copied by hand
	mkdir -p $(RISE_WIDGETS)/static
	cp labextension/package.json $(RISE_WIDGETS)/
	cp labextension/static/remoteEntry.js $(RISE_WIDGETS)/static/
	# jupyterlab-rise brings a JupyterLab 3 MathJax extension that JupyterLab 4 marks incompatible (its own renders math)
	-$(VENV)/bin/jupyter labextension disable --level=sys_prefix @jupyterlab/mathjax3-extension >/dev/null 2>&1
	touch $(STAMP)

setup: $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/00_start_here.ipynb

# Everything: unit tests, every method's claim (3 seeds), every notebook once in JupyterLab (Chromium), the book.
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist worksteal --durations=40

# The edit-test loop: unit tests only (no claim, notebook, browser or book test).
test-fast: $(STAMP)
	$(PY) -m pytest -n 2 -m "not slow and not notebook and not browser and not book"

# The published book: every notebook executed at its default settings (the run cache makes a rebuild fast), then a
# static site in build/book/html (offline: MathJax is bundled). book-quick: the same pipeline in quick mode.
book: $(STAMP)
	$(PY) book/build.py

book-quick: $(STAMP)
	$(PY) book/build.py --quick --out build/book-quick

# The lecturer's kit (LECTURERS.md). slides: every notebook executed (run cache) and exported as reveal.js slides
# in build/slides (open build/slides/03_fixmatch.html; offline; the book builds them too). handouts: the notebooks
# without their solutions, in build/handouts. prepare: every training notebook NB asks for, into the run cache, the
# day before the class (make prepare NB=03_fixmatch).
slides: $(STAMP)
	$(PY) book/build.py --slides-only --out build/slides

handouts: $(STAMP)
	$(PY) -m sslteach.lecture handouts --out build/handouts notebooks/[0-9][0-9]_*.ipynb

NB ?=
prepare: $(STAMP)
	@test -n "$(NB)" || { echo "usage: make prepare NB=03_fixmatch"; exit 2; }
	$(PY) -m sslteach prepare $(NB)

# The browser tests alone: every notebook in JupyterLab, the live slideshows (RISE), the book in Chromium.
test-browser: $(STAMP)
	$(PY) -m pytest -n 2 -m "browser or book"

bench: $(STAMP)
	$(PY) benchmarks/run.py --all --write benchmarks/RESULTS.md

# Every paper's claim rerun at its notebook's regime, 3 seeds, through the run cache: CLAIMS.md (run it alone).
claims: $(STAMP)
	mkdir -p build && $(PY) -m sslteach claims run --all --seeds 0 1 2 --jobs 2 --markdown CLAIMS.md --out build/claims.json

clean:
	rm -rf $(VENV) .pytest_cache screenshots build
