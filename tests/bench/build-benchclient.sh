#!/usr/bin/env bash
# Builds build/bench/benchclient from tests/bench/benchclient.cpp when it is missing or older
# than its source (g++ only, no CMake), for run.sh and profile.sh alike.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=$root/build/bench/benchclient
src=$root/tests/bench/benchclient.cpp
if [[ ! -x $out || $src -nt $out ]]; then
  echo "building build/bench/benchclient" >&2
  mkdir -p "$(dirname "$out")"
  g++ -std=c++20 -O2 -Wall -Wextra -o "$out.tmp" "$src"
  mv "$out.tmp" "$out"
fi
