# Two entry points (see README): `make demo` and `make test`. Each builds .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,peers]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/probprop demo --out probprop-demo

test: $(STAMP)
	JAX_COMPILATION_CACHE_DIR=$(CURDIR)/.pytest_cache/jax JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0.3 $(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/probprop bench speed
	$(BIN)/probprop bench uci --methods pbp,bayesridge,ngboost --workers 2 --out docs/benchmarks

.PHONY: install demo test bench
