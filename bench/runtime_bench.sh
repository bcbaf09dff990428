#!/usr/bin/env bash
# Runs the runtime microbenchmarks and their Dask peer in the same run, then
# prints the ratios and the targets' verdicts (verdicts on stderr; STRICT=1
# makes a miss exit 1).
# Usage: bench/runtime_bench.sh [BUILD_DIR] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
QUICK=${2:-}
MLPC=$BUILD/tools/mlpc/mlpc
out=$(mktemp)
"$BUILD/bench/runtime_bench" "$MLPC" $QUICK | tee "$out"
/usr/bin/python3 bench/dask_bench.py $QUICK 2>/dev/null | tee -a "$out"
python3 - "$out" <<'PY'
import sys
vals = {}
for line in open(sys.argv[1]):
    if ": " in line:
        k, v = line.split(": ", 1)
        vals[k.strip()] = float(v.split()[0])
def ratio(name, ours, theirs, smaller_is_better):
    if ours in vals and theirs in vals and vals[ours] > 0 and vals[theirs] > 0:
        r = vals[theirs] / vals[ours] if smaller_is_better else vals[ours] / vals[theirs]
        print(f"{name}: {r:.3g} x", flush=True)
        vals[name] = r
ratio("dag_10000_vs_dask", "dag_10000_noop_tasks", "dask_dag_10000_noop_tasks", True)
ratio("chain_1000_vs_dask", "chain_1000_tasks", "dask_chain_1000_tasks", True)
ratio("tasks_async_vs_dask", "single_client_tasks_async", "dask_tasks_async", False)
ratio("tasks_sync_vs_dask", "single_client_tasks_sync", "dask_tasks_sync", False)
miss = 0
def target(desc, ok):
    global miss
    print(("PASS " if ok else "MISS ") + desc, file=sys.stderr)
    miss += not ok
target("single_client_tasks_async >= 10,000 tasks/s", vals.get("single_client_tasks_async", 0) >= 10000)
target("single_client_tasks_sync_p50 < 200 us", vals.get("single_client_tasks_sync_p50", 1e9) < 200)
target("dag_10000_vs_dask >= 20x", vals.get("dag_10000_vs_dask", 0) >= 20)
import os
sys.exit(1 if miss and os.environ.get("STRICT") == "1" else 0)
PY
rm -f "$out"
