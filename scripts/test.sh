#!/usr/bin/env bash
# Builds mlpc and runs every test (ctest). Exit status is ctest's.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "${JOBS:-$(nproc)}" --timeout 600
