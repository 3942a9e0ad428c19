# apibench — the front door. `make bench` measures, `make test` checks everything.
# Every target works on a fresh machine: PostgreSQL is provisioned by the project itself
# (DATABASE_URL if set, else testcontainers when Docker answers, else a throwaway local cluster).

CARGO    ?= cargo
SCENARIO ?= scenarios/quick.toml
# --workspace everywhere below: building one package alone unifies features differently and
# would recompile much of the dependency graph.
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
RELEASE  := $(TARGET_DIR)/release

.PHONY: demo-distributed help bench calibrate bench-check bench-ci test test-rust test-node test-parity lint fmt api build-release node-deps microbench clean-reports

help: ## this list
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

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

test: test-k8s test-rust test-node test-parity test-schema ## every test: Kubernetes manifests, Rust unit/integration tests, the Node baseline, HTTP parity, the OpenAPI document (schemathesis), benches once

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

.PHONY: test-schema
# schemathesis (PyPI, installed by py-tools) generates requests from docs/openapi.json — the
# contract's OpenAPI document, which api/tests/openapi.rs keeps equal to what the Rust types
# generate — and checks each server's answers: no 5xx, only documented statuses and content
# types, bodies that fit the schemas. Both servers run on one throwaway PostgreSQL; see
# scripts/test-schema.sh. 100 test cases per operation and phase take ~35 s for both on 2 cores.
PY_TOOLS += schemathesis==4.32.5
SCHEMA_MAX_EXAMPLES ?= 100
test-schema: node-deps ## schemathesis against both servers with the OpenAPI document (docs/openapi.json)
	$(CARGO) build -q --workspace --bins
	@[ -x $(APIBENCH_VENV)/bin/schemathesis ] || $(MAKE) -s py-tools
	BIN_DIR=$(abspath $(TARGET_DIR))/debug SCHEMATHESIS=$(APIBENCH_VENV)/bin/schemathesis \
	  SCHEMA_MAX_EXAMPLES=$(SCHEMA_MAX_EXAMPLES) $(abspath $(TARGET_DIR))/debug/with-postgres scripts/test-schema.sh

.PHONY: py-tools test-k8s

# The tests' PyPI tools live in one virtualenv outside the clone: Debian's python3 refuses
# system-wide pip installs, and a venv kept in the cache makes later runs instant. `py-tools`
# creates or completes it and is safe to run again (.ci/run calls it). A new tool: append it,
# pinned, to PY_TOOLS.
APIBENCH_VENV ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/apibench/venv
PY_TOOLS += kubernetes-validate==1.37.0
py-tools: ## install the tests' PyPI tools (PY_TOOLS) into APIBENCH_VENV (~/.cache/apibench/venv)
	@[ -x $(APIBENCH_VENV)/bin/python ] || python3 -m venv $(APIBENCH_VENV)
	@$(APIBENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(PY_TOOLS)

# No cluster needed: kubernetes-validate bundles the schemas. --strict rejects fields a schema
# does not know (a misspelt key), as `kubectl apply` would. 1.30 is the oldest Kubernetes the
# manifests claim, 1.37 the newest the pinned kubernetes-validate bundles.
K8S_VERSIONS ?= 1.30.0 1.37.0
K8S_DIR ?= deploy/k8s
K8S_MANIFESTS = $(shell find $(K8S_DIR) -name '*.yaml' -o -name '*.yml' | sort)
test-k8s: ## validate every manifest under deploy/k8s/ against the Kubernetes schemas (strict, offline)
	@[ -n "$(K8S_MANIFESTS)" ] || { echo "test-k8s: no manifests under $(K8S_DIR)" >&2; exit 1; }
	@[ -x $(APIBENCH_VENV)/bin/kubernetes-validate ] || $(MAKE) -s py-tools
	@for version in $(K8S_VERSIONS); do \
	  $(APIBENCH_VENV)/bin/kubernetes-validate --strict --kubernetes-version $$version $(K8S_MANIFESTS) || exit 1; \
	done

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

# cargo-fuzz over the harness's own inputs (nightly; `cargo install cargo-fuzz`). fuzz/ is its own
# workspace with its own target dir, so the sanitizer build never waits on or disturbs target/.
# The committed seeds are fuzz/corpus/<target>/; what the fuzzer adds goes to the git-ignored
# fuzz/corpus-grown/<target>/. Crashes land in fuzz/artifacts/<target>/: fix the parser, then copy
# the input to fuzz/regressions/<target>/, which `make test` replays on stable with the seeds
# (loadgen/tests/fuzz_corpus.rs). A malloc above FUZZ_MALLOC_MB or an input slower than 10 s counts
# as a crash: no input file of these sizes needs either.
FUZZ_CARGO     ?= cargo +nightly
FUZZ_SECONDS   ?= 60
FUZZ_MALLOC_MB ?= 256
FUZZ_TARGETS   ?= scenario template budgets hlog
.PHONY: fuzz
fuzz: ## each fuzz target for $(FUZZ_SECONDS) s, one after another (nightly + cargo-fuzz); prints executions per target
	@command -v cargo-fuzz >/dev/null || { echo "make fuzz: cargo-fuzz is missing: cargo install cargo-fuzz (it runs on the nightly toolchain: rustup toolchain install nightly)" >&2; exit 2; }
	@mkdir -p fuzz/target; rm -f fuzz/target/fuzz-summary.txt
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus-grown/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s (log: fuzz/target/fuzz-$$t.log)" >&2; \
	  $(FUZZ_CARGO) fuzz run --fuzz-dir fuzz --target-dir fuzz/target $$t \
	    fuzz/corpus-grown/$$t fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	    -malloc_limit_mb=$(FUZZ_MALLOC_MB) -print_final_stats=1 > fuzz/target/fuzz-$$t.log 2>&1 \
	    || { tail -n 40 fuzz/target/fuzz-$$t.log; echo "fuzz: $$t FAILED; input in fuzz/artifacts/$$t/" >&2; exit 1; }; \
	  awk -v t=$$t '/^stat::number_of_executed_units/ {n=$$2} /^stat::average_exec_per_sec/ {r=$$2} \
	    END {printf "  %-10s %12d executions  %8d exec/s\n", t, n, r}' fuzz/target/fuzz-$$t.log \
	    >> fuzz/target/fuzz-summary.txt; \
	done
	@cat fuzz/target/fuzz-summary.txt

demo-distributed: build-release ## one load from 2 shards as separate hosts (network namespaces, root), merged into one report (~40 s)
	SHARDS=$(or $(SHARDS),2) RELEASE=$(RELEASE) scripts/demo-distributed.sh

.PHONY: live-screenshot
live-screenshot: ## docs/live.png: the live page of `run --serve` in headless Chromium, mid-run (~30 s; loadgen/tests/live.rs)
	APIBENCH_LIVE_SCREENSHOT=$(abspath docs/live.png) $(CARGO) test --workspace --test live -- live_metrics_and_page --nocapture

clean-reports: ## delete generated reports (keeps reports/README.md)
	find reports -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
