# Two entry points (see README): `make demo` and `make test`. Each builds .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,peers,docs,ray]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/probprop demo --out probprop-demo

# The tests compile with XLA's optimisation level 0 (about 40 % less compile time; see conftest.py).
test: $(STAMP)
	XLA_FLAGS="--xla_backend_optimization_level=0 $(XLA_FLAGS)" JAX_COMPILATION_CACHE_DIR=$(CURDIR)/.pytest_cache/jax JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0.3 $(BIN)/python -m pytest -n 2 -q --durations=25
	$(MAKE) docs

# The documentation site (Sphinx; the gallery's examples run at every build), warnings as errors.
docs: $(STAMP)
	JAX_COMPILATION_CACHE_DIR=$(CURDIR)/.pytest_cache/jax $(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

# The PBP reproduction (with the BayesianRidge and NGBoost baselines) and the engine's speed (about 25 minutes, NGBoost most of it).
bench: $(STAMP)
	$(BIN)/probprop bench speed --out docs/benchmarks
	$(BIN)/probprop bench uci --methods pbp,bayesridge,ngboost --datasets all --splits all --workers 2 --out docs/benchmarks/uci

# Every report under docs/benchmarks except those run on the lent GPU (docs/benchmarks/accelerator,
# docs/benchmarks/images-cnn-ensemble10: their READMEs give the commands); about 26 hours on 2 cores.
UCI := $(BIN)/probprop bench uci --splits all --workers 2 --no-progress
bench-all: bench
	cache=$$(mktemp -d) && \
	  PROBPROP_JAX_CACHE=$$cache $(UCI) --datasets all --methods pbp --out docs/benchmarks/uci-pbp && \
	  PROBPROP_JAX_CACHE=$$cache $(UCI) --datasets all --methods pbp --out docs/benchmarks/uci-pbp-warm
	$(UCI) --datasets naval --methods pbp,pbp-refscale --out docs/benchmarks/naval-scaling
	$(UCI) --datasets all --methods pbp,tagi,dvi,map,mcdropout,ensemble,bayesridge,ngboost --out docs/benchmarks/family
	$(UCI) --datasets all --methods pbp,pbp2,pbp-ensemble,dvi-het --out docs/benchmarks/family-variants
	$(UCI) --datasets all --methods map,laplace --out docs/benchmarks/uci-laplace
	$(UCI) --datasets boston,yacht --methods pbp2,pbp3,pbp2-single,pbp3-single --out docs/benchmarks/pbp-deep
	$(UCI) --datasets all --methods pbp,pbp-sep --out docs/benchmarks/pbp-sep
	$(UCI) --datasets all --methods pbp,pbp-het,pbp-sep,pbp-sep-het --out docs/benchmarks/pbp-het
	$(UCI) --datasets energy,yacht --methods pbp2-sep-het-val,pbp-sep-het,ngboost --out docs/benchmarks/pbp-het-val
	$(UCI) --datasets all --methods pbp,pbp-sep-het,pbp-sep-het-cut --out docs/benchmarks/pbp-het-cut
	$(UCI) --datasets energy,yacht --methods pbp2-sep-het-val,pbp2-sep-het-cut-val,ngboost --out docs/benchmarks/pbp-het-cut-val
	$(UCI) --datasets protein,kin8nm,naval --methods pbp-sep,pbp-sep-k2,pbp-sep-k4,pbp-sep-k8 --out docs/benchmarks/pbp-sharded
	$(BIN)/probprop bench sharded --out docs/benchmarks/sharded
	$(UCI) --datasets all --methods ensemble,ensemble-select --out docs/benchmarks/ensemble-select
	$(UCI) --datasets energy,yacht,power --methods ensemble2-val,ensemble,ngboost --out docs/benchmarks/ensemble2-val
	$(UCI) --datasets all --methods tagi,tagi-het --out docs/benchmarks/tagi-het
	$(UCI) --datasets all --methods tagi,tagi-he --out docs/benchmarks/tagi-init
	$(UCI) --datasets all --methods pbp,tagi,dvi,map,ensemble,mcdropout --calibrate all --out docs/benchmarks/calibration
	$(UCI) --datasets all --methods tagi,tagi-he-prec-val,pytagi --out docs/benchmarks/pytagi  # pytagi: see `make pytagi`
	$(UCI) --datasets all --methods tagi,tagi-prec,tagi-he,tagi-he-prec --out docs/benchmarks/tagi-prec
	$(BIN)/probprop bench tagi-speed --out docs/benchmarks/tagi-speed  # pytagi: see `make pytagi`
	$(BIN)/probprop bench noisy-inputs --out docs/benchmarks/noisy-inputs
	$(BIN)/probprop bench images --out docs/benchmarks/images
	$(BIN)/probprop bench images --methods pbp-cnn --epochs 8 --out docs/benchmarks/images-cnn
	$(BIN)/probprop bench images --datasets mnist --methods pbp-cnn --epochs 16 --out docs/benchmarks/images-cnn-16
	$(BIN)/probprop bench images --datasets fashion-mnist --methods pbp-cnn --epochs 16 --out docs/benchmarks/images-cnn-fashion-16
	$(BIN)/probprop bench images --datasets mnist --methods pbp-cnn --epochs 32 --out docs/benchmarks/images-cnn-32
	$(BIN)/probprop bench images --datasets mnist --methods pbp-cnn-max --epochs 8 --out docs/benchmarks/images-cnn-max
	$(BIN)/probprop bench images --datasets fashion-mnist --methods pbp-cnn-max --epochs 8 --out docs/benchmarks/images-cnn-max-fashion
	$(BIN)/probprop bench images --datasets fashion-mnist --methods pbp-cnn-max --epochs 16 --out docs/benchmarks/images-cnn-max-fashion-16
	$(BIN)/probprop bench images --datasets fashion-mnist --methods pbp-cnn-max-ensemble --members 2 --epochs 5 --out docs/benchmarks/images-cnn-max-ensemble-fashion
	$(BIN)/probprop bench images --datasets fashion-mnist --methods pbp-cnn-max-ensemble --members 2 --epochs 8 --out docs/benchmarks/images-cnn-max-ensemble-fashion-8
	$(BIN)/probprop bench images --datasets fashion-mnist --methods pbp-cnn,pbp-sep-cnn --epochs 12 --train-rows 10000 --workers 1 --out docs/benchmarks/images-sep-cnn
	$(BIN)/probprop bench conv-speed --out docs/benchmarks/conv-speed
	$(BIN)/probprop bench predict-speed --out docs/benchmarks/predict-speed
	$(BIN)/probprop bench images --datasets mnist --methods tagi-cnn --epochs 5 --workers 1 --out docs/benchmarks/images-tagi-cnn
	$(BIN)/probprop bench images --methods map-cnn,deep-ensemble-cnn --epochs 1 --out docs/benchmarks/images-cnn-baselines
	$(BIN)/probprop bench images --datasets mnist,fashion-mnist --methods map-cnn,laplace-cnn --epochs 1 --out docs/benchmarks/images-laplace
	$(BIN)/probprop bench images --datasets mnist,fashion-mnist --methods laplace-ensemble-cnn --epochs 1 --out docs/benchmarks/images-laplace-ensemble
	$(BIN)/probprop bench images --datasets mnist --methods laplace-ensemble-cnn --members 10 --epochs 1 --workers 2 --out docs/benchmarks/images-laplace-ensemble10
	$(BIN)/probprop bench images --datasets mnist,fashion-mnist --methods laplace-cnn --links mc,probit,bridge,bridge_norm --epochs 1 --workers 1 --out docs/benchmarks/images-laplace-links
	$(BIN)/probprop bench images --datasets mnist,fashion-mnist --methods laplace-ensemble-cnn --links mc,probit,bridge,bridge_norm --epochs 1 --out docs/benchmarks/images-laplace-ensemble-links
	$(BIN)/probprop bench images --datasets mnist,fashion-mnist --methods laplace-kron-cnn,laplace-kron --hidden 1024 --links mc,probit,bridge,bridge_norm --epochs 1 --out docs/benchmarks/images-laplace-kron
	$(BIN)/probprop bench images --datasets mnist --methods deep-ensemble-cnn --members 15 --epochs 1 --out docs/benchmarks/images-cnn-ensemble15
	$(BIN)/probprop bench images --methods tagi-1pass,tagi,mcdropout,deep-ensemble --out docs/benchmarks/images-family
	$(BIN)/probprop bench images --datasets mnist --methods tagi --epochs 20 --hidden 400,400 --seeds 4 --out docs/benchmarks/images-mlp
	$(BIN)/probprop bench images --datasets mnist --methods tagi-shift --epochs 20 --hidden 400,400 --seeds 4 --out docs/benchmarks/images-mlp-shift
	$(BIN)/probprop bench images --datasets mnist --methods pbp-shift --epochs 10 --hidden 400,400 --out docs/benchmarks/images-mlp-shift-pbp
	$(BIN)/probprop bench images --methods tagi,pytagi --out docs/benchmarks/images-pytagi  # pytagi: see `make pytagi`
	$(BIN)/probprop bench streams --out docs/benchmarks/streams
	$(BIN)/probprop bench active --rules random,variance,greedy,reduction --out docs/benchmarks/active
	$(BIN)/probprop bench active --rules random,variance,lcmd --out docs/benchmarks/active-lcmd
	$(BIN)/probprop bench active --rules random,bmdal-lcmd --out docs/benchmarks/active-bmdal  # pip install -e ".[active-peers]"

# pytagi for `probprop bench uci --methods pytagi` (not needed otherwise): its extension links
# Debian's libopenmpi3 (root needed) and NVIDIA's NCCL, which comes as a wheel.
pytagi: $(STAMP)
	apt-get install -y libopenmpi3
	$(BIN)/pip install --quiet "pytagi>=0.2.1" "nvidia-nccl-cu12>=2.18"

.PHONY: install demo test docs bench bench-all pytagi
