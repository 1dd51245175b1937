#!/bin/sh
# `redis-server [options]` reachable on the compose network, as the official image runs it.
set -eu
if [ "${1:-}" = "redis-server" ]; then
    shift
    exec redis-server --bind 0.0.0.0 --protected-mode no --dir /data "$@"
fi
exec "$@"
