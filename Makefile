# apibench — the front door. `make bench` measures, `make test` checks everything.
# Every target works on a fresh machine: PostgreSQL is provisioned by the project itself
# (DATABASE_URL if set, else testcontainers when Docker answers, else a throwaway local cluster).

CARGO    ?= cargo
SCENARIO ?= scenarios/quick.toml
# --workspace everywhere below: building one package alone unifies features differently and
# would recompile much of the dependency graph.
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
RELEASE  := $(TARGET_DIR)/release

.PHONY: help bench calibrate bench-check bench-ci test test-rust test-node test-parity lint fmt api build-release node-deps microbench clean-reports

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

build-release: ## release build of the API and the apibench CLI (fat LTO: a few minutes the first time)
	$(CARGO) build --release -p api -p loadgen

node-deps: ## install the Node.js baseline's packages (npm ci)
	@if [ -f baselines/node/package-lock.json ] && [ ! -d baselines/node/node_modules ]; then \
	  cd baselines/node && npm ci --no-audit --no-fund --loglevel=error; fi

bench: build-release ## run $(SCENARIO) (default: the migration techniques against each other) and write a report
	@# The first run on a machine measures the generator's own ceiling (~20 s) so `run` can warn
	@# when a scenario's rate comes near it; later runs reuse ~/.cache/apibench/calibration.json.
	$(RELEASE)/apibench calibrate --quick --if-missing
	$(RELEASE)/apibench run $(SCENARIO)

calibrate: build-release ## measure the generator's ceiling per core (~40 s); `run` warns above 70 % of it
	$(RELEASE)/apibench calibrate

CI_RUN ?= reports/ci-smoke
# 3 repetitions: with one, the A/A study in the README called a regression in 2 of 10 same-commit
# pairs (noise between runs that no within-run interval can see); the gate then resamples repetitions.
CI_REPEAT ?= 3
bench-ci: build-release ## CI: run scenarios/smoke.toml ($(CI_REPEAT) repetitions) into $(CI_RUN), then gate it with scenarios/budgets.toml (exit 0/1/2)
	rm -rf $(CI_RUN)
	$(RELEASE)/apibench run scenarios/smoke.toml --out $(CI_RUN) --quiet --repeat $(CI_REPEAT)
	$(RELEASE)/apibench gate $(CI_RUN) --budgets scenarios/budgets.toml --junit $(CI_RUN)/gate-junit.xml

test: test-rust test-node test-parity ## every test: Rust unit/integration tests, the Node baseline, HTTP parity, benches once

# --all-targets includes benches/: cargo runs each criterion bench once in its test mode (the
# same check as `cargo bench --workspace -- --test`, on the debug build instead of a second,
# optimized build of the whole workspace — that alone is ~10 minutes on 2 cores).
test-rust:
	$(CARGO) test --workspace --all-targets

bench-check: ## `cargo bench --workspace -- --test`: every criterion bench once, optimized build
	$(CARGO) bench --workspace -- --test

test-node: node-deps ## the Node.js baseline's own tests, with a throwaway PostgreSQL (or DATABASE_URL)
	$(CARGO) build -q --workspace --bins
	cd baselines/node && $(abspath $(TARGET_DIR))/debug/with-postgres npm test

test-parity: node-deps ## the HTTP contract suite (api/tests/contract.rs) against the Node.js baseline
	CONTRACT_TARGET=node $(CARGO) test --workspace --test contract

lint: ## rustfmt check + clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

api: ## run the reference API on 127.0.0.1:8080 (provisions its own PostgreSQL unless DATABASE_URL is set)
	$(CARGO) run --release -p api --

microbench: ## criterion microbenchmarks of the hot paths (a few minutes); HTML report under target/criterion
	$(CARGO) bench -p apibench-benches
	@echo "criterion report: target/criterion/report/index.html"

clean-reports: ## delete generated reports (keeps reports/README.md)
	find reports -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
