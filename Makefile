# cp-migration: every target installs what it needs itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CLUSTER_DIR := .cluster
PYTEST_ARGS ?=

.PHONY: install controlplane test test-fast lint format cluster cluster-down demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# kube-apiserver and etcd, built from Go modules once into ~/.cache (10-20 min cold).
controlplane:
	bash hack/controlplane/build.sh

test: install controlplane
	$(BIN)/pytest $(PYTEST_ARGS)

# Pure unit tests only: no control plane, no images.
test-fast: install
	$(BIN)/pytest -m 'not cluster and not images' $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

cluster: install controlplane
	@$(BIN)/python -m tests.support.controlplane start $(CLUSTER_DIR) >/dev/null
	@echo "control plane up; kubeconfig: $(CLUSTER_DIR)/kubeconfig"

cluster-down: install
	$(BIN)/python -m tests.support.controlplane stop $(CLUSTER_DIR)

demo: cluster
	$(BIN)/python -m hack.demo --kubeconfig $(CLUSTER_DIR)/kubeconfig

clean: cluster-down
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
