#!/usr/bin/env bash
# `make test-schema`: schemathesis checks both servers against the OpenAPI document of the
# contract (docs/openapi.json, served by each at GET /openapi.json) — no 5xx, only documented
# statuses and content types, bodies that fit the response schemas.
#
# Runs under target/debug/with-postgres (DATABASE_URL set): starts the Rust API (which migrates
# the database) and then the Node.js baseline on it, each on a free loopback port, waits for
# /healthz, runs schemathesis against one and then the other, and stops both servers whatever
# happens (failure, Ctrl-C, SIGTERM). Needs no stdin; the servers' logs are shown on failure.
#
# Environment: BIN_DIR (the debug binaries, default target/debug), SCHEMATHESIS (the CLI),
# SCHEMA_MAX_EXAMPLES (test cases per operation and phase, default 100), SCHEMA_SEED (default
# fixed, so a failure reproduces; set it empty for a random one), SCHEMA_TARGETS (which servers
# to check, default "rust node"; both are started either way), SCHEMA_CHECKS (see below).
set -euo pipefail
cd "$(dirname "$0")/.."

: "${DATABASE_URL:?run under target/debug/with-postgres, as make test-schema does}"
BIN_DIR=${BIN_DIR:-target/debug}
SCHEMATHESIS=${SCHEMATHESIS:-schemathesis}
SCHEMA_MAX_EXAMPLES=${SCHEMA_MAX_EXAMPLES:-100}
SCHEMA_SEED=${SCHEMA_SEED-20261127}
SCHEMA_TARGETS=${SCHEMA_TARGETS:-rust node}
STARTUP_SECONDS=60

work=$(mktemp -d "${TMPDIR:-/tmp}/apibench-test-schema.XXXXXX")
pids=()     # the servers
checking="" # schemathesis while it runs

stop_servers() {
  local pid waited
  [ -z "$checking" ] || pids+=("$checking") # a schemathesis still running
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    # Both stop gracefully on SIGTERM within a second or two; never hang here.
    for waited in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
  rm -rf "$work"
}
trap stop_servers EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The knobs both servers run with: a cheap argon2 cost (user creation is most of the requests'
# CPU otherwise), a small pool, warnings and errors only in the logs.
export API_ARGON2_MEMORY_KIB=64 API_ARGON2_ITERATIONS=1 API_POOL_MAX=10 API_POOL_MIN=1
export API_LOG_FORMAT=json API_LOG_LEVEL=warn

# start NAME LOG CMD… → sets `url` to the server's base URL once it printed `listening on
# http://…` and its /healthz answered 200. (Not a $(…) function: the server must be a child of
# this shell, which stops it.)
start() {
  local name=$1 log=$2 deadline=$((SECONDS + STARTUP_SECONDS))
  shift 2
  url=""
  : >"$log" # exists before the background child opens it
  "$@" </dev/null >>"$log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  while [ -z "$url" ]; do
    if ! kill -0 "$pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
      echo "test-schema: the $name server did not start; its log:" >&2
      tail -n 40 "$log" >&2
      return 1
    fi
    url=$(sed -n 's|.*listening on \(http://[0-9.:]*\).*|\1|p' "$log" | head -n 1)
    [ -n "$url" ] || sleep 0.2
  done
  until curl -fsS --max-time 2 -o /dev/null "$url/healthz"; do
    if [ $SECONDS -ge $deadline ]; then
      echo "test-schema: $url/healthz never answered 200 ($name)" >&2
      return 1
    fi
    sleep 0.2
  done
}

# The checks the contract's document can vouch for (names as of schemathesis 4); SCHEMA_CHECKS
# overrides them, e.g. `all` to explore.
CHECKS=${SCHEMA_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance}
[ -n "${SCHEMA_CHECKS:-}" ] || CHECKS+=,response_schema_conformance

check() {
  local name=$1 url=$2 log=$3
  local args=(run "$url/openapi.json" --url "$url" --checks "$CHECKS"
    --max-examples "$SCHEMA_MAX_EXAMPLES" --workers 1 --request-timeout 10
    --generation-database none --no-color --warnings off)
  [ -z "$SCHEMA_SEED" ] || args+=(--seed "$SCHEMA_SEED")
  echo "test-schema: schemathesis against the $name server ($url)" >&2
  # From the scratch directory: schemathesis and hypothesis keep caches in the working one. In
  # the background + `wait`, so that a signal to this script is handled at once, not after it.
  (cd "$work" && exec "$SCHEMATHESIS" "${args[@]}") &
  checking=$!
  local status=0
  wait "$checking" || status=$?
  checking=""
  if [ "$status" -ne 0 ]; then
    echo "test-schema: schemathesis found failures in the $name server; the end of its log:" >&2
    tail -n 40 "$log" >&2
    return 1
  fi
}

if [[ $SCHEMATHESIS == */* ]]; then # a path: make it absolute (it runs from $work)
  SCHEMATHESIS=$(cd "$(dirname "$SCHEMATHESIS")" && pwd)/$(basename "$SCHEMATHESIS")
fi
command -v "$SCHEMATHESIS" >/dev/null || {
  echo "test-schema: $SCHEMATHESIS not found (make py-tools installs it)" >&2
  exit 1
}

# The Rust API first: it migrates the database, which the Node.js baseline then uses as it is.
start rust "$work/rust.log" "$BIN_DIR/api" --listen 127.0.0.1:0
rust_url=$url
start node "$work/node.log" env HOST=127.0.0.1 PORT=0 node baselines/node/src/server.js
node_url=$url

failed=()
for target in $SCHEMA_TARGETS; do
  case $target in
    rust) check rust "$rust_url" "$work/rust.log" || failed+=(rust) ;;
    node) check node "$node_url" "$work/node.log" || failed+=(node) ;;
    *) echo "test-schema: unknown target $target (rust | node)" >&2; exit 2 ;;
  esac
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "test-schema: FAILED for: ${failed[*]}" >&2
  exit 1
fi
echo "test-schema: both servers conform to docs/openapi.json" >&2
