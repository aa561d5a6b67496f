.PHONY: quickstart check lint types unit format-check test bench clean
VENV ?= .venv
PY := $(VENV)/bin/python
# scripts/setup.sh dev again whenever what it installs changes
DEV_STAMP ?= $(VENV)/.bushu-dev-installed

quickstart:  ## set up .venv and run the main job on the bundled offline model
	scripts/setup.sh all
	.venv/bin/bushu quickstart

check: lint types unit format-check  ## fast checks (< 2 min once .venv exists): lint, types, unit tests, format

lint: $(DEV_STAMP)
	$(PY) -m ruff check src tests bench

types: $(DEV_STAMP)
	$(PY) -m mypy

unit: $(DEV_STAMP)
	$(PY) -m pytest tests/unit -q -p no:cacheprovider $(PYTEST_ARGS)

format-check: $(DEV_STAMP)  ## last: `ruff format` owns the layout (line length 120)
	$(PY) -m ruff format --check src tests bench

$(DEV_STAMP): pyproject.toml scripts/setup.sh requirements/tflite.txt
	scripts/setup.sh dev
	touch $@

test:  ## set up .venv and run the whole test suite
	scripts/test.sh

bench:  ## compare backends side by side (writes bench/results/*.json and *.md)
	scripts/setup.sh all
	.venv/bin/python bench/backends.py

clean:
	rm -rf .venv build dist src/*.egg-info quickstart-out bench/results .mypy_cache .ruff_cache
