# hetbench: `make setup` installs everything; `make test` runs the tests; `make bench` the quick suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JOBS ?= 2

.PHONY: setup data test bench perf report tune clean-results

setup: $(STAMP) data

# The venv is rebuilt only when pyproject.toml changes, so a second `make setup` is fast.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Fashion-MNIST from Debian and tcmalloc when apt is usable; CIFAR from ../shared/data when present.
data: $(STAMP)
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  missing=""; \
	  for pkg in dataset-fashion-mnist libtcmalloc-minimal4; do \
	    dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	  done; \
	  if [ -n "$$missing" ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "warning: could not install$$missing with apt-get; see README (Data)"; \
	  fi; \
	fi
	$(PY) -m benchmarks data --prepare

test: $(STAMP)
	$(PY) -m pytest

bench: setup
	$(PY) -m benchmarks sweep quick --jobs $(JOBS)

perf: setup
	$(PY) -m benchmarks perf

report: $(STAMP)
	$(PY) -m reports quick

tune: setup
	$(PY) -m benchmarks tune --algorithm fedprox --dataset fmnist --alpha 0.04 --trials 20 --base quick

clean-results:
	rm -rf results/*/
