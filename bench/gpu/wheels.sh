#!/usr/bin/env bash
# The wheels the GPU check needs beside what the device machine has (torch, transformers, PEFT,
# accelerate, fsspec, httpx, pillow, typer, rich, pyyaml, prometheus-client are there): the service's
# API, database, queue and settings packages, for the device's Python 3.12, at the versions of this
# checkout's .venv. Into .whl/ (ignored by git: .git/info/exclude), carried by the device call.
#   bash bench/gpu/wheels.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
PACKAGES="fastapi starlette uvicorn pydantic pydantic_core pydantic-settings python-dotenv
annotated-types annotated-doc typing-inspection sqlalchemy greenlet aiosqlite alembic mako celery
kombu billiard vine amqp click-didyoumean click-repl click-plugins prompt_toolkit wcwidth tzlocal
python-multipart redis"
pins=()
for name in $PACKAGES; do
    version=$(.venv/bin/pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
    [ -n "$version" ] || { echo "$name is not in .venv" >&2; exit 1; }
    pins+=("$name==$version")
done
rm -rf .whl && mkdir -p .whl
platforms=()
for n in 17 24 27 28 31 34; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" --platform manylinux2014_x86_64 --platform any -d .whl "${pins[@]}"
ls .whl | wc -l
du -sh .whl
