# bayesbio: the two commands of the README, plus the slow tier and the benchmarks.
# Everything installs into a project-local virtual environment (.venv) first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## demo: fit the bundled Lotka–Volterra model (4 chains x 1000 warm-up x 1000 draws), print the
##       summary and write the HTML diagnostics report
demo: $(STAMP)
	$(BIN)/bayesbio fit lotka_volterra --out results/lotka_volterra.nc --force --report results/lotka_volterra.html

## test: the default (fast) test tier, including the tutorials in fast mode
test: $(STAMP)
	$(BIN)/python -m pytest -q

## test-slow: full-length statistical checks (minutes to an hour)
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

## bench: side-by-side benchmarks against Stan (installs PyStan into the venv)
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) results .pytest_cache
