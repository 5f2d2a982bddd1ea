# Scribe — developer entry points. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export SCRIBE_MOTO_SERVER := $(VENV)/bin/moto_server

.PHONY: help demo demo-mover test deps lint fmt clippy crds crds-check build cargo-test chart-lint chart-test images image-test bench cluster-up cluster-down e2e upstream

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

demo: deps ## the operator on a local control plane: the seed's two examples replicate a volume through S3
	bash hack/demo.sh

demo-mover: ## run the mover alone on a generated tree against the embedded local remote (no cluster, no server)
	bash hack/demo-mover.sh

test: deps lint cargo-test chart-test images image-test e2e ## everything CI runs: lint, all tests against real servers, chart, images, e2e
	@echo "make test: all checks passed"

deps: ## install test dependencies (apt packages, musl target, Python venv with moto and Helm SDK)
	bash hack/setup-test-deps.sh

build: ## build both binaries (debug)
	$(CARGO) build --workspace

lint: fmt clippy crds-check chart-lint ## rustfmt, clippy -D warnings, CRD drift check, Helm lint

fmt:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

crds: ## regenerate the CRD YAML in charts/scribe/crds from crates/api
	$(CARGO) run -q -p scribe-api --bin crdgen

crds-check: ## fail when the committed CRD YAML differs from crates/api
	$(CARGO) run -q -p scribe-api --bin crdgen -- --check

cargo-test: ## unit, conformance, S3 (moto), rclone interop and controller scenario tests (not e2e)
	$(CARGO) test --workspace --exclude scribe-e2e

upstream: ## build the pinned upstream control-plane binaries (cached in e2e/.bin/<go.sum hash>)
	bash hack/build-upstream.sh

cluster-up: deps ## start the local control plane + S3 + controller (prints export KUBECONFIG=...)
	bash hack/cluster.sh up

cluster-down: ## stop everything cluster-up started
	bash hack/cluster.sh down

e2e: deps ## end-to-end scenarios on the local cluster (or on $$KUBECONFIG with SCRIBE_E2E_* set: see e2e/README.md)
	bash hack/e2e.sh

chart-lint: ## helm lint + render + schema validation of charts/scribe (real Helm via helm-python-sdk)
	$(VENV)/bin/python hack/chart_test.py

chart-test: chart-lint

images: ## build static musl binaries and the controller and mover images with buildah
	bash hack/images.sh

image-test: ## run the images: controller --help/--version, mover round trip with podman against moto
	bash hack/image_test.sh

bench: ## benchmark the mover against rclone on a local garage server (prints a table of ratios)
	bash hack/bench.sh
