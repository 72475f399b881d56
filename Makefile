# revoked: make help lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
HELM_VERSION := v3.22.0
HELM := $(BIN)/helm
export HELM
PKG ?= ./...
T ?=
RUN := $(if $(T),-run '$(T)',)

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# VERSION and REVISION are what --version and revoked_build_info say: git describe and
# the commit when this is a git checkout, else Go's own (the module version or "devel";
# the commit Go records unless -buildvcs=false).
VERSION ?= $(shell git describe --always --dirty 2>/dev/null)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := $(if $(VERSION),-X github.com/revoked-dev/revoked/internal/buildinfo.Version=$(VERSION)) \
	$(if $(REVISION),-X github.com/revoked-dev/revoked/internal/buildinfo.Revision=$(REVISION))

.PHONY: build
build: ## Build revoked and revokectl into ./bin (VERSION=v1.2.3 overrides git describe)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

.PHONY: run
run: ## Run the sidecar in --dev mode (embedded NATS, dev key, sample token)
	$(GO) run ./cmd/revoked --dev

.PHONY: test
test: $(HELM) ## Run the whole suite with -race (T=Name PKG=./sync/... to narrow)
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m $(RUN) $(PKG)

.PHONY: bench
bench: ## Every benchmark of BENCHMARKS.md: Go benchmarks, loadgen, cold start, propagation (~5 min; BENCHTIME, LOAD_DURATION, COLD_EVENTS, PROP_SIDECARS, STAGES="go load cold prop")
	bash scripts/bench.sh

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 30s)
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-30s} $$pkg || exit 1; \
	  done; \
	done

.PHONY: test-faults
test-faults: ## Fault-injection suite, long form: real nats-server and revoked processes (~6 min)
	REVOKED_FAULTS=long $(GO) test -race -count=1 -timeout 30m -v $(RUN) ./test/faults

.PHONY: test-explore
test-explore: ## Explorer, long form: seeded random operations against real NATS and replicas (EXPLORE_DURATION, default 20m; EXPLORE_SEED)
	EXPLORE_DURATION=$${EXPLORE_DURATION:-20m} $(GO) test -race -count=1 -timeout 0 -v -run '^TestExplore$$' ./test/faults/explore

.PHONY: test-soak
test-soak: ## Bounded soak of a real sidecar (SOAK_DURATION, default 2m)
	REVOKED_SOAK=1 REVOKED_SOAK_DURATION=$${SOAK_DURATION:-2m} $(GO) test -count=1 -timeout 15m -v ./test/soak

.PHONY: test-idp
test-idp: ## Tests against real IdPs, Ory Hydra and oidc-provider: installs gcc and node if missing, builds Hydra (~6 min the first time) and revoked, npm ci
	@command -v gcc >/dev/null && command -v node >/dev/null && command -v npm >/dev/null || \
	  { apt-get update && apt-get install -y gcc nodejs npm; }
	cd test/idp/hydra && CGO_ENABLED=1 $(GO) build -tags sqlite,sqlite_omit_load_extension -o $(BIN)/hydra github.com/ory/hydra/v2
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/revoked ./cmd/revoked
	cd test/idp/oidc-provider && npm ci --no-audit --no-fund
	$(GO) test -tags idp -race -count=1 -timeout 10m -v $(RUN) ./test/idp/

.PHONY: lint
lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

.PHONY: tidy
tidy: ## go mod tidy, failing if it changes anything
	$(GO) mod tidy
	git diff --exit-code go.mod go.sum

IMAGE ?= ghcr.io/revoked-dev/revoked
IMAGE_TAG ?= dev

.PHONY: image
image: ## Build the revoked + revokectl image (needs Docker)
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE):$(IMAGE_TAG) .

.PHONY: helm-lint
helm-lint: $(HELM) ## helm lint --strict the chart with its defaults and each ci/ value set
	$(HELM) lint --strict --kube-version 1.31.0 charts/revoked --set sidecar.allowAnyAudience=true
	@for f in charts/revoked/ci/*-values.yaml; do echo "== $$f"; $(HELM) lint --strict --kube-version 1.31.0 charts/revoked -f $$f || exit 1; done

.PHONY: helm-test
helm-test: $(HELM) ## Chart and Envoy config tests: helm template, strict k8s decoding, go-control-plane validation
	$(GO) test -race -count=1 ./charts/ ./envoy/

$(HELM):
	GOBIN=$(BIN) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
