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
# Molecule scenarios `make test` runs, all at once (STET_MOLECULE_JOBS, default 3), longest
# first; all but the first yield the cores to it (STET_LANE_NICENESS, default 10).
# `make molecule SCENARIOS="..."` runs a choice.
SCENARIOS ?= production pilot data
export STET_SCENARIOS := $(SCENARIOS)

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

# Debian packages the tests run for real on this machine: PostgreSQL and PgBouncer for
# the API and module tests, wrk for the benchmarks, the engine, image builder and
# package cache for the test hosts.
HOST_PACKAGES := postgresql-15 pgbouncer wrk docker.io debootstrap apt-cacher-ng shellcheck
.PHONY: host-packages
host-packages: ## install the Debian packages the tests use (root)
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# promtool and amtool, which check the alert rules and the Prometheus and Alertmanager
# configurations, taken out of Debian's packages into the venv: installing the packages
# would start Prometheus and Alertmanager on this machine.
PROMETHEUS_TOOL_PACKAGES := prometheus prometheus-alertmanager
$(BIN)/.prometheus-tools: $(BIN)/.installed
	@work=$$(mktemp -d); trap 'rm -rf "$$work"' EXIT; chmod 0755 "$$work"; cd "$$work"; \
	apt-get download -qq $(PROMETHEUS_TOOL_PACKAGES) 2>/dev/null \
	  || { apt-get update -qq && apt-get download -qq $(PROMETHEUS_TOOL_PACKAGES); }; \
	for deb in *.deb; do dpkg-deb -x "$$deb" tree; done; \
	install -m 0755 tree/usr/bin/promtool tree/usr/bin/amtool $(BIN)/
	@touch $@

.PHONY: test
test: venv host-packages $(BIN)/.prometheus-tools ## lint and run every suite (what CI runs)
	scripts/run-tests

# The API's runtime dependencies pinned with the sha256 of every file each version publishes
# (pip-tools: its output is a plain requirements file that pip on the controller and on the
# hosts reads with --require-hashes; no other tool on the hosts). Re-run after editing
# api/pyproject.toml's dependencies, and to take dependency updates; commit the result.
.PHONY: api-lock
api-lock: venv ## regenerate api/requirements.lock (pinned, hashed dependencies of the API release)
	$(BIN)/pip install -q pip-tools
	cd api && $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
	  --no-emit-index-url --no-emit-find-links --output-file requirements.lock pyproject.toml

.PHONY: patroni-lock
patroni-lock: venv ## regenerate roles/patroni/files/requirements.lock (Patroni from PyPI, pinned and hashed)
	$(BIN)/pip install -q pip-tools
	cd roles/patroni/files && $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --unsafe-package ydiff \
	  --no-emit-index-url --no-emit-find-links --output-file requirements.lock requirements.in

.PHONY: lint
lint: venv ## ansible-lint (production profile), yamllint, ruff
	scripts/run-tests lint

.PHONY: role-docs
role-docs: venv ## rewrite the variable tables in roles/*/README.md from meta/argument_specs.yml
	$(BIN)/python scripts/role-docs

.PHONY: test-api
test-api: venv host-packages ## API tests against a real PostgreSQL
	scripts/run-tests api

.PHONY: test-collection
test-collection: venv host-packages ## stet.ops sanity, unit and integration tests
	scripts/run-tests collection

.PHONY: test-roles
test-roles: venv host-packages $(BIN)/.prometheus-tools ## every role's OS branches rendered, alert rules unit-tested by promtool (no host)
	scripts/run-tests roles

.PHONY: molecule
molecule: venv host-packages ## molecule test for SCENARIOS
	scripts/run-tests molecule $(SCENARIOS)

.PHONY: testhosts
testhosts: venv host-packages ## start the Docker engine and build the base image of the test hosts
	scripts/testhosts engine
	scripts/testhosts image

.PHONY: pilot
pilot: testhosts ## bring the pilot topology up on local test hosts with site.yml
	scripts/pilot up

.PHONY: pilot-down
pilot-down: ## remove the pilot test hosts
	scripts/pilot down

# pytest molecule/production/drills: one test per drill, the figures as a table at the end.
# DRILLS="1,3" runs some of them (pytest -k "drill_1 or drill_3"); the rebuild (7) is
# destructive and always goes last.
.PHONY: drills
drills: testhosts ## failure drills under load on the production topology (brings it up if needed)
	$(BIN)/pytest -p no:cacheprovider molecule/production/drills \
	  $(if $(DRILLS),-k "$$(echo '$(DRILLS)' | sed -E 's/[0-9]+/drill_&/g; s/[ ,]+/ or /g')")

.PHONY: bench-api
bench-api: venv host-packages ## the API server + PostgreSQL locally under the guide's load mix
	scripts/bench-api

$(BIN)/.bench-installed: $(BIN)/.installed pyproject.toml
	@flock /tmp/stet-ops-venv.lock $(BIN)/pip install -q -e ".[bench]"
	@touch $@

.PHONY: bench
bench: testhosts $(BIN)/.bench-installed ## pilot from bare hosts (site.yml timed), then the load mix through nginx+TLS
	scripts/bench-pilot

.PHONY: clean
clean: ## stop what the tests started and remove the venv
	-scripts/test-postgres stop
	-scripts/testhosts stop-engine
	rm -rf $(VENV)
