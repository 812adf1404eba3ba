# Framewire: `make demo` and `make test` do all the set-up on a fresh Debian machine.
.DEFAULT_GOAL := help
SHELL := /usr/bin/env bash

# The worker with both decoder backends (openh264 and libavcodec, whose libraries `make prereqs`
# installs); a plain `cargo build` makes an openh264-only worker that needs no system libraries.
FEATURES := --features framewire-worker/ffmpeg

.PHONY: help demo test chaos soak bench lint deny api-fuzz fmt build stack-up stack-down stack-status prereqs clean deploy-check image

help: ## Show the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

demo: ## Start the local stack and the fleet with 3 synthetic cameras; live table (DEMO_SECONDS=N stops by itself)
	@scripts/demo.sh

test: ## The whole suite: fmt check, clippy, unit, integration and end-to-end tests on the real local stack
	@scripts/test.sh

chaos: ## The fault suite alone: the fleet on a 3-node Kafka through broker, worker, sink, ingest, database and camera faults; prints the accounting table (CHAOS_ONLY=a,b)
	@scripts/chaos.sh

soak: ## 50 cameras through the whole fleet for an hour, RSS of every service each minute and its slope (SOAK_MINUTES, SOAK_CAMERAS; not in CI)
	@scripts/soak.sh

deploy-check: ## Deploy checks (chart, kustomize, schemas, policy, alerts, dashboard on a live fleet) + the full image build
	@scripts/deploy/check.sh --image=full

image: ## Build the image (full multi-stage build) and its SBOM (syft), and the test camera image (deploy/camera/Dockerfile), with podman on local Debian bases; IMAGE=registry/name:tag also tags and pushes them, the camera as registry/name-camera:tag (or IMAGE_CAMERA=…)
	@built="$$(scripts/deploy/image.sh full)" && echo "$$built" && \
	sbom="$$(scripts/deploy/image.sh sbom "$$built")" && echo "SBOM (SPDX JSON): $$sbom" && \
	camera="$$(scripts/deploy/image.sh camera)" && echo "$$camera" && \
	if [ -n "$(IMAGE)" ]; then scripts/deploy/image.sh push "$$built" "$(IMAGE)" "$$camera" "$(IMAGE_CAMERA)"; fi

bench: ## Benchmarks on the local stack: kernels, decode per backend vs ffmpeg (and ffmpeg with the statistics filters), worker path per backend, keyframes, scaling, loadgen fleet, sizing validation, ingest, latency, detection, sink (BENCH_ONLY, BENCH_CAMERAS, BENCH_SECONDS); tables for docs/benchmarks.md
	@scripts/bench/run.sh

deny: ## cargo deny (offline): licences, bans and sources of every crate (deny.toml)
	@scripts/deny.sh

api-fuzz: ## schemathesis (pinned, all checks) against the sink's OpenAPI document on a real sink with data (API_FUZZ_EXAMPLES, API_FUZZ_SEED)
	@scripts/api-fuzz.sh

lint: ## cargo fmt --check and clippy with -D warnings
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets $(FEATURES) -- -D warnings
	cargo clippy -p framewire-decode -p framewire-worker --all-targets -- -D warnings

fmt: ## Format the code
	cargo fmt --all

build: prereqs ## Build the three binaries (debug)
	cargo build --workspace --bins $(FEATURES)

prereqs: ## Install missing build and test prerequisites (Debian packages)
	@scripts/install-prereqs.sh

stack-up: ## Start Kafka (KRaft), PostgreSQL and the RTSP test server on loopback
	@scripts/stack.sh up

stack-down: ## Stop the local stack (data is kept in .stack/)
	@scripts/stack.sh down

stack-status: ## One line per stack component
	@scripts/stack.sh status

clean: stack-down ## Stop the stack and remove its data and the build
	rm -rf .stack target
