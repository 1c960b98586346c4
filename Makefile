# groupflow — run `make help` for the targets.
SHELL := /usr/bin/env bash
GO    ?= go
PKGS  ?= ./...
# Fuzz time per target for `make fuzz` (go test -fuzztime syntax).
FUZZTIME ?= 20s
GOLANGCI_LINT_VERSION ?= v2.15.0
BIN := $(CURDIR)/bin

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_\/-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build every binary into ./bin.
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ ./cmd/...

.PHONY: run
run: build ## Run the whole stack on this machine (embedded JetStream, simulator, ingest, worker). Ctrl-C stops it.
	@BIN=$(BIN) ./scripts/run-stack.sh

.PHONY: demo
demo: build ## Walk through groupflow on the stack `make run` started (in another terminal): commands and events, step by step.
	@$(BIN)/groupctl demo

.PHONY: test
test: ## Run every test with the race detector (what CI runs).
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

.PHONY: test/short
test/short: ## Run the tests without the race detector, skipping the slow ones.
	$(GO) test -short -count=1 $(PKGS)

.PHONY: test/race
test/race: test ## Alias of test: the race detector is always on.

.PHONY: lint
lint: ## Run golangci-lint (installed into ./bin on first use).
	@test -x $(BIN)/golangci-lint || GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	$(BIN)/golangci-lint run $(PKGS)

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 20s).
	@./scripts/fuzz.sh $(FUZZTIME)

# The scenarios run the worker and the ingest as processes.
.PHONY: bench/bin
bench/bin:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -o $(BIN)/ ./cmd/worker ./cmd/ingest ./bench/cmd/floorworker

.PHONY: bench
bench: bench/bin ## Measure speed and scale into bench/report.json, report.md and charts (≤ 15 min; see bench/README.md).
	$(GO) run ./bench/cmd/benchreport -size full -bin $(BIN) -out bench

.PHONY: bench/smoke
bench/smoke: bench/bin ## Run every benchmark scenario at seconds scale into a temp dir (CI keeps them from rotting).
	@out=$$(mktemp -d) && $(GO) run ./bench/cmd/benchreport -size smoke -bin $(BIN) -out $$out > $$out/stdout.txt || { cat $$out/stdout.txt; exit 1; }; echo "bench/smoke: $$out/report.json"

.PHONY: bench/go
bench/go: ## Run the packages' go test -bench microbenchmarks.
	$(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 15m $(PKGS)

.PHONY: chaos
chaos: bench/bin ## Kill leaders and workers, inject faults, stop NATS, send hostile input; writes bench/chaos.json, fails on loss.
	$(GO) run ./bench/cmd/chaos -size full -bin $(BIN) -out bench

.PHONY: chaos/smoke
chaos/smoke: bench/bin ## Run every chaos scenario at small size into a temp dir (CI).
	@out=$$(mktemp -d) && $(GO) run ./bench/cmd/chaos -size smoke -bin $(BIN) -out $$out > $$out/stdout.txt || { cat $$out/stdout.txt; exit 1; }; echo "chaos/smoke: $$out/chaos.json"

.PHONY: clean
clean: ## Remove build output and the laptop stack's data.
	rm -rf $(BIN) data
