# Tollgate: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Every module of the workspace, from go.work (never a hand list).
MODULES := $(shell go list -m -f '{{.Dir}}')
PACKAGES := $(addsuffix /...,$(shell go list -m))
GOLANGCI := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.6.2
FUZZTIME ?= 10s

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: build
build: ## build bin/listener, bin/processor, bin/queryapi
	CGO_ENABLED=0 go build -trimpath -o bin/ ./listener ./processor ./queryapi

.PHONY: run
run: build ## run listener, processor and queryapi here (NATS embedded if none answers); Ctrl-C stops
	go build -o bin/run ./e2e/cmd/run
	./bin/run

.PHONY: demo
demo: ## while `make run` is up: send a signed subscription lifecycle, print the entitlement after each step
	go run ./e2e/cmd/demo

.PHONY: test
test: vet ## run every module's tests with the race detector, then the fuzz targets briefly
	go test -race -count=1 -timeout 15m $(PACKAGES)
	go test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./pkg/stripeevent
	go test -run='^$$' -fuzz='^FuzzDerive$$' -fuzztime=$(FUZZTIME) ./pkg/subscription

.PHONY: vet
vet: ## gofmt check and go vet of every module
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet $(PACKAGES)

.PHONY: lint
lint: vet ## golangci-lint v2 over every module (fetched from the module proxy)
	@for m in $(MODULES); do echo "lint $$m"; (cd $$m && go run $(GOLANGCI) run ./...) || exit 1; done

.PHONY: bench
bench: ## run the benchmarks and print their figures
	go test -run='^$$' -bench=. -benchtime=1x -count=1 ./pkg/subscription
	go test -run='^$$' -bench=. -count=1 ./listener ./processor ./queryapi

.PHONY: migrate
migrate: build ## apply migrations to DATABASE_URL
	./bin/processor migrate

.PHONY: clean
clean: ## remove build output and local run data
	rm -rf bin .data
