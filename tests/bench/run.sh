#!/usr/bin/env bash
# imagegate vs nginx proxy_cache benchmark: one command. See tests/bench/README.md.
#
#   tests/bench/run.sh [--quick] [--full] [--rounds N] [--duration S] [--only LIST] ...
#   tests/bench/run.sh --help          every option
#   tests/bench/run.sh --fleet [...]   the fleet tier instead (tests/bench/fleet.py: Redis, three
#                                      instances; no nginx, no wrk); --fleet --help: its options
#
# Installs wrk and nginx when missing (apt-get), builds the release binaries and the small
# benchmark client, raises the open-file limit, then runs tests/bench/bench.py, which starts
# the emulator, nginx and imagegate on loopback ports picked at run time, measures, prints the
# table and writes build/bench/results.md. Every process it starts is stopped on exit,
# Ctrl-C or failure. Not part of ctest.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

skip_build=0
script=bench.py
help=0
args=()
for a in "$@"; do
  case "$a" in
    --no-build) skip_build=1 ;;
    --fleet) script=fleet.py ;;
    -h|--help) help=1 ;;
    *) args+=("$a") ;;
  esac
done
if [ "$help" -eq 1 ]; then exec python3 "$here/$script" --help; fi

say() { printf '[bench] %s\n' "$*"; }

# --- tools -------------------------------------------------------------------------------------
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

have_nginx() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }

missing=()
if [ "$script" = fleet.py ]; then
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
else
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  have_nginx || missing+=(nginx-light)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  if ! as_root apt-get install -y --no-install-recommends "${missing[@]}"; then
    as_root apt-get update
    if ! as_root apt-get install -y --no-install-recommends "${missing[@]}"; then
      # Some releases have no nginx-light; the full package has proxy_cache and SSL too.
      as_root apt-get install -y --no-install-recommends "${missing[@]/nginx-light/nginx}"
    fi
  fi
fi
tools=(taskset python3 g++ cmake)
if [ "$script" = fleet.py ]; then tools+=(redis-server); else tools+=(wrk); fi
for t in "${tools[@]}"; do
  command -v "$t" >/dev/null 2>&1 || { echo "run.sh: $t not found" >&2; exit 1; }
done
[ "$script" = fleet.py ] || have_nginx || { echo "run.sh: nginx not found" >&2; exit 1; }
if [ -x /usr/sbin/nginx ]; then PATH="$PATH:/usr/sbin"; export PATH; fi

# --- build -------------------------------------------------------------------------------------
mkdir -p build/bench
if [ "$skip_build" -eq 0 ]; then
  say "building the release preset (imagegate, imagegate-emulator)"
  cmake --preset release >/dev/null
  cmake --build --preset release --target imagegate imagegate-emulator
fi
bash tests/bench/build-benchclient.sh

# --- limits ------------------------------------------------------------------------------------
# The herd opens 1000+ connections; nginx and imagegate inherit this limit.
hard="$(ulimit -Hn)"
want=65536
if [ "$hard" != "unlimited" ] && [ "$hard" -lt "$want" ]; then want="$hard"; fi
ulimit -n "$want" || true
if [ "$(ulimit -n)" -lt 4096 ]; then
  echo "run.sh: open-file limit $(ulimit -n) is below 4096; the herd needs more" >&2
  exit 1
fi

# --- run ---------------------------------------------------------------------------------------
# bench.py stops every process it started (on exit, error, SIGINT, SIGTERM, SIGHUP); the trap
# forwards a TERM/HUP sent to this script and waits for that clean-up.
py_pid=""
forward() {
  if [ -n "$py_pid" ] && kill -0 "$py_pid" 2>/dev/null; then
    kill -TERM "$py_pid" 2>/dev/null || true
    wait "$py_pid" 2>/dev/null || true
  fi
  exit 130
}
trap forward TERM HUP
trap '' INT  # Ctrl-C reaches bench.py (same process group); it cleans up and exits
python3 "$here/$script" "${args[@]+"${args[@]}"}" &
py_pid=$!
set +e
wait "$py_pid"
rc=$?
# `wait` returns early when a trapped signal arrives; wait again for the real status.
while kill -0 "$py_pid" 2>/dev/null; do wait "$py_pid"; rc=$?; done
exit "$rc"
