#!/usr/bin/env bash
# Cost per request without timing: user-space instructions and heap allocations per cache
# hit or per miss, counted by valgrind's callgrind over a fixed number of requests.
#
#   tests/bench/profile.sh hit  [BUILD_DIR] [THREADS]   # 1 key, wrk -c64, 5 s
#                                   (PROFILE_KEYS=N: N cached keys round robin;
#                                    PROFILE_CONNS=N: wrk -cN;
#                                    PROFILE_LOG=default: the shipped log settings, level
#                                    info and the access log on with its 1-in-100 hit
#                                    sample, instead of level warn and no access log)
#   tests/bench/profile.sh miss [BUILD_DIR] [THREADS]   # 2,000 new ids, 16 connections
#                                                       # (benchclient load)
#   tests/bench/profile.sh upstream [BUILD_DIR]         # the same misses, counted in the
#                                                       # emulator: what one answer costs
#                                                       # the benchmark's shared upstream
#   tests/bench/profile.sh l2 [BUILD_DIR] [THREADS]     # 2,000 L2 hits with a cold L1: a
#                                                       # redis-server and a second imagegate
#                                                       # that fetched the ids into it first
#                                                       # (the fleet tier; 16 connections)
#
# BUILD_DIR defaults to build/ci (cmake --preset ci && cmake --build --preset ci); THREADS
# (--threads of imagegate) to 1, as in the benchmark. Starts the in-repo emulator (TLS) as
# upstream and imagegate under callgrind with instrumentation off, warms the cache or the
# upstream pool, switches instrumentation on for the measured requests only, and prints
# instructions and allocations (malloc, calloc, realloc, aligned_alloc, posix_memalign)
# per request. Installs valgrind, wrk and curl from Debian when missing (apt-get, with sudo
# when not root). Kernel work (syscalls) is not counted; see
# PERFORMANCE.md for the strace method. Loopback ports are chosen at run time.
# PROFILE_OUT=FILE keeps the callgrind dump for callgrind_annotate.
set -euo pipefail

mode=${1:-}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${2:-$root/build/ci}
threads=${3:-1}
case $mode in
  hit | miss | upstream | l2) ;;
  *) echo "usage: $0 hit|miss|upstream|l2 [BUILD_DIR] [THREADS]" >&2; exit 2 ;;
esac
# valgrind (callgrind, callgrind_control), wrk and curl (and for l2 redis-server) from Debian
# when missing.
missing=()
for pkg in valgrind wrk curl; do
  command -v "$pkg" >/dev/null || missing+=("$pkg")
done
if [[ $mode == l2 ]] && ! command -v redis-server >/dev/null; then
  missing+=(redis-server)
fi
if ((${#missing[@]})); then
  as_root=()
  [[ $(id -u) -ne 0 ]] && as_root=(sudo)
  echo "profile: installing ${missing[*]} (apt-get)" >&2
  "${as_root[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q --no-install-recommends \
    "${missing[@]}"
fi
gateway=$build/gateway/imagegate
emulator_bin=$build/tests/emulator/imagegate-emulator
[[ -x $gateway && -x $emulator_bin ]] || { echo "$0: build $build first" >&2; exit 2; }

# The load client of the benchmark (each id of a range requested once, keep-alive).
bash "$root/tests/bench/build-benchclient.sh"
benchclient=$root/build/bench/benchclient

scratch=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$scratch"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

token=profile-token
# Which process runs under callgrind.
callgrind=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$scratch/callgrind.out")
gateway_wrap=("${callgrind[@]}")
emulator_wrap=()
if [[ $mode == upstream ]]; then
  emulator_wrap=("${callgrind[@]}")
  gateway_wrap=()
fi
EMULATOR_TOKEN=$token "${emulator_wrap[@]}" "$emulator_bin" --listen 127.0.0.1:0 --port-file "$scratch/port" \
  --write-ca "$scratch/ca.pem" --any-image --rate-limit 1000000000 --rate-window 1 \
  --threads 1 >"$scratch/emulator.log" 2>&1 &
emu=$!
pids+=($emu)
for _ in $(seq 300); do [[ -s $scratch/port ]] && break; sleep 0.05; done
upstream_port=$(cat "$scratch/port")
port=$(free_port)
admin=$(free_port)

# l2: a redis-server (loopback, no persistence) that both imagegates share; the op timeout is
# raised because the counted one runs ~50 times slower under callgrind (it changes no
# instruction count).
fleet_env=()
if [[ $mode == l2 ]]; then
  redis_port=$(free_port)
  printf 'port %s\nbind 127.0.0.1\nsave ""\nappendonly no\ndir %s\nlogfile %s\n' \
    "$redis_port" "$scratch" "$scratch/redis.log" >"$scratch/redis.conf"
  redis-server "$scratch/redis.conf" &
  pids+=($!)
  for _ in $(seq 100); do
    [[ $(redis-cli -p "$redis_port" ping 2>/dev/null) == PONG ]] && break
    sleep 0.05
  done
  fleet_env=(IMAGEGATE_REDIS_URL="redis://127.0.0.1:$redis_port" IMAGEGATE_FLEET_INSTANCES=2
    IMAGEGATE_SHIELD_COALESCE_TIMEOUT=25s IMAGEGATE_REDIS_OP_TIMEOUT=1s)
fi

access_log=false
log_level=warn
if [[ ${PROFILE_LOG:-} == default ]]; then
  access_log=true
  log_level=info
fi
# start_gateway PORT ADMIN_PORT LOG [WRAPPER...]: one imagegate in the background.
start_gateway() {
  local listen=$1 admin_port=$2 log=$3
  shift 3
  CLOUDFLARE_API_TOKEN=$token IMAGEGATE_LOG_ACCESS_LOG=$access_log \
    IMAGEGATE_SHIELD_BUDGET=100000000 IMAGEGATE_SHIELD_WINDOW=1s IMAGEGATE_SHIELD_BURST=1000000 \
    env "${fleet_env[@]}" "$@" \
    "$gateway" --listen "127.0.0.1:$listen" --admin-listen "127.0.0.1:$admin_port" \
    --upstream "https://localhost:$upstream_port/client/v4" --upstream-ca "$scratch/ca.pem" \
    --threads "$threads" --ttl 1h --log-level "$log_level" >"$log" 2>&1 &
  pids+=($!)
}
wait_ready() {  # ADMIN_PORT: /readyz 200 (and with Redis, the fleet tier up)
  for _ in $(seq 300); do
    if body=$(curl -fs "http://127.0.0.1:$1/readyz"); then
      [[ $mode != l2 || $body == *'"fleet":"ok"'* ]] && return
    fi
    sleep 0.1
  done
}
start_gateway "$port" "$admin" "$scratch/imagegate.log" "${gateway_wrap[@]}"
gw=$!
# The process whose instructions are counted.
counted=$gw
[[ $mode == upstream ]] && counted=$emu
wait_ready "$admin"
if [[ $mode == l2 ]]; then
  # The instance that fetches the ids into Redis (not counted).
  filler_port=$(free_port)
  filler_admin=$(free_port)
  start_gateway "$filler_port" "$filler_admin" "$scratch/filler.log"
  wait_ready "$filler_admin"
fi

account=023e105f4ecef8ad9ca31a8372d0c353
prefix=http://127.0.0.1:$port/client/v4/accounts/$account/images/v1
if [[ $mode == hit ]]; then
  conns=${PROFILE_CONNS:-64}
  keys=${PROFILE_KEYS:-1}
  if ((keys == 1)); then
    target=$prefix/profile-hit-0000000000000000000000000000
    curl -fs -o /dev/null "$target"
    wrk_args=("$target")
  else
    # KEYS cached ids, each loaded once, then requested round robin (the benchmark's script).
    hit_prefix=/client/v4/accounts/$account/images/v1/profile-hit-
    "$benchclient" load --port "$port" --prefix "$hit_prefix" --width 8 --first 1 --n "$keys" \
      --conns 16 >/dev/null
    wrk_args=(-s "$root/tests/bench/multikey.lua" "http://127.0.0.1:$port$hit_prefix" --
      "$hit_prefix" "$keys" 8)
  fi
  callgrind_control -i on "$counted" >/dev/null
  requests=$(wrk -t1 "-c$conns" -d5s "${wrk_args[@]}" |
    sed -n 's/^ *\([0-9]*\) requests in.*/\1/p')
elif [[ $mode == l2 ]]; then
  # The filler fetches 200 warm-up and 2,000 measured ids; once all are in Redis (its writes
  # are in the background), the counted instance reads the 200 (its Redis connection and the
  # decoder warm), then the 2,000 with instrumentation on: each one an L2 hit.
  l2_prefix=/client/v4/accounts/$account/images/v1/profile-l2-
  for range in "1 200" "1001 2000"; do
    read -r first n <<<"$range"
    "$benchclient" load --port "$filler_port" --prefix "$l2_prefix" --first "$first" --n "$n" \
      --conns 16 >/dev/null
  done
  for _ in $(seq 200); do
    stored=$(redis-cli -p "$redis_port" --scan --pattern '*profile-l2-*' | wc -l)
    ((stored >= 2200)) && break
    sleep 0.05
  done
  "$benchclient" load --port "$port" --prefix "$l2_prefix" --first 1 --n 200 --conns 16 \
    >/dev/null
  callgrind_control -i on "$counted" >/dev/null
  requests=$("$benchclient" load --port "$port" --prefix "$l2_prefix" --first 1001 --n 2000 \
    --conns 16 | python3 -c '
import json, sys
d = json.load(sys.stdin)
if set(d["status"]) != {"200"} or set(d["cache"]) != {"fwd=miss stored detail=l2-hit"}:
    sys.exit("not all L2 hits: %s %s" % (d["status"], d["cache"]))
print(d["done"])')
else
  # Warm the upstream pool (TLS handshakes) and the parsers with 200 misses first.
  miss_prefix=/client/v4/accounts/$account/images/v1/profile-miss-
  "$benchclient" load --port "$port" --prefix "$miss_prefix" --first 1 --n 200 --conns 16 \
    >/dev/null
  callgrind_control -i on "$counted" >/dev/null
  requests=$("$benchclient" load --port "$port" --prefix "$miss_prefix" --first 1001 --n 2000 \
    --conns 16 | python3 -c '
import json, sys
d = json.load(sys.stdin)
if set(d["status"]) != {"200"}:
    sys.exit("unexpected answers: %s" % d["status"])
print(d["done"])')
fi
callgrind_control -d "$counted" >/dev/null
sleep 0.5
if [[ -n ${PROFILE_OUT:-} ]]; then
  cp "$scratch"/callgrind.out.1 "$PROFILE_OUT"
fi

python3 - "$scratch" "$requests" "$mode" "$threads" <<'PY'
import glob, re, sys
scratch, requests, mode, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
alloc_fns = {"malloc", "calloc", "realloc", "aligned_alloc", "posix_memalign"}
instr = 0
allocs = 0
for path in glob.glob(scratch + "/callgrind.out.*"):  # the explicit dump, not the exit one
    names = {}
    cfn_is_alloc = False
    summary = None
    for line in open(path, errors="replace"):
        if line.startswith("summary:") or line.startswith("totals:"):
            summary = int(line.split()[1])
        m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
        if m:
            kind, ident, name = m.groups()
            if name:
                names[ident] = name
            if kind == "cfn":
                cfn_is_alloc = names.get(ident, "") in alloc_fns
            continue
        if line.startswith("calls=") and cfn_is_alloc:
            allocs += int(line.split("=")[1].split()[0])
            cfn_is_alloc = False
    if summary:
        instr += summary
if requests <= 0:
    sys.exit("no requests were measured")
who = "the emulator's cost per answer" if mode == "upstream" else f"--threads {threads}"
print(f"{mode}, {who}: {requests} requests, "
      f"{instr / requests / 1000:.1f}k instructions and {allocs / requests:.1f} allocations per request")
PY
