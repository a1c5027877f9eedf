#!/bin/bash
# The container's HEALTHCHECK: GET /healthz on the admin listener, healthy on a 200 within 2 s.
# bash's /dev/tcp instead of curl or wget, which the slim runtime image does not have.
#   healthcheck.sh [HOST:PORT]   (default 127.0.0.1:9090, the image's admin port)
set -u
address=${1:-127.0.0.1:9090}
host=${address%:*}
port=${address##*:}
exec 3<>"/dev/tcp/$host/$port" || exit 1
# coreutils' printf, not the builtin: bash writes builtin output line by line, so the request
# would leave in four segments; one write sends the head whole.
/usr/bin/printf 'GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3 ||
    exit 1
IFS= read -r -t 2 status <&3 || exit 1
[[ $status == "HTTP/1.1 200 "* ]]
