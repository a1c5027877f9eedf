#!/usr/bin/env bash
# Installs, by Debian package name, everything imagegate needs to build, run and test.
# Debian 12 (bookworm). Run as root, or as a user with sudo.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build ccache pkg-config
  # libraries (DESIGN.md "Decisions already taken")
  libboost1.81-dev libboost-test1.81-dev libssl-dev libsimdjson-dev libspdlog-dev
  libtomlplusplus-dev libhiredis-dev
  # the fleet tier's shared store: the fleet example in deploy/ runs it, the Redis tests
  # start it on a free loopback port
  redis-server
  # the quickstart's curl lines and the system CA store for the real API
  curl ca-certificates
  # cpack -G DEB derives the package's Depends with dpkg-shlibdeps
  dpkg-dev
)

test_tools=0
deploy_tools=0
for arg in "$@"; do
  case $arg in
    --with-test-tools) test_tools=1 deploy_tools=1 ;;
    --with-deploy-tools) deploy_tools=1 ;;
    *) echo "usage: $0 [--with-test-tools] [--with-deploy-tools]" >&2; exit 2 ;;
  esac
done
if ((test_tools)); then
  # Fuzzing with libFuzzer needs clang and its runtime; formatting checks need clang-format.
  packages+=(clang libclang-rt-14-dev clang-format)
fi
if ((deploy_tools)); then
  # The deploy tests (tests/deploy) and the SDK test (tests/sdk): systemd-analyze, Debian's
  # python3 with YAML, the package test's adduser, node for the Kubernetes schema validator
  # and the SDK, and promtool (Debian ships it in the prometheus package) for the alert rules.
  # On a machine where systemd runs, that package also enables a Prometheus server on port
  # 9090, imagegate's default admin port: stop it with `systemctl disable --now prometheus`
  # if it is in the way; the tests never use it.
  packages+=(systemd python3 python3-yaml adduser prometheus)
  command -v npm >/dev/null || packages+=(nodejs npm)
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  sudo_cmd=(sudo)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "imagegate: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends \
    "${missing[@]}"
fi

if ((deploy_tools)); then
  # Node packages of the tests, exactly as each package-lock.json pins them (into the source
  # tree's node_modules, ignored by git), each only when its lock file changed:
  # tests/deploy/k8s, the Kubernetes schema validator; tests/sdk, the official Cloudflare
  # TypeScript SDK and the TypeScript compiler of the SDK test.
  root="$(cd "$(dirname "$0")/.." && pwd)"
  for dir in tests/deploy/k8s tests/sdk; do
    if ! cmp -s "$root/$dir/package-lock.json" "$root/$dir/node_modules/.imagegate-lock"; then
      echo "imagegate: installing the node packages of $dir (npm ci)"
      (cd "$root/$dir" && npm ci --no-audit --no-fund --loglevel=error)
      cp "$root/$dir/package-lock.json" "$root/$dir/node_modules/.imagegate-lock"
    fi
  done
fi
