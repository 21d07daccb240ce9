# STET Ops: one-command set-up and proof.
#   make test    lint + every test suite, Molecule scenarios included (what CI runs)
#   make pilot   pilot topology (1 API + 1 DB host) on local test hosts, built by site.yml
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
# Molecule calls ansible-config from PATH: the venv must come first.
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
PYTHON ?= python3
SCENARIOS ?= $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml api/pyproject.toml
	@flock /tmp/stet-ops-venv.lock bash -c '\
	  [ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV); \
	  $(BIN)/pip install -q --upgrade pip; \
	  $(BIN)/pip install -q -e ".[test]" -e "./api[test]"'
	@touch $@

.PHONY: venv
venv: $(BIN)/.installed ## create .venv with the pinned tool chain

.PHONY: test
test: venv ## lint and run every suite (what CI runs)
	scripts/run-tests

.PHONY: lint
lint: venv ## ansible-lint (production profile), yamllint, ruff
	scripts/run-tests lint

.PHONY: test-api
test-api: venv ## API tests against a real PostgreSQL
	scripts/run-tests api

.PHONY: test-collection
test-collection: venv ## stet.ops sanity, unit and integration tests
	scripts/run-tests collection

.PHONY: molecule
molecule: venv ## molecule test for SCENARIOS (default: all)
	scripts/run-tests molecule $(SCENARIOS)

.PHONY: testhosts
testhosts: venv ## start the Docker engine and build the base image of the test hosts
	scripts/testhosts engine
	scripts/testhosts image

.PHONY: pilot
pilot: testhosts ## bring the pilot topology up on local test hosts with site.yml
	scripts/pilot up

.PHONY: pilot-down
pilot-down: ## remove the pilot test hosts
	scripts/pilot down

.PHONY: bench-api
bench-api: venv ## gunicorn + PostgreSQL locally under the guide's load mix
	scripts/bench-api

.PHONY: clean
clean: ## stop what the tests started and remove the venv
	-scripts/test-postgres stop
	-scripts/testhosts stop-engine
	rm -rf $(VENV)
