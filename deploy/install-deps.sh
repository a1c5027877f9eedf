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
)

if [[ ${1:-} == --with-test-tools ]]; then
  # Fuzzing with libFuzzer needs clang and its runtime; formatting checks need clang-format.
  packages+=(clang libclang-rt-14-dev clang-format)
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
