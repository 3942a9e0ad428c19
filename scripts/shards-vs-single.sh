#!/usr/bin/env bash
# Does sharding change the figures? One served reference API; ROUNDS rounds, each running the
# same scenario as one process, then as 2 shards, then as 4 (merged), interleaved so drift on a
# shared machine hits every configuration alike. Prints requests, p50 and p99 of each, and each
# sharded median against the single process's. Loopback only; bounded by the scenario.
#
#   scripts/shards-vs-single.sh                  # 3 rounds of scenarios/distributed.toml
#   ROUNDS=2 SCENARIO=my.toml scripts/shards-vs-single.sh
#
# With 2+ CPUs the served API and its PostgreSQL are pinned to SERVER_CPUS (default: CPU 0) and
# every generator process to GEN_CPUS (default: the other CPUs), so a configuration with more
# generator processes does not take CPU from the server it measures.
set -euo pipefail
cd "$(dirname "$0")/.."

RELEASE=${RELEASE:-target/release}
APIBENCH=$RELEASE/apibench
SCENARIO=${SCENARIO:-scenarios/distributed.toml}
ROUNDS=${ROUNDS:-3}
COUNTS=${COUNTS:-"1 2 4"}
OUT=${OUT:-reports/$(date -u +%Y%m%dT%H%M%SZ)-shards-vs-single}
cpus=$(nproc)
if [ "$cpus" -ge 2 ] && command -v taskset >/dev/null; then
  SERVER_CPUS=${SERVER_CPUS:-0}
  GEN_CPUS=${GEN_CPUS:-1-$((cpus - 1))}
  on_server=(taskset -c "$SERVER_CPUS")
  on_generator=(taskset -c "$GEN_CPUS")
  echo "==> the API and PostgreSQL on CPU $SERVER_CPUS, the generator processes on CPU $GEN_CPUS"
else
  on_server=()
  on_generator=()
fi

work=$(mktemp -d)
. scripts/lib/serve.sh
cleanup() {
  set +e
  stop_serve
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

start_serve "$work" "${on_server[@]}" "$APIBENCH" serve "$SCENARIO" || exit 3
echo "==> target $url"
mkdir -p "$OUT"

for round in $(seq 1 "$ROUNDS"); do
  for n in $COUNTS; do
    dir=$OUT/round-$round/n$n
    mkdir -p "$OUT/round-$round"
    if [ "$n" = 1 ]; then
      "${on_generator[@]}" "$APIBENCH" run "$SCENARIO" --target-url "$url" --out "$dir" --quiet > "$dir.log" 2>&1 \
        || { cat "$dir.log" >&2; exit 3; }
    else
      start_at=$(date -u -d '+4 seconds' +%Y-%m-%dT%H:%M:%SZ)
      pids=()
      for i in $(seq 0 $((n - 1))); do
        "${on_generator[@]}" "$APIBENCH" run "$SCENARIO" --target-url "$url" --shard "$i/$n" --start-at "$start_at" \
          --out "$dir-shard-$i" --quiet > "$dir-shard-$i.log" 2>&1 &
        pids+=($!)
      done
      for p in "${pids[@]}"; do wait "$p" || { echo "a shard failed (see $dir-shard-*.log)" >&2; exit 3; }; done
      "$APIBENCH" merge "$dir" $(for i in $(seq 0 $((n - 1))); do echo "$dir-shard-$i"; done) > "$dir.log"
    fi
    echo "round $round, $n process(es): $dir"
  done
done

python3 scripts/lib/shards_table.py "$OUT" "$ROUNDS" $COUNTS
