#!/usr/bin/env bash
# Builds mlpc, then checks pipelines/quickstart.mlp, compiles it to its plan
# and draws its DAG, and runs it on the embedded cluster up to its train stage
# (`--target classifier`): the real Fashion-MNIST training set through a
# JIT-compiled kernel, then a 2-rank data-parallel mlp over c10d Gloo with a
# checkpoint each epoch. Its tune, serve and rl stages have no runtime yet.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh >/dev/null
MLPC=${BUILD_DIR:-build}/tools/mlpc/mlpc
echo "== mlpc check pipelines/quickstart.mlp"
$MLPC check pipelines/quickstart.mlp && echo "ok: no errors, no warnings"
echo "== mlpc compile pipelines/quickstart.mlp -o build/quickstart.plan.json"
$MLPC compile pipelines/quickstart.mlp -o "${BUILD_DIR:-build}/quickstart.plan.json"
echo "wrote ${BUILD_DIR:-build}/quickstart.plan.json"
echo "== mlpc graph pipelines/quickstart.mlp"
$MLPC graph pipelines/quickstart.mlp
echo "== mlpc run pipelines/quickstart.mlp --target classifier (embedded cluster)"
start=$(date +%s)
$MLPC run pipelines/quickstart.mlp --target classifier --no-cache --run-root "${BUILD_DIR:-build}/quickstart-runs" \
  --json "${BUILD_DIR:-build}/quickstart.report.json"
echo "data -> train in $(( $(date +%s) - start )) s; metrics: ${BUILD_DIR:-build}/quickstart-runs/runs/*/outputs/classifier/metrics.csv"
