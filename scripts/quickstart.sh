#!/usr/bin/env bash
# Builds mlpc, then checks pipelines/quickstart.mlp, compiles it to its plan
# and draws its DAG. Its train/tune/serve/rl stages have no runtime yet
# (issue #5 and later), so the embedded cluster runs two data pipelines to
# show `mlpc run`: tests/runtime/sum.mlp, and tests/runtime/fashion_sum.mlp
# (real Fashion-MNIST images, a JIT-compiled kernel).
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
echo "== mlpc run tests/runtime/sum.mlp (embedded cluster)"
$MLPC run tests/runtime/sum.mlp --run-root "${BUILD_DIR:-build}/quickstart-runs" --json "${BUILD_DIR:-build}/quickstart.report.json"
echo "== mlpc run tests/runtime/fashion_sum.mlp --jit on (embedded cluster, Fashion-MNIST)"
$MLPC run tests/runtime/fashion_sum.mlp --jit on --run-root "${BUILD_DIR:-build}/quickstart-runs" \
  --json "${BUILD_DIR:-build}/quickstart.fashion.json"
