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

.PHONY: bench
bench: ## Run the benchmarks (see bench/README.md).
	$(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 15m $(PKGS) | tee bench/latest.txt

.PHONY: clean
clean: ## Remove build output and the laptop stack's data.
	rm -rf $(BIN) data
