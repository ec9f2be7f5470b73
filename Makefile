# cp-migration: every target installs what it needs itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CLUSTER_DIR := .cluster
NODE_DIR := .node
PYTEST_ARGS ?=
# Images: see hack/images.sh. BASE_IMAGE empty = the Dockerfiles' pinned default.
IMAGE_REGISTRY ?= localhost/cp-migration
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
BASE_IMAGE ?=
IMAGE_ENV = IMAGE_REGISTRY=$(IMAGE_REGISTRY) IMAGE_TAG=$(IMAGE_TAG) BASE_IMAGE=$(BASE_IMAGE) \
	PYTHON=$(BIN)/python

.PHONY: install controlplane monitoring-tools test test-reliability test-fast lint format cluster cluster-down demo clean \
	podman base-image images push bench lock node-binaries node node-down demo-node test-node

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# kube-apiserver and etcd, built from Go modules once into ~/.cache (about 5 min cold on 2 cores).
controlplane:
	bash hack/controlplane/build.sh

# kube-state-metrics and promtool for the fleet view's tests (README "Fleet view"), built from
# Go modules once into ~/.cache (about 4 minutes each cold on 2 cores). Without Go their tests
# skip naming what is missing (and fail under CI=true).
monitoring-tools:
	@if command -v go >/dev/null; then bash hack/monitoring/build.sh >/dev/null; \
	else echo "go not found: kube-state-metrics and promtool are not built; their tests skip"; fi

test: install controlplane monitoring-tools
	$(BIN)/pytest $(PYTEST_ARGS)

# The reliability suite alone (crash points, faults, concurrency, bad input, security);
# `make test` runs it too.
test-reliability: install controlplane
	$(BIN)/pytest tests/cluster/reliability $(PYTEST_ARGS)

# Pure unit tests only (tests/unit): no control plane, no images, no processes; seconds.
test-fast: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

# Benchmark (issue 5): each tool as a whole process against a local control plane; writes
# docs/benchmarks.md and docs/benchmarks.png. Never part of `make test`.
BENCH_ARGS ?=
# Each step is also measured in its image when `make images` (same IMAGE_REGISTRY/IMAGE_TAG)
# has built it, e.g. `make images BASE_IMAGE=localhost/cp-migration-base:bookworm && make bench`.
bench: $(VENV)/.bench-installed controlplane
	$(IMAGE_ENV) $(BIN)/python -m hack.bench $(BENCH_ARGS)

$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

# ruff, mypy --strict, and the layer rules (hack/layers.py: plans import no kubernetes, tools
# never import each other, common imports no tool, common/cluster no Kyma vocabulary, only the
# cli modules import click).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m hack.layers

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

cluster: install controlplane
	@$(BIN)/python -m hack.devenv.controlplane start $(CLUSTER_DIR) >/dev/null
	@echo "control plane up; kubeconfig: $(CLUSTER_DIR)/kubeconfig"

cluster-down: install
	$(BIN)/python -m hack.devenv.controlplane stop $(CLUSTER_DIR)

# A real node beside its own control plane (README, "The node tests"): kubelet,
# kube-controller-manager and kube-scheduler built once beside the apiserver (about 80 s with
# a warm build cache), containerd, runc, CNI plugins and busybox from Debian. Needs root.
node-binaries: controlplane
	bash hack/controlplane/build-node.sh

node: install node-binaries
	@$(BIN)/python -m hack.devenv.node start $(NODE_DIR) >/dev/null
	@echo "node up; kubeconfig: $(NODE_DIR)/controlplane/kubeconfig"

# Stops the node and puts the host back (sysctls, mounts, cgroups, iptables, fixed paths).
node-down: install
	$(BIN)/python -m hack.devenv.node stop $(NODE_DIR)

# The demo as real Pods: deploy/ on the node, the steps as init containers.
demo-node: node
	$(BIN)/python -m hack.demo_node --node $(NODE_DIR)

# The node tests alone (`make test` runs them too).
test-node: install node-binaries
	$(BIN)/pytest tests/node $(PYTEST_ARGS)

demo: cluster
	$(BIN)/python -m hack.demo --kubeconfig $(CLUSTER_DIR)/kubeconfig

# podman from Debian, configured for this kind of machine (needs root; CI runs it).
podman:
	bash hack/podman-setup.sh

# A local bookworm + python3 base image (debootstrap) for machines that reach no registry.
base-image: podman
	bash hack/base-image.sh

# requirements.lock: the runtime dependencies pinned with their hashes (from pyproject.toml,
# keeping the pins it has; add --upgrade to move them). The images are built from it.
lock: install
	$(BIN)/pip install --quiet 'pip-tools>=7.4'
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
		--no-emit-index-url --no-emit-find-links --output-file requirements.lock pyproject.toml

# The three step images; docker when a docker engine answers, otherwise podman.
images: install
	$(IMAGE_ENV) bash hack/images.sh build

push: images
	$(IMAGE_ENV) bash hack/images.sh push

clean: cluster-down node-down
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
