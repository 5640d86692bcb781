# hetbench: `make setup` installs everything; `make test` runs the tests; `make bench` the quick suite;
# `make cpu` and `make paper` the scaled and full DynaFed comparisons.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JOBS ?= 2
SUITE ?= quick
# `make paper DEVICE=cuda` runs the paper suite on a GPU (the vectorised executor is picked there).
DEVICE ?= cpu

.PHONY: setup data test bench cpu paper perf gpu-bundle report tune clean-results

setup: $(STAMP) data

# The venv is rebuilt only when pyproject.toml changes, so a second `make setup` is fast.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,cluster,flower,regl]'
	touch $(STAMP)

# Fashion-MNIST from Debian and tcmalloc when apt is usable; CIFAR from ../shared/data when present.
# Debian's chromium too: the report's browser test (tests/test_report_browser.py) drives it through
# Playwright, which never downloads a browser of its own here.
data: $(STAMP)
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  missing=""; \
	  for pkg in dataset-fashion-mnist libtcmalloc-minimal4 chromium; do \
	    dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	  done; \
	  if [ -n "$$missing" ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "warning: could not install$$missing with apt-get; see README (Data)"; \
	  fi; \
	fi
	$(PY) -m benchmarks data --prepare

# The import contracts (.importlinter: layers, no circles, algorithms see only the engine API, reports
# and the results store never import torch), then the tests.
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

bench: setup
	$(PY) -m benchmarks sweep quick --jobs $(JOBS)

perf: setup
	$(PY) -m benchmarks perf --compare-jobs

# The GPU check's luggage (issue G): Fashion-MNIST and this checkout's revision in .gpu/ (git-ignored), the
# size of what the device tool would send, and the one command to run there (README: "The GPU check").
gpu-bundle: setup
	$(PY) -m benchmarks perf --gpu-bundle .gpu

# The paper grid at CPU cost with the paper's per-client regime (suite cpu_regime, 6-7 h per seed on 2
# cores, measured) and the full paper setting. Both resume: rerun the same command after an
# interruption and finished runs (and checkpointed rounds) are kept. `make cpu` also counts the runs
# of the committed report as done, so a new machine finishes the grid (`make cpu PUBLISHED=` runs all).
PUBLISHED ?= reports/cpu_regime
PUBLISHED_OPTION = $(if $(PUBLISHED),--published $(PUBLISHED))
cpu: setup
	$(PY) -m benchmarks estimate cpu_regime --jobs $(JOBS) $(PUBLISHED_OPTION)
	$(PY) -m benchmarks sweep cpu_regime --jobs $(JOBS) $(PUBLISHED_OPTION)
	$(PY) -m benchmarks report cpu_regime $(PUBLISHED_OPTION)

# Runs made with --set device=cuda file under paper@<hash> (a device changes numbers), so the report
# reads the folder the suite's loader names.
paper: setup
	$(PY) -m benchmarks estimate paper --jobs $(JOBS) --set device=$(DEVICE)
	$(PY) -m benchmarks sweep paper --jobs $(JOBS) --set device=$(DEVICE)
	$(PY) -m benchmarks report $$($(PY) -c "from benchmarks.experiments.suites import load_suite; print(load_suite('paper', ['device=$(DEVICE)']).name)")

report: $(STAMP)
	$(PY) -m benchmarks report $(SUITE)

tune: setup
	$(PY) -m benchmarks tune --algorithm fedprox --dataset fmnist --alpha 0.04 --trials 20 --base quick

clean-results:
	rm -rf results/*/
