#!/usr/bin/env bash
# `make demo-distributed`: one load sent by SHARDS (default 2) "machines", merged into one report.
#
#   1. `apibench serve` provisions PostgreSQL, seeds it and starts the reference API, reachable
#      from the other hosts (it binds this namespace's end of the first veth link);
#   2. each shard runs in a network namespace of its own (its own veth link, address, and host
#      name via a UTS namespace): `apibench run SCENARIO --target-url URL --shard I/N --start-at T`;
#   3. `apibench merge` adds their histograms into one run directory and prints the summary.
#
# Needs root and iproute2 for the namespaces; otherwise the shards run as plain processes on
# loopback (said so). Everything it creates is removed on exit, whatever happens. Loopback and
# its own namespaces only; the load is bounded by the scenario (about 25 s).
set -euo pipefail
cd "$(dirname "$0")/.."

RELEASE=${RELEASE:-target/release}
APIBENCH=$RELEASE/apibench
SCENARIO=${SCENARIO:-scenarios/distributed.toml}
SHARDS=${SHARDS:-2}
OUT=${OUT:-reports/$(date -u +%Y%m%dT%H%M%SZ)-distributed}
NET=${NET:-10.233}  # shard i: $NET.i.2 in its namespace, $NET.i.1 here
TAG=abd$$

work=$(mktemp -d)
namespaces=()
. scripts/lib/serve.sh
cleanup() {
  set +e
  stop_serve
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; ip link del "$ns-h" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

use_netns=1
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then use_netns=0; fi
if [ $use_netns = 1 ]; then
  for i in $(seq 0 $((SHARDS - 1))); do
    ns=$TAG-$i
    ip netns add "$ns" || { use_netns=0; break; }
    namespaces+=("$ns")
    ip link add "$ns-h" type veth peer name "$ns-n"
    ip link set "$ns-n" netns "$ns"
    ip addr add "$NET.$i.1/24" dev "$ns-h"
    ip link set "$ns-h" up
    ip netns exec "$ns" ip addr add "$NET.$i.2/24" dev "$ns-n"
    ip netns exec "$ns" ip link set "$ns-n" up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip route add default via "$NET.$i.1"
  done
fi
if [ $use_netns = 1 ]; then
  host=$NET.0.1
  echo "==> $SHARDS shards as separate hosts (network namespaces ${namespaces[*]}), the API on $host"
else
  host=127.0.0.1
  echo "==> network namespaces unavailable (root + iproute2 needed): $SHARDS shards as processes on loopback"
fi

# 1. The target, seeded, until this script ends (stdin held open by the fifo's writer).
start_serve "$work" "$APIBENCH" serve "$SCENARIO" --listen-host "$host" || exit 3

# 2. The shards, all starting the schedule at the same instant.
start_at=$(date -u -d '+6 seconds' +%Y-%m-%dT%H:%M:%SZ)
echo "==> target $url; every shard starts at $start_at"
mkdir -p "$OUT"
pids=()
for i in $(seq 0 $((SHARDS - 1))); do
  args=(run "$SCENARIO" --target-url "$url" --shard "$i/$SHARDS" --start-at "$start_at"
        --out "$OUT/shard-$i" --quiet)
  if [ $use_netns = 1 ]; then
    ip netns exec "$TAG-$i" unshare --uts sh -c 'hostname "$0"; exec "$@"' "shard-$i" \
      "$APIBENCH" "${args[@]}" > "$OUT/shard-$i.log" 2>&1 &
  else
    "$APIBENCH" "${args[@]}" > "$OUT/shard-$i.log" 2>&1 &
  fi
  pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || { failed=1; echo "shard $i failed:" >&2; cat "$OUT/shard-$i.log" >&2; }
done
[ $failed = 0 ] || exit 3

# 3. One run from all of them.
shard_dirs=()
for i in $(seq 0 $((SHARDS - 1))); do shard_dirs+=("$OUT/shard-$i"); done
echo "==> apibench merge $OUT/merged ${shard_dirs[*]}"
"$APIBENCH" merge "$OUT/merged" "${shard_dirs[@]}"
