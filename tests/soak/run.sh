#!/usr/bin/env bash
# The shield soak (issue 12): builds the ci preset's imagegate and imagegate-emulator and the
# soak load client, then runs tests/soak/soak.py — three runs of a 10x-the-budget overload
# against an emulator that enforces a scaled Cloudflare limit with a lockout — and exits 0
# only if every run meets every criterion. Minutes, by hand; not part of ctest.
#
#   tests/soak/run.sh                 # 3 runs x (10 s unloaded + 60 s overload + drain)
#   tests/soak/run.sh --runs 1        # one run
#   tests/soak/run.sh --no-build ...  # reuse build/ci; other flags go to soak.py (--help)
#
# Results: build/soak/results.md (the tables printed), logs in build/soak/logs/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

build=1
args=()
for a in "$@"; do
  case $a in
    --no-build) build=0 ;;
    -h | --help) exec python3 tests/soak/soak.py --help ;;
    *) args+=("$a") ;;
  esac
done

for t in python3 g++ cmake; do
  command -v "$t" >/dev/null || { echo "run.sh: $t not found" >&2; exit 1; }
done
if ((build)); then
  echo "[soak] building the ci preset (imagegate, imagegate-emulator)"
  cmake --preset ci >/dev/null
  cmake --build --preset ci --target imagegate imagegate-emulator
fi
client=build/soak/soakclient
if [[ ! -x $client || tests/soak/soakclient.cpp -nt $client ]]; then
  echo "[soak] building $client"
  mkdir -p build/soak
  g++ -std=c++20 -O2 -Wall -Wextra -pthread -o "$client.tmp" tests/soak/soakclient.cpp
  mv "$client.tmp" "$client"
fi
# One connection per user and per hot thread, plus the gateway's own: well under 1024, but
# raise the soft limit where the hard one allows.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec python3 tests/soak/soak.py --build-dir build/ci --client "$client" "${args[@]}"
