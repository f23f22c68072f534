# Herald: `make run` and `make test` work on a fresh clone; `make check` is the fast
# loop (types, lint, format, unit tests; no services). Targets skip work already done
# (stamps), and a missing tool prints what to install.
SHELL := /bin/bash
.DEFAULT_GOAL := help

SRC := $(shell find src -name '*.ts' -o -name '*.lua')
TESTS := $(shell find test -name '*.ts')
BENCH := $(shell find bench -name '*.ts')
CLIENT_SRC := $(shell find client/src -name '*.ts')
TSC := node_modules/.bin/tsc
TAP := node_modules/.bin/tap
BIOME := node_modules/.bin/biome

# Node 20 runs Herald: the pinned uWebSockets.js build has native binaries for Node 16,
# 18 and 20 only (ABI 93, 108, 115), and Herald refuses its pure-JS fallback. When the
# default `node` is another version (22 and 24, the current LTS lines, or none), the
# targets use a project-local Node 20 from the npm registry's `node` package in .node20/
# and say so. Every recipe finds it first on PATH, and so does what they spawn.
NODE_MAJOR := $(shell node -p 'process.versions.node.split(".")[0]' 2>/dev/null)
LOCAL_NODE := .node20/node_modules/node/bin/node
ifeq ($(NODE_MAJOR),20)
NODE_STAMP :=
else
NODE_STAMP := .node20/.stamp
export PATH := $(CURDIR)/$(dir $(LOCAL_NODE)):$(PATH)
endif

.PHONY: help install node which-node redis chromium build build-bench check lint format run test soak screenshot bench bench-results coverage clean

help:
	@echo "make run    install, build, start the gateway in dev mode (embedded, no Redis; set HERALD_REDIS_URL for Redis mode)"
	@echo "make test   install (npm packages, redis-server), build, run every test"
	@echo "make check  the fast loop, under a minute, no Redis or browser: type-check, lint, format check, unit tests"
	@echo "make format rewrite the sources in the project's format (Biome)"
	@echo "make soak   the connect/disconnect leak soak alone, 600 s (SOAK_S=seconds; make test runs it for 60 s)"
	@echo "make screenshot  retake docs/demo.png with the browser test"
	@echo "make bench  the load-test harness, quick profile (see bench/README.md)"
	@echo "make bench-results  every run bench/RESULTS.md shows, then RESULTS.md from their records (about 20 min; commit first)"
	@echo "make build  compile src/ to dist/ and the client SDK (client/) to client/dist/"
	@echo "make coverage  the tests with a coverage report (not enforced)"
	@echo "make clean  remove build output"

# npm's `node` package installs the platform's official binary as a dependency.
.node20/.stamp:
	@command -v npm >/dev/null || { echo "Node.js 20 is required: install it (https://nodejs.org or your package manager)"; exit 1; }
	@echo "node $(if $(NODE_MAJOR),v$(NODE_MAJOR),not found): Herald needs Node 20 (see README, Node versions); installing a project-local Node 20 in .node20/"
	npm install --prefix .node20 --no-save --no-audit --no-fund --loglevel=error node@20
	@$(LOCAL_NODE) -v >/dev/null
	@touch $@

node: $(NODE_STAMP)
	@echo "using node $$(node -v) ($$(command -v node))"

# The Node 20 every target uses (npm scripts run Herald with it).
which-node: $(NODE_STAMP)
	@command -v node

node_modules/.install-stamp: package.json package-lock.json $(NODE_STAMP)
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: node_modules/.install-stamp

# The tests start their own redis-server processes on free ports.
redis:
	@if ! command -v redis-server >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing redis-server (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "redis-server is required for the tests: sudo apt-get install redis-server (Debian/Ubuntu) or brew install redis (macOS)"; exit 1; \
	  fi; \
	fi

# The browser test drives Debian's Chromium (no browser download is needed or possible).
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium (apt-get; a few minutes)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "Chromium is required for the browser test: sudo apt-get install chromium (Debian/Ubuntu), or set CHROMIUM=/path/to/chrome"; exit 1; \
	  fi; \
	fi

dist/.build-stamp: node_modules/.install-stamp client/dist/.build-stamp tsconfig.json $(SRC)
	$(TSC) -p tsconfig.json
	@cp src/library.lua src/presence.lua dist/
	@chmod +x dist/main.js dist/cli.js
	@touch $@

# The SDK, with the root's typescript (client/package.json pins the same version).
client/dist/.build-stamp: node_modules/.install-stamp client/tsconfig.json $(CLIENT_SRC)
	$(TSC) -p client/tsconfig.json
	@touch $@

dist-test/.build-stamp: dist/.build-stamp client/dist/.build-stamp tsconfig.test.json $(TESTS)
	$(TSC) -p tsconfig.test.json
	@touch $@

dist-bench/.build-stamp: dist/.build-stamp client/dist/.build-stamp tsconfig.bench.json $(BENCH)
	$(TSC) -p tsconfig.bench.json
	@touch $@

build: dist/.build-stamp client/dist/.build-stamp

build-bench: dist-bench/.build-stamp

run: build
	node dist/main.js --dev

# Building is type-checking (tsc on each of the four projects: gateway, SDK, tests, bench).
# Biome lints and checks the format in one pass (docs/DEVELOPMENT.md, Why Biome).
check: install dist-test/.build-stamp dist-bench/.build-stamp
	$(BIOME) check --error-on-warnings
	$(TAP) dist-test/unit/*.test.js

lint: install
	$(BIOME) lint

format: install
	$(BIOME) check --write

# The load-heavy tests (hundreds to thousands of sockets, several processes, or CPU
# measured) run one at a time after the rest: on two cores, two of them side by side
# starve each other's timing. .ci/run adds up both summaries.
HEAVY_TESTS = $(addprefix dist-test/integration/,chaos.test.js soak.test.js outage.test.js backpressure.test.js bench.test.js interest-churn.test.js presence-churn.test.js fuzz-publish.test.js)
test: install redis chromium dist-test/.build-stamp dist-bench/.build-stamp
	HERALD_CHROMIUM=$(CHROMIUM) $(TAP) $(filter-out $(HEAVY_TESTS),$(wildcard dist-test/unit/*.test.js dist-test/integration/*.test.js))
	@echo "tap: the load-heavy tests, one at a time"
	HERALD_CHROMIUM=$(CHROMIUM) $(TAP) --jobs=1 $(HEAVY_TESTS)

# Retakes docs/demo.png (the README screenshot) with the browser test.
screenshot: install redis chromium dist-test/.build-stamp
	HERALD_CHROMIUM=$(CHROMIUM) HERALD_SCREENSHOT=docs/demo.png $(TAP) dist-test/integration/browser.test.js

# The leak soak (test/integration/soak.test.ts) alone and longer than in `make test`
# (60 s there), with the tap reporter so that its figures are printed. The churn rate
# is 400 connects/s; HERALD_SOAK_RATE=500 make soak to change it.
SOAK_S ?= 600
soak: install redis dist-test/.build-stamp
	HERALD_SOAK_S=$(SOAK_S) $(TAP) --reporter=tap dist-test/integration/soak.test.js

# The quick profile (about two minutes); `npm run bench -- --profile full` for 50,000 connections.
bench: install redis dist-bench/.build-stamp
	node dist-bench/run.js --profile quick

# Every run RESULTS.md shows (bench/runs.ts), in order, each writing its record to
# bench/data/, then RESULTS.md from those records. Refuses uncommitted code.
bench-results: install redis dist-bench/.build-stamp
	node dist-bench/results.js

coverage: install redis chromium dist-test/.build-stamp dist-bench/.build-stamp
	HERALD_CHROMIUM=$(CHROMIUM) $(TAP) --disable-coverage=false --allow-incomplete-coverage --coverage-report=text dist-test/unit dist-test/integration

clean:
	rm -rf dist dist-test dist-bench client/dist .tap .node20
