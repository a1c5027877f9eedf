#!/usr/bin/env bash
# A fleet on one machine: one redis-server and three imagegate instances sharing it, in front
# of the in-repo Cloudflare API emulator (or the real API when CLOUDFLARE_API_TOKEN is set).
# Instances listen on 127.0.0.1:8081..8083 (admin 9091..9093); Redis on 127.0.0.1:6390.
# Ctrl-C stops everything (each process by its PID).
#
#   bash deploy/fleet/run.sh            # builds (Release) first
#   FLEET_SKIP_BUILD=1 FLEET_BUILD_DIR=build/ci bash deploy/fleet/run.sh   # an existing build
set -euo pipefail
cd "$(dirname "$0")/../.."

if [[ -z ${FLEET_SKIP_BUILD:-} ]]; then
  bash deploy/install-deps.sh
  cmake --preset release >/dev/null
  cmake --build --preset release --target imagegate imagegate-emulator
fi
build_dir=${FLEET_BUILD_DIR:-build/release}
bin=$build_dir/gateway/imagegate
emu=$build_dir/tests/emulator/imagegate-emulator
redis_port=${FLEET_REDIS_PORT:-6390}
account=023e105f4ecef8ad9ca31a8372d0c353
run_dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$run_dir"
}
trap cleanup EXIT INT TERM

# Redis as a cache: no persistence, LRU over a memory cap, loopback only, a password.
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$run_dir/redis-password"
chmod 600 "$run_dir/redis-password"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --maxmemory 256mb --maxmemory-policy allkeys-lru --dir "$run_dir" \
  --requirepass "$(cat "$run_dir/redis-password")" --logfile "$run_dir/redis.log" &
pids+=($!)

upstream=()
if [[ -z ${CLOUDFLARE_API_TOKEN:-} ]]; then
  token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  EMULATOR_TOKEN=$token "$emu" --listen 127.0.0.1:0 --port-file "$run_dir/port" \
    --write-ca "$run_dir/ca.pem" --account "$account" --any-image &
  pids+=($!)
  for _ in $(seq 100); do [[ -s $run_dir/port ]] && break; sleep 0.05; done
  [[ -s $run_dir/port ]] || { echo "the emulator did not start" >&2; exit 1; }
  export CLOUDFLARE_API_TOKEN=$token
  upstream=(--upstream "https://localhost:$(cat "$run_dir/port")/client/v4"
            --upstream-ca "$run_dir/ca.pem")
fi

cat > "$run_dir/fleet.toml" <<TOML
[shield]
coalesce_timeout = "25s"
[redis]
url = "redis://127.0.0.1:$redis_port"
password_file = "$run_dir/redis-password"
[fleet]
instances = 3
TOML

for i in 1 2 3; do
  "$bin" --config "$run_dir/fleet.toml" --listen "127.0.0.1:808$i" \
    --admin-listen "127.0.0.1:909$i" "${upstream[@]}" > "$run_dir/imagegate-$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:909$i/readyz" | grep -q '"fleet":"ok"' && break
    sleep 0.1
  done
done

cat <<TEXT

Fleet up: imagegate on 127.0.0.1:8081, :8082, :8083 (admin :9091..:9093), Redis on :$redis_port.
Try (the first is a miss, the others L2 hits: see Cache-Status):
  curl -si http://127.0.0.1:8081/client/v4/accounts/$account/images/v1/demo-1 | grep -i cache-status
  curl -si http://127.0.0.1:8082/client/v4/accounts/$account/images/v1/demo-1 | grep -i cache-status
  curl -s  http://127.0.0.1:9093/readyz
Logs in $run_dir. Ctrl-C stops everything.
TEXT
wait
