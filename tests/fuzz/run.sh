#!/usr/bin/env bash
# Builds the libFuzzer targets (clang) in build/fuzz and fuzzes each for SECONDS (default 60).
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#
# First runs every file under tests/fuzz/regressions/<target>/ once as a plain input, then
# fuzzes from tests/fuzz/corpus/<target>/ (+ the regressions). New corpus entries and crash
# artifacts go to build/fuzz/{corpus,artifacts}/<target>/, never into the source tree.
# Targets run side by side, FUZZ_JOBS at a time (default: one per core). Exits non-zero if
# any regression input or fuzzing run crashes, leaks, times out or OOMs.
# FUZZ_SEED=N makes every target start its mutations from seed N (libFuzzer's -seed), so a
# run from the same corpus explores the same inputs on every machine; the test command sets
# it so that CI is reproducible. Unset, each run draws a new seed (use that for long runs).
set -euo pipefail

seconds=${1:-60}
shift || true
if ! [[ $seconds =~ ^[0-9]+$ ]]; then
  echo "usage: $0 [SECONDS] [TARGET...]" >&2
  exit 2
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$root/build/fuzz
cxx=${FUZZ_CXX:-clang++}

targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(route_fuzz validator_fuzz response_fuzz config_fuzz http_request_fuzz l2_value_fuzz
           page_fuzz state_fuzz)
fi

generator=()
if command -v ninja >/dev/null 2>&1; then
  generator=(-G Ninja)
fi
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S "$here" -B "$build" "${generator[@]}" -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
fi
cmake --build "$build" --target "${targets[@]}" -j "$(nproc)"

# Plain files of a directory (none when it is missing or empty).
files_in() {
  [[ -d $1 ]] && find "$1" -type f ! -name '.*' ! -name README.md | sort
}

# Replays the regressions of one target, then fuzzes it; writes one summary line to
# $build/$t.summary and returns non-zero on any finding.
run_target() {
  local t=$1
  local bin=$build/$t
  local regress_dir=$here/regressions/$t
  local regressions=()
  mapfile -t regressions < <(files_in "$regress_dir" || true)
  if ((${#regressions[@]})); then
    if ! "$bin" -rss_limit_mb=2048 -timeout=5 "${regressions[@]}" >"$build/$t.regressions.log" 2>&1; then
      echo "$t: a regression input fails; see $build/$t.regressions.log" >&2
      tail -n 30 "$build/$t.regressions.log" >&2
      echo "$t: FAILED on regression inputs (${#regressions[@]} files)" >"$build/$t.summary"
      return 1
    fi
  fi

  local scratch=$build/corpus/$t
  local artifacts=$build/artifacts/$t
  mkdir -p "$scratch" "$artifacts"
  local inputs=("$scratch" "$here/corpus/$t")
  ((${#regressions[@]})) && inputs+=("$regress_dir")
  local dict=()
  [[ -f $here/dict/$t.dict ]] && dict=(-dict="$here/dict/$t.dict")

  local seed=()
  [[ -n ${FUZZ_SEED:-} ]] && seed=(-seed="$FUZZ_SEED")

  local log=$build/$t.log
  local status=ok rc=0
  if ! "$bin" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 \
      "${seed[@]}" -artifact_prefix="$artifacts/" "${dict[@]}" "${inputs[@]}" >"$log" 2>&1; then
    status=FAILED
    rc=1
    echo "$t: crash; log $log, artifacts in $artifacts" >&2
    grep -E -A30 '^==[0-9]+==|invariant failed|runtime error|exception escaped' "$log" | head -n 60 >&2 || tail -n 40 "$log" >&2
  fi
  local runs rate last cov ft corp
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\) .*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  echo "$t: $status runs=${runs:-?} exec/s=${rate:-?} cov=${cov:-?} ft=${ft:-?} corpus=${corp:-?} (${seconds}s)" >"$build/$t.summary"
  return "$rc"
}

# Targets run side by side, FUZZ_JOBS at a time (default: one per core).
jobs=${FUZZ_JOBS:-$(nproc)}
failed=0
running=0
for t in "${targets[@]}"; do
  rm -f "$build/$t.summary"
  if ((running >= jobs)); then
    wait -n || failed=1
    running=$((running - 1))
  fi
  run_target "$t" &
  running=$((running + 1))
done
while ((running > 0)); do
  wait -n || failed=1
  running=$((running - 1))
done

for t in "${targets[@]}"; do
  cat "$build/$t.summary" 2>/dev/null || echo "$t: no result"
done
exit "$failed"
