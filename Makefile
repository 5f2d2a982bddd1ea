# Scribe — developer entry points. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export SCRIBE_MOTO_SERVER := $(VENV)/bin/moto_server

.PHONY: help demo test deps lint fmt clippy crds crds-check build cargo-test chart-lint chart-test images image-test bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

demo: ## run the mover on a generated tree against the embedded local remote (no cluster, no server)
	bash hack/demo.sh

test: deps lint cargo-test chart-test images image-test ## everything CI runs: lint, all tests against real servers, chart, images
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

cargo-test: ## unit, conformance, S3 (moto), rclone interop and controller scenario tests
	$(CARGO) test --workspace

chart-lint: ## helm lint + render + schema validation of charts/scribe (real Helm via helm-python-sdk)
	$(VENV)/bin/python hack/chart_test.py

chart-test: chart-lint

images: ## build static musl binaries and the controller and mover images with buildah
	bash hack/images.sh

image-test: ## run the images: controller --help/--version, mover round trip with podman against moto
	bash hack/image_test.sh

bench: ## benchmark the mover against rclone on a local garage server (prints a table of ratios)
	bash hack/bench.sh
