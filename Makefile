# kubectl-pgpool. `make demo` shows the main job on the local cluster;
# `make test` runs every test (lint, unit, krew manifest, cluster).
SHELL := /bin/bash
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# The commit's time, so that the same commit builds the same binary (and image).
DATE    ?= $(shell git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)
IMAGE   ?= localhost/kubectl-pgpool:$(VERSION)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
TOOLS   := $(HOME)/.cache/kubectl-pgpool/tools
GOLANGCI_LINT_VERSION := v2.15.0

.PHONY: image deps build install cluster-up cluster-down demo test unit lint krew-validate dist e2e bench clean

deps: ## install the Debian packages demo and test need that are missing (hack/deps.sh; as root, or it prints the sudo command)
	@hack/deps.sh

build: ## bin/kubectl-pgpool
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/kubectl-pgpool ./cmd/kubectl-pgpool

image: build ## dist/kubectl-pgpool-image.tar: the plugin on a scratch base as an OCI layout tarball, built without Docker (hack/image; IMAGE=name:tag); the image `tls schedule` runs
	@cd hack/image && SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 0) go run . -binary ../../bin/kubectl-pgpool -name $(IMAGE) -out ../../dist/kubectl-pgpool-image.tar

install: build ## copy the plugin and its completion shim to /usr/local/bin
	install -m 0755 bin/kubectl-pgpool kubectl_complete-pgpool /usr/local/bin/

cluster-up: ## start the local cluster (builds it the first time: ~25 min) with the real PetSet controller and its CRDs (KubeDB's layout); REAL_NODE=1 adds the real node
	@PETSET=1 hack/cluster.sh up

cluster-down: ## stop the local cluster and remove its state
	@hack/cluster.sh down

demo: deps build ## local cluster with its real node + KubeDB-layout pgpool + add (then psql), rotate, change-issuer, remove
	@hack/demo.sh

test: deps lint unit krew-validate e2e ## everything CI runs

unit: ## pure packages, and the runner, discovery and commands against client-go fakes (no cluster)
	go test ./pkg/... ./internal/...

lint: ## gofmt, go vet, golangci-lint
	@test -z "$$(gofmt -l cmd pkg test internal hack)" || { gofmt -l cmd pkg test internal hack; echo "gofmt: the files above need formatting"; exit 1; }
	go vet ./...
	@[ -x $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION) ] || { echo "installing golangci-lint $(GOLANGCI_LINT_VERSION) (first time: a few minutes)"; \
		GOBIN=$(TOOLS)/gl go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) && \
		mv $(TOOLS)/gl/golangci-lint $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION); }
	$(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION) run ./...

krew-validate: ## krew's manifest validation, and a real krew install of this platform's archive (hack/krew-check.sh)
	@hack/krew-check.sh

dist: ## release archives, the image tarball per linux platform (IMAGE_REPO=registry/name) and dist/pgpool.yaml with their sha256 (VERSION=v0.1.0 PLATFORMS="linux/amd64 ...")
	@hack/dist.sh

e2e: ## tests against the local cluster with its real node (starts it when it is not up, stops it after)
	@hack/build-petset.sh >/dev/null
	@hack/build-helm.sh >/dev/null
	@set -o pipefail; REAL_NODE=1 hack/with-cluster.sh go test -json -count=1 -p 1 -timeout 60m ./test/... | go run ./hack/testsummary

bench: ## wall time, controller wait and API requests per operation and replica count; fleets; latency; client errors during rolls (real node)
	@REAL_NODE=1 hack/with-cluster.sh go test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 60m ./test/bench/

clean:
	rm -rf bin dist
