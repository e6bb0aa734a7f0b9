# Tollgate: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Every module of the workspace, from go.work (never a hand list).
MODULES := $(shell go list -m -f '{{.Dir}}')
PACKAGES := $(addsuffix /...,$(shell go list -m))
GOLANGCI := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.6.2
# An execution count, not a duration: go1.26's fuzz coordinator can fail a target with
# "context deadline exceeded" when a -fuzztime duration ends mid-call (go.dev/issue/75804).
FUZZTIME ?= 100000x
FUZZMINIMIZETIME ?= 2000x

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: build
build: ## build bin/listener, bin/processor, bin/queryapi
	CGO_ENABLED=0 go build -trimpath -o bin/ ./listener ./processor ./queryapi

.PHONY: run
run: build ## run listener, processor and queryapi here (your variables unchanged; this checkout's own NATS and database unless set); Ctrl-C stops
	go build -o bin/run ./e2e/cmd/run
	./bin/run

.PHONY: demo
demo: ## while `make run` is up: send a signed subscription lifecycle, print the entitlement after each step
	go run ./e2e/cmd/demo

.PHONY: test
test: lint rules ## gofmt, vet, golangci-lint and the alert rules, then every module's tests with the race detector, then the fuzz targets briefly
	go test -race -count=1 -timeout 15m $(PACKAGES)
	go test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZETIME) ./pkg/stripeevent
	go test -run='^$$' -fuzz='^FuzzDerive$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=$(FUZZMINIMIZETIME) ./pkg/subscription

.PHONY: rules
rules: ## promtool: check the Prometheus alert rules (deploy/prometheus) and run their unit tests
	promtool check rules deploy/prometheus/tollgate.rules.yml
	cd deploy/prometheus && promtool test rules tollgate.rules.test.yml

.PHONY: vet
vet: ## gofmt check, go vet of every module, every markdown link resolves
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet $(PACKAGES)
	bash .ci/linkcheck

.PHONY: lint
lint: vet ## golangci-lint v2 (.golangci.yml) over every module, fetched from the module proxy
	@for m in $(MODULES); do echo "lint $$m"; (cd $$m && go run $(GOLANGCI) run --allow-parallel-runners ./...) || exit 1; done

.PHONY: bench
bench: bench-micro bench-e2e ## every benchmark: the packages' figures, then the end-to-end table

.PHONY: bench-e2e
bench-e2e: build bin/nats-server ## end-to-end benchmark of the real services: prints the table, writes bench/results.md
	go run ./e2e/cmd/bench

.PHONY: bench-micro
bench-micro: ## the packages' Go benchmarks (in-process handlers, derivation)
	go test -run='^$$' -bench=. -benchtime=0.2s -count=1 ./pkg/subscription ./pkg/stripeevent
	go test -run='^$$' -bench=. -count=1 ./listener ./processor ./queryapi

SOAK_DURATION ?= 3m
.PHONY: soak
soak: build bin/nats-server ## steady load with duplicates and reordering for SOAK_DURATION (3m): memory, goroutines, errors
	go run ./e2e/cmd/soak -duration $(SOAK_DURATION)

# The current nats-server, built from the module cache (the e2e module requires it), run as a
# process of its own by the benchmark and the soak.
bin/nats-server: e2e/go.mod
	cd e2e && CGO_ENABLED=0 go build -trimpath -o ../bin/nats-server github.com/nats-io/nats-server/v2

.PHONY: up
up: ## docker compose up: Postgres, NATS and the three services from the one Dockerfile (SERVICE build argument)
	docker compose up -d --build

.PHONY: down
down: ## docker compose down (volumes kept)
	docker compose down

.PHONY: migrate
migrate: build ## apply migrations to DATABASE_URL
	./bin/processor migrate

.PHONY: clean
clean: ## remove build output and local run data
	rm -rf bin .data
