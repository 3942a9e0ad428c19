"""The table of scripts/shards-vs-single.sh: per configuration (1, 2, 4 … processes), each
round's p50/p99, then every round's histograms added (exact, from recording.json) — the
percentiles of all its requests — and their ratio to one process's.

    python3 scripts/lib/shards_table.py OUT ROUNDS COUNT...
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pooled import pooled  # noqa: E402

out, rounds, counts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print(f"{'processes':>9} {'p50 µs (each round)':>30} {'p99 µs (each round)':>36} "
      f"{'requests':>9} {'pooled p50':>10} {'pooled p99':>10}")
base = None
for n in counts:
    dirs = [f"{out}/round-{r}/n{n}" for r in range(1, rounds + 1)]
    each = [json.load(open(f"{d}/summary.json"))["variants"][0]["repetitions"][0] for d in dirs]
    total, p50, p99 = pooled(dirs)
    base = base or (p50, p99)
    verdicts = ",".join(sorted({m["verdict"] for m in each}))
    ratio = "" if n == counts[0] else f"  ×{p50 / base[0]:.2f} / ×{p99 / base[1]:.2f} of one process"
    print(f"{n:>9} {str([m['latency_us']['p50'] for m in each]):>30} "
          f"{str([m['latency_us']['p99'] for m in each]):>36} {total:>9} {p50:>10} {p99:>10}"
          f"{ratio}  {verdicts}")
