#!/usr/bin/env bash
# Installs what is needed, builds with warnings as errors, and runs every test with ctest.
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
cmake --preset ci
cmake --build --preset ci
ctest --preset ci --timeout 600
