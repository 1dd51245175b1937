#!/usr/bin/env bash
# Builds the team stack's images on a machine that reaches no image registry (this project's CI and
# development machines): Debian by debootstrap, Python, PostgreSQL and Redis on it from Debian's
# packages, then the API and worker images from the project's own Dockerfiles with that base.
#
#   docker/local/build.sh             # builds what is missing
#   docker/local/build.sh --rebuild   # the API and worker images again (after a code change)
#   GORA_IMAGE_TAG=x docker/local/build.sh   # tags them gora-api:x, gora-worker:x (default latest)
#
# Then run the stack with the images it names: docker compose --env-file docker/local/stack.env ...
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/docker/local"
WORK=${GORA_LOCAL_WORK:-$ROOT/.docker-local}
REBUILD=${1:-}
TAG=${GORA_IMAGE_TAG:-latest}
mkdir -p "$WORK"

# BuildKit, which reads the per-Dockerfile .dockerignore files: buildx where a team has it, else
# Debian's docker.io client, which has BuildKit built in (docker 28's client needs the buildx plugin).
build() {
    if docker buildx version >/dev/null 2>&1; then
        docker buildx build --load "$@"
    else
        DOCKER_BUILDKIT=1 /usr/bin/docker build "$@"
    fi
}

have() { docker image inspect "$1" >/dev/null 2>&1; }

pip_setting() {  # a value of this host's pip configuration (cert, find-links), or nothing
    python3 -m pip config list 2>/dev/null | sed -n "s/^[a-z]*\.$1='\(.*\)'$/\1/p" | head -n 1
}

if ! have gora-local/debian:bookworm; then
    echo "== Debian bookworm by debootstrap"
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase bookworm "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log"
    tar -C "$WORK/rootfs" -c . | docker import - gora-local/debian:bookworm >/dev/null
    rm -rf "$WORK/rootfs"
fi

if ! have gora-local/python:3.11; then
    echo "== Python 3.11 (Debian's), trusting this host's CA bundle"
    mkdir -p "$WORK/python"
    cp "$(pip_setting cert || true)" "$WORK/python/host-ca.crt" 2>/dev/null \
        || cp /etc/ssl/certs/ca-certificates.crt "$WORK/python/host-ca.crt"
    cp "$HERE/Dockerfile.python" "$WORK/python/Dockerfile"
    build -q -t gora-local/python:3.11 "$WORK/python" >/dev/null
fi

TORCH=$(sed -n 's/^ *"torch==\([0-9.]*\)",.*/\1/p' "$ROOT/pyproject.toml")
if ! have "gora-local/python-torch:$TORCH"; then
    echo "== Python with this host's CPU build of torch $TORCH"
    wheel=$(ls "$(pip_setting find-links)"/torch-"$TORCH"+cpu-*.whl 2>/dev/null | head -n 1 || true)
    [ -n "$wheel" ] || { echo "no torch-$TORCH+cpu wheel in pip's find-links" >&2; exit 1; }
    mkdir -p "$WORK/python-torch/wheels"
    cp "$wheel" "$WORK/python-torch/wheels/"
    cp "$HERE/Dockerfile.python-torch" "$WORK/python-torch/Dockerfile"
    build -q -t "gora-local/python-torch:$TORCH" "$WORK/python-torch" >/dev/null
fi

for service in postgres redis; do
    if ! have "gora-local/$service:bookworm"; then
        echo "== $service (Debian's)"
        build -q -t "gora-local/$service:bookworm" -f "$HERE/Dockerfile.$service" "$HERE" >/dev/null
    fi
done

for image in api worker; do
    if [ "$REBUILD" = "--rebuild" ] || ! have "gora-$image:$TAG"; then
        base=gora-local/python:3.11
        [ "$image" = worker ] && base="gora-local/python-torch:$TORCH"
        echo "== gora-$image from docker/Dockerfile.$image on $base"
        build -q --network host --build-arg "BASE_IMAGE=$base" -t "gora-$image:$TAG" \
            -f "$ROOT/docker/Dockerfile.$image" "$ROOT" >/dev/null
    fi
done
docker images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E '^gora' | sort
