# Puchi — the front door. `make` (or `make help`) lists the targets.
SHELL        := bash
.SHELLFLAGS  := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
PUCHI     := $(GO) run ./cmd/puchi
BIN       := bin/puchi
MODULES   := . ./gen ./platform ./services ./gateway
COMPOSE   ?= docker compose
TEST_FLAGS ?= -count=1 -timeout 20m
# Packages under test: every module of the workspace.
TEST_PKGS := ./... ./gen/... ./platform/... ./services/... ./gateway/...

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# ---- run -------------------------------------------------------------------
.PHONY: run run-distributed build broker
run: ## start the whole system embedded (in-process Kafka + SQLite under ./data)
	$(PUCHI) run

run-distributed: ## broker, each service and the gateway as separate processes on PostgreSQL (logs: ./data/dist/logs)
	./scripts/run-distributed.sh

build: ## build bin/puchi
	$(GO) build -o $(BIN) ./cmd/puchi

broker: ## run only the embedded Kafka broker on 127.0.0.1:9092
	$(PUCHI) broker

# ---- quality ---------------------------------------------------------------
.PHONY: test test-short vet fmt lint tools
test: tools ## run every test (set PUCHI_TEST_POSTGRES_URL to include PostgreSQL)
	PUCHI_PROMTOOL=$(PROMTOOL) $(GO) test $(TEST_FLAGS) $(TEST_PKGS)

# Pinned tools live in bin/tools (bin/ is gitignored). promtool checks and
# unit-tests deploy/prometheus (internal/deploycheck reads PUCHI_PROMTOOL).
PROMTOOL_VERSION := v0.316.0
PROMTOOL         := $(CURDIR)/bin/tools/promtool

tools: ## install the pinned tools into bin/tools (promtool) unless already there
	@if ! $(GO) version -m $(PROMTOOL) 2>/dev/null | grep -E 'mod[[:space:]]+github.com/prometheus/prometheus[[:space:]]+$(PROMTOOL_VERSION)([[:space:]]|$$)' >/dev/null; then \
		echo "installing promtool $(PROMTOOL_VERSION) into bin/tools"; \
		GOBIN=$(CURDIR)/bin/tools $(GO) install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION); \
	fi

test-short: ## unit tests only (no broker, no end-to-end)
	$(GO) test -short -count=1 $(TEST_PKGS)

vet: ## go vet every module
	$(GO) vet $(TEST_PKGS)

fmt: ## gofmt the tree (gen/ excluded)
	gofmt -w $$(git ls-files '*.go' | grep -v '^gen/')

lint: vet ## go vet + buf lint + gofmt check
	./scripts/proto.sh lint
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# ---- protobuf --------------------------------------------------------------
.PHONY: proto proto-check breaking
proto: ## regenerate gen/ (Go, OpenAPI, descriptor set) from proto/
	./scripts/proto.sh gen

proto-check: ## regenerate and fail on any diff in gen/
	./scripts/proto.sh check

breaking: ## buf breaking against the main branch
	./scripts/proto.sh breaking

# ---- Kafka and services against a running broker ---------------------------
.PHONY: kafka-topics dev-gateway dev-core dev-feature dev-support dev-analytics
kafka-topics: ## create/verify the topics on KAFKA_BROKERS (default 127.0.0.1:9092)
	$(PUCHI) topics ensure

dev-gateway: ## run the REST gateway against running services
	$(PUCHI) gateway

dev-core: ## run the core services (user, lesson, progress)
	$(call serve_group,core,$(CORE_SERVICES))

dev-feature: ## run the feature services (vocabulary, quiz, media)
	$(call serve_group,feature,$(FEATURE_SERVICES))

dev-support: ## run the support services (notification, analytics)
	$(call serve_group,support,$(SUPPORT_SERVICES))

dev-analytics: ## run the analytics service alone
	$(call serve_group,analytics,$(ANALYTICS_SERVICES))

# serve_group runs `puchi serve` for the services of a group (override a group's
# list, e.g. `make dev-core CORE_SERVICES=user`).
serve_group = $(if $(strip $(2)),$(PUCHI) serve $(2),@echo "no $(1) services selected")

CORE_SERVICES      ?= user lesson progress
FEATURE_SERVICES   ?= vocabulary quiz media
SUPPORT_SERVICES   ?= notification analytics
ANALYTICS_SERVICES ?= analytics

# ---- docker compose (distributed engine; needs a Docker engine) --------------
.PHONY: up down seed kafka-up kafka-down logs compose-check
up: ## docker compose: everything (Kafka, Kafka UI, PostgreSQL, services, gateway)
	$(COMPOSE) up -d --build

down: ## docker compose: stop everything
	$(COMPOSE) down

seed: ## docker compose: load the demo course into the running stack (one-shot content-init)
	$(COMPOSE) run --rm content-init

kafka-up: ## docker compose: only Kafka (KRaft) and Kafka UI on :8080
	$(COMPOSE) up -d kafka kafka-init kafka-ui

kafka-down: ## docker compose: stop Kafka and Kafka UI
	$(COMPOSE) stop kafka kafka-ui

logs: ## docker compose: follow the logs
	$(COMPOSE) logs -f --tail=100

# ---- benchmarks (numbers, never gates) -----------------------------------------
.PHONY: bench
bench: ## run the benchmark suite (~10 min; prints a markdown table, see docs/performance.md)
	$(GO) build -o $(BIN) ./cmd/puchi
	$(GO) build -o bin/puchi-bench ./bench/cmd/bench
	bin/puchi-bench -puchi $(BIN) $(BENCH_FLAGS)

.PHONY: clean
clean: ## remove bin/ and ./data (users, events, keys!)
	rm -rf bin data
