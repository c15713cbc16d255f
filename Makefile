# Two commands on a fresh machine:
#   make lab    set everything up (first time only) and open the notebooks in JupyterLab
#   make test   set everything up (first time only) and run the whole test suite
#   make test-fast  the unit tests only
#   make book   execute every notebook and build the static book in build/book/html
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.sslteach-installed

.PHONY: lab test test-fast setup bench book book-quick clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
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

bench: $(STAMP)
	$(PY) benchmarks/run.py --all --write benchmarks/RESULTS.md

clean:
	rm -rf $(VENV) .pytest_cache screenshots build
