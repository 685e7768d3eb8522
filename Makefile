# The two commands of the README:
#   make figures   set up, then regenerate every figure and table (profile: quick), from the
#                  shipped weights in weights/<profile>/ (nothing is trained)
#   make test      set up, then run the test suite
# Training is a separate job:
#   make train     train every model the notebooks use and write weights/<profile>/ (resumes)
#   make retrain   train everything from scratch in build/retrain/, regenerate the figures there
#                  and compare every number with the committed figures' 95% intervals
# Override the interpreter with PYTHON=python3.11, the profile with PROFILE=paper.
# TORCH_INDEX=https://download.pytorch.org/whl/cpu installs torch and torchvision (the versions
# pinned in requirements.txt) from that index first, here their CPU builds (2.14.1+cpu), instead
# of PyPI's, which on Linux x86-64 are the CUDA builds (about 6.5 GB of .venv).

PYTHON      ?= python3
VENV        ?= .venv
PROFILE     ?= quick
TORCH_INDEX ?=
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.installed

.PHONY: setup git-filter browser figures train retrain test bench clean-figures

setup: $(STAMP) git-filter

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
ifneq ($(strip $(TORCH_INDEX)),)
	$(BIN)/python -m pip install --index-url $(TORCH_INDEX) $$(grep -E '^torch(vision)?==' requirements.txt)
endif
	$(BIN)/python -m pip install -r requirements.txt
	touch $(STAMP)

# Notebooks are committed without outputs: a git clean filter (.ci/nbstrip.py, applied to
# notebooks/*.ipynb by .gitattributes) strips what a run in JupyterLab saved. Skipped outside
# a git clone (e.g. an unpacked archive).
git-filter:
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	    $(BIN)/python .ci/nbstrip.py --install; \
	else echo "git-filter: not a git clone, nothing to configure"; fi

figures: setup
	$(BIN)/python -m vssl_core regenerate --profile $(PROFILE)

train: setup
	$(BIN)/python -m vssl_core train --profile $(PROFILE)

RETRAIN := $(CURDIR)/build/retrain
retrain: setup
	VSSL_DATA_DIR=$(RETRAIN)/data VSSL_WEIGHTS_DIR=$(RETRAIN)/weights \
	    $(BIN)/python -m vssl_core train --profile $(PROFILE)
	VSSL_DATA_DIR=$(RETRAIN)/data VSSL_WEIGHTS_DIR=$(RETRAIN)/weights \
	    $(BIN)/python -m vssl_core regenerate --profile $(PROFILE) --figures-dir $(RETRAIN)/figures
	$(BIN)/python -m vssl_core compare figures $(RETRAIN)/figures --csv $(RETRAIN)/comparison.csv

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
