# The two commands of the README:
#   make figures   set up, then regenerate every figure and table (profile: quick)
#   make test      set up, then run the test suite
# Override the interpreter with PYTHON=python3.11, the profile with PROFILE=paper.

PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= quick
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: setup browser figures test bench clean-figures kernel

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

figures: setup
	$(BIN)/python -m vssl_core regenerate --profile $(PROFILE)

# Debian's chromium for tests/test_browser.py (a no-op when /usr/bin/chromium exists or when
# not root; the test then skips, or fails under CI=true).
browser:
	bash .ci/install-browser

test: setup browser
	$(BIN)/python -m pytest -ra

bench: setup
	for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean-figures:
	rm -rf figures/*/ figures/MANIFEST.json build/notebooks
