#!/usr/bin/env bash
# The test command: installs what is needed, then
#   1. builds the ci preset (Release, warnings as errors) and runs every test with ctest;
#   2. builds the asan-ubsan preset and runs every test under ASan + UBSan;
#   3. builds the concurrency tests with the tsan preset and runs them under TSan;
#   4. fuzzes each libFuzzer target for FUZZ_SECONDS (default 30), after replaying its
#      regression inputs, from the fixed FUZZ_SEED (default 1) so that the same commit
#      fuzzes the same inputs on every machine (FUZZ_SEED= draws a new seed per run).
# Exits non-zero on the first failure.
#
#   tests/run-all.sh            # everything above (what CI runs)
#   tests/run-all.sh --quick    # step 1 only, for a quick check while developing
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
case "${1:-}" in
  --quick) quick=1 ;;
  "") ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac

started=$SECONDS
step() {
  printf '\n==> [%dm%02ds] %s\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)) "$*"
}

step "dependencies"
if ((quick)); then
  bash deploy/install-deps.sh --with-deploy-tools  # the ci step's tests/deploy need them
else
  bash deploy/install-deps.sh --with-test-tools
fi

if ((quick)); then
  if command -v clang-format-14 >/dev/null || command -v clang-format >/dev/null; then
    step "format"
    bash tests/check-format.sh
  fi
else
  step "format"
  bash tests/check-format.sh
fi
step "ci preset: build"
cmake --preset ci
cmake --build --preset ci
step "ci preset: every test"
ctest --preset ci --timeout 600
if ((quick)); then
  step "done (quick)"
  exit 0
fi

step "asan-ubsan preset: build"
cmake --preset asan-ubsan
cmake --build --preset asan-ubsan
step "asan-ubsan preset: every test"
ctest --preset asan-ubsan --timeout 900  # sanitizer options: CMakePresets.json

step "tsan preset: build the concurrency tests"
cmake --preset tsan
cmake --build --preset tsan --target concurrency_tests
step "tsan preset: concurrency tests"
ctest --preset tsan -L concurrency --timeout 900  # options, suppressions: CMakePresets.json

step "fuzz: ${FUZZ_SECONDS:-30} s per target"
FUZZ_SEED=${FUZZ_SEED-1} bash tests/fuzz/run.sh "${FUZZ_SECONDS:-30}"

step "all passed"
