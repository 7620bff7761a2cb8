# chief: the two set-up commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

KINESIS_PORT ?= 4568
MOTO_PORT ?= 5000
MARIADB_PORT ?= 3307
ES_PORT ?= 9200
CARGO ?= cargo

# The binaries and tests read config/local.toml; these keep them on the ports the stack uses.
export CHIEF__AWS__KINESIS__ENDPOINT ?= http://127.0.0.1:$(KINESIS_PORT)
export CHIEF__AWS__DYNAMODB__ENDPOINT ?= http://127.0.0.1:$(MOTO_PORT)
export CHIEF__AWS__S3__ENDPOINT ?= http://127.0.0.1:$(MOTO_PORT)
export CHIEF__AWS__SQS__ENDPOINT ?= http://127.0.0.1:$(MOTO_PORT)
export CHIEF__AWS__CLOUDWATCH__ENDPOINT ?= http://127.0.0.1:$(MOTO_PORT)
export CHIEF__AWS__STS__ENDPOINT ?= http://127.0.0.1:$(MOTO_PORT)
export CHIEF__AWS__FIREHOSE__ENDPOINT ?= http://127.0.0.1:$(MOTO_PORT)
export CHIEF__AWS__SES__ENDPOINT ?= http://127.0.0.1:$(MOTO_PORT)
export CHIEF__AWS__SNS__ENDPOINT ?= http://127.0.0.1:$(MOTO_PORT)
export CHIEF__DATABASE__URL ?= mysql://root@127.0.0.1:$(MARIADB_PORT)/chief
export CHIEF__ELASTICSEARCH__URL ?= http://127.0.0.1:$(ES_PORT)
export KINESIS_PORT MOTO_PORT MARIADB_PORT ES_PORT
# Never ask the EC2 metadata service for anything on the local stack.
export AWS_EC2_METADATA_DISABLED := true

BIN := target/debug
LOCAL_CONFIG := config/local.toml

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: stack-up
stack-up: ## Install (first time) and start Kinesis, DynamoDB+S3, MariaDB and the Elasticsearch stand-in on 127.0.0.1
	@$(CARGO) build --quiet -p chief-es-standin --bin chief-es-standin
	@bash deploy/local/stack-up.sh

.PHONY: stack-down
stack-down: ## Stop the local stack (only what stack-up started)
	@bash deploy/local/stack-down.sh

.PHONY: build
build: ## Build every binary (debug)
	$(CARGO) build --workspace --bins

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: lint
lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: test
# The test build keeps no incremental caches: they are a third of its size on disk (a
# full build of the binaries and test binaries is about 7 GiB with them, 5 without).
# What the disk has left is printed first, so a build that runs out of it says so.
test: export CARGO_INCREMENTAL ?= 0
test: stack-up lint ## The whole test suite against the local stack (what CI runs)
	@df -h . | awk 'NR == 2 { print "disk: " $$4 " free of " $$2 " on " $$6 }'
	@# The end-to-end and deploy checks run the built binaries; the schema is applied once
	@# here so that parallel tests never race on a migration.
	$(CARGO) build --workspace --bins
	$(BIN)/chief-loader migrate --config config/loader.toml --config $(LOCAL_CONFIG)
	@if command -v cargo-nextest >/dev/null; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi
	$(CARGO) test --workspace --doc

.PHONY: bench
bench: stack-up ## The whole pipeline at a steady rate for 60 s on the local stack (release build)
	$(CARGO) build --release --workspace --bins
	@bash deploy/local/bench.sh

.PHONY: bench-capacity
bench-capacity: stack-up ## Raise the rate until the pipeline falls behind: the highest sustained rate and what limited it
	$(CARGO) build --release --workspace --bins
	@BENCH_MODE=capacity bash deploy/local/bench.sh

.PHONY: bench-enrich
bench-enrich: stack-up ## Seed 004 at 1,000 items/s for 60 s (release build; DynamoDB on dynoxide, installed on first use): rows checked, latency p50/p99/max
	$(CARGO) build --release -p chiefctl -p chief-datagen -p chief-analytics -p chief-dynamodb-sink --bins
	@bash deploy/local/bench-enrich.sh

.PHONY: demo
demo: stack-up build ## Run the pipeline end to end on the local stack
	@bash deploy/local/demo.sh

.PHONY: demo-logs
demo-logs: stack-up build ## Seed 001: apache logs → chief-agent → Kinesis → chief-firehose (S3 raw) + chief-analytics (status per window → Elasticsearch), checked
	@bash deploy/local/demo-logs.sh

.PHONY: demo-alerts
demo-alerts: stack-up build ## Seed 003: hosts upload logs to S3 → chief-s3-ingest → Kinesis → chief-analytics → reports + SES emails, checked
	@bash deploy/local/demo-alerts.sh

.PHONY: demo-enrich
demo-enrich: stack-up build ## Seed 004: orders and items replayed from S3 → chief-join (⋈ products) → chief-dynamodb-sink → DynamoDB, checked, with latency
	@bash deploy/local/demo-enrich.sh

.PHONY: demo-taxi
demo-taxi: stack-up build ## Seed 002: taxi CSV files → chief-agent → Kinesis → chief-firehose → S3, checked row by row
	@bash deploy/local/demo-taxi.sh
