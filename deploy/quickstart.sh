#!/usr/bin/env bash
# Installs what is needed, builds imagegate (Release) and starts it on 127.0.0.1:8080
# (admin on 127.0.0.1:9090). Without CLOUDFLARE_API_TOKEN it also starts the in-repo
# Cloudflare API emulator and uses it as the upstream; with a token it uses the real API.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target imagegate imagegate-emulator

bin=build/release/gateway/imagegate
emu=build/release/tests/emulator/imagegate-emulator
run_dir=$(mktemp -d)
emu_pid=
cleanup() {
  [[ -n $emu_pid ]] && kill "$emu_pid" 2>/dev/null && wait "$emu_pid" 2>/dev/null
  rm -rf "$run_dir"
}
trap cleanup EXIT

args=(--listen 127.0.0.1:8080 --admin-listen 127.0.0.1:9090)
account=023e105f4ecef8ad9ca31a8372d0c353
if [[ -z ${CLOUDFLARE_API_TOKEN:-} ]]; then
  token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  EMULATOR_TOKEN=$token "$emu" --listen 127.0.0.1:0 --port-file "$run_dir/port" \
    --write-ca "$run_dir/ca.pem" --account "$account" &
  emu_pid=$!
  for _ in $(seq 100); do [[ -s $run_dir/port ]] && break; sleep 0.05; done
  [[ -s $run_dir/port ]] || { echo "the emulator did not start" >&2; exit 1; }
  port=$(cat "$run_dir/port")
  export CLOUDFLARE_API_TOKEN=$token
  args+=(--upstream "https://localhost:$port/client/v4" --upstream-ca "$run_dir/ca.pem")
  image=$(curl -sf --cacert "$run_dir/ca.pem" -H "Authorization: Bearer $token" \
    "https://localhost:$port/client/v4/accounts/$account/images/v2?per_page=10" |
    grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)
  echo
  echo "Upstream: the in-repo Cloudflare API emulator on https://localhost:$port (no token set)."
  echo "Try (the first is a miss, the second a hit; see the Cache-Status header):"
  echo "  curl -si http://127.0.0.1:8080/client/v4/accounts/$account/images/v1/$image"
  echo "  curl -s http://127.0.0.1:9090/metrics | grep imagegate_"
  echo
else
  echo
  echo "Upstream: api.cloudflare.com with the token from CLOUDFLARE_API_TOKEN."
  echo "Try:"
  echo "  curl -si http://127.0.0.1:8080/client/v4/accounts/<account id>/images/v1/<image id>"
  echo "  curl -s http://127.0.0.1:9090/metrics | grep imagegate_"
  echo
fi

"$bin" "${args[@]}" "$@"
