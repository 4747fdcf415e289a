# scenelake: `make run` and `make test` do all the set-up they need (idempotently).
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SCENELAKE := $(BIN)/scenelake
CAPTURES ?= 24
REPORT_DIR ?= reports
# Test processes: each runs whole modules (and their shared lakes) with its own Spark and, when needed, Trino
# (tests/conftest.py's scheduler; the longest modules first, in the order it sets).
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

.PHONY: help setup setup-cluster run test test-cluster test-long test-all test-unit test-integration trino-up trino-down trino-status \
        lint clean submit report

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-18s %s\n", $$1, $$2}'

setup: ## Install everything (venv, Delta jars, Trino) once; later runs download nothing
	@$(PYTHON) provision/setup.py

setup-cluster: setup ## Also the local cluster's parts (S3A jars, SeaweedFS built with Go, the Hive metastore, Dagster), once
	@$(PYTHON) provision/setup.py --cluster

run: setup ## Start Trino, generate a landing zone (CAPTURES=24), run the pipeline, print the tables from Trino
	@$(SCENELAKE) trino up
	@$(SCENELAKE) generate --captures $(CAPTURES) --seed 1 --defect-rate 0.02
	@$(SCENELAKE) run pipeline
	@echo; echo "Row counts, queried through Trino:"
	@$(SCENELAKE) tables
	@echo; echo "Quality gate reports (Great Expectations Data Docs): $$($(SCENELAKE) quality docs)"
	@echo; $(SCENELAKE) connect-info
	@echo "Stop Trino with: make trino-down"

test: setup ## The suite every change waits for: unit and integration tests against real Spark, Delta, Trino and GE
	@$(BIN)/pytest $(XDIST) -m "not long and not cluster"

test-cluster: setup-cluster ## The local cluster's tests (S3 store, Hive metastore, Spark master and workers, Trino on S3); CI runs them after make test
	@$(BIN)/pytest -m cluster

test-long: setup ## The long end-to-end scenarios (crash safety, incremental = from scratch), tens of minutes
	@$(BIN)/pytest $(XDIST) -m long

test-all: setup-cluster ## All of the above in one run
	@$(BIN)/pytest $(XDIST)

test-unit: setup ## Only the unit tests
	@$(BIN)/pytest -m unit

test-integration: setup ## Only the integration tests
	@$(BIN)/pytest -m integration

report: run ## Execute notebooks/ against the lake (after make run) into HTML with figures in REPORT_DIR (reports/)
	@$(SCENELAKE) report --out $(REPORT_DIR)

trino-up: setup ## Start the embedded Trino server (no-op when running)
	@$(SCENELAKE) trino up

trino-down: ## Stop the embedded Trino server
	@$(SCENELAKE) trino down

trino-status: ## Is Trino running? (exit 1 when not)
	@$(SCENELAKE) trino status

submit: setup ## Run JOB under spark-submit as a scheduler would: make submit JOB=pipeline
	@test -n "$(JOB)" || { echo "usage: make submit JOB=<job>"; exit 2; }
	@SPARK_HOME=$$($(BIN)/python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))') \
	  PYSPARK_PYTHON=$(abspath $(BIN))/python \
	  $(BIN)/spark-submit $$($(SCENELAKE) submit-args) jobs/$(JOB).py

lint: setup ## ruff and mypy
	@$(BIN)/ruff check .
	@$(BIN)/mypy

clean: trino-down ## Stop Trino and delete the local lake, landing zone and server state
	rm -rf lake landing state
