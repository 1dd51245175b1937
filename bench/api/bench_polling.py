"""Polling benchmark: 64 concurrent clients on loopback polling ``GET /v1/fine_tuning/jobs/{id}`` and, in
the same run against the same server, ``GET /healthz``. Prints requests/s and p50/p99 for both and the
ratio. Targets: job-status throughput >= 0.5 x /healthz, job-status p99 < 50 ms.

The server is ``uvicorn service.api.app:create_app`` in its own process against a fresh PostgreSQL
database (dropped afterwards); the clients are keep-alive HTTP/1.1 connections driven by asyncio in
this process. Phases alternate (healthz, job, healthz, job, ...) so that a change in machine load
affects both endpoints alike.

    .venv/bin/python bench/api/bench_polling.py [--clients 64] [--seconds 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg

PG_SERVER = "host=127.0.0.1 port=5432 user=postgres"
ADMIN_TOKEN = "bench-admin"
BENCH_REDIS = "redis://127.0.0.1:6379/14"
REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    name = f"gora_bench_{secrets.token_hex(4)}"
    with psycopg.connect(f"{PG_SERVER} dbname=test", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(f"{PG_SERVER} dbname=test", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def server(database_url: str, port: int, workers: int, data_dir: str) -> Iterator[str]:
    env = {
        **os.environ,
        "GORA_DATABASE_URL": database_url,
        "GORA_BROKER_URL": BENCH_REDIS,
        "GORA_ADMIN_TOKEN": ADMIN_TOKEN,
        "GORA_DATA_DIR": data_dir,
        "GORA_POOLS": "cpu,bench",
        "GORA_DEFAULT_POOL": "bench",
    }
    subprocess.run(
        [sys.executable, "-m", "cli.main", "db", "upgrade"], env=env, check=True, cwd=REPO
    )
    command = [
        sys.executable, "-m", "uvicorn", "service.api.app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def call(base: str, method: str, path: str, token: str, body: bytes | None = None,
         content_type: str = "application/json") -> dict:  # fmt: skip
    request = urllib.request.Request(f"{base}{path}", data=body, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", content_type)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def create_polled_job(base: str) -> tuple[str, str]:
    """A team, its key, a training file and one queued job: (job id, key)."""
    team = call(base, "POST", "/v1/teams", ADMIN_TOKEN, json.dumps({"name": "bench"}).encode())
    key = call(base, "POST", f"/v1/teams/{team['id']}/api_keys", ADMIN_TOKEN, b"{}")["key"]
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    ]
    boundary = "benchboundary"
    payload = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="t.jsonl"\r\n\r\n'
        + "\n".join(json.dumps(r) for r in rows * 4)
        + f"\r\n--{boundary}--\r\n"
    ).encode()
    uploaded = call(
        base, "POST", "/v1/files", key, payload, f"multipart/form-data; boundary={boundary}"
    )
    spec = {"model": "smollm2-135m", "training_file": uploaded["id"], "metadata": {"bench": "1"}}
    job = call(base, "POST", "/v1/fine_tuning/jobs", key, json.dumps(spec).encode())
    return job["id"], key


async def _client(port: int, request: bytes, stop_at: float, latencies: list[float]) -> int:
    """One keep-alive connection sending ``request`` back to back until ``stop_at``; counts errors."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
    finally:
        writer.close()
    return errors


async def load(port: int, path: str, token: str, clients: int, seconds: float) -> dict:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    latencies: list[float] = []
    started = time.perf_counter()
    stop_at = started + seconds
    errors = await asyncio.gather(
        *(_client(port, request, stop_at, latencies) for _ in range(clients))
    )
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "seconds": elapsed, "errors": sum(errors),
            "latencies": latencies}  # fmt: skip


def summary(runs: list[dict]) -> dict:
    latencies = sorted(x for run in runs for x in run["latencies"])
    total = sum(run["requests"] for run in runs)
    seconds = sum(run["seconds"] for run in runs)
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "requests": total,
        "errors": sum(run["errors"] for run in runs),
        "rps": total / seconds,
        "p50_ms": quantiles[49] * 1000,
        "p99_ms": quantiles[98] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one phase")
    parser.add_argument("--rounds", type=int, default=2, help="healthz/job phase pairs")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()
    port = free_port()
    with (
        fresh_database() as url,
        tempfile.TemporaryDirectory() as data_dir,
        server(url, port, args.workers, data_dir) as base,
    ):
        job_id, key = create_polled_job(base)
        job_path = f"/v1/fine_tuning/jobs/{job_id}"
        for path in ("/healthz", job_path):  # warm-up: connections, caches
            asyncio.run(load(port, path, key, args.clients, 1.0))
        runs: dict[str, list[dict]] = {"healthz": [], "job": []}
        for _ in range(args.rounds):
            runs["healthz"].append(
                asyncio.run(load(port, "/healthz", key, args.clients, args.seconds))
            )
            runs["job"].append(asyncio.run(load(port, job_path, key, args.clients, args.seconds)))
    _forget_queued_message()
    report(args, summary(runs["healthz"]), summary(runs["job"]))


def _forget_queued_message() -> None:
    """The polled job's message (no worker consumes it) and kombu's bindings for its queue."""
    import redis

    client = redis.Redis.from_url(BENCH_REDIS)
    for key in client.scan_iter("*gpu.bench*"):
        client.delete(key)
    client.close()


def report(args: argparse.Namespace, healthz: dict, job: dict) -> None:
    ratio = job["rps"] / healthz["rps"]
    print(f"{args.clients} clients, {args.rounds} x {args.seconds:g} s per endpoint, "
          f"{args.workers} uvicorn worker(s), PostgreSQL, loopback")  # fmt: skip
    print(f"{'endpoint':<34}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name, row in (("GET /healthz", healthz), ("GET /v1/fine_tuning/jobs/{id}", job)):
        print(f"{name:<34}{row['rps']:>10.0f}{row['p50_ms']:>10.1f}{row['p99_ms']:>10.1f}"
              f"{row['errors']:>8}")  # fmt: skip
    print(f"job-status / healthz throughput: {ratio:.2f} (target >= 0.5); "
          f"job-status p99 {job['p99_ms']:.1f} ms (target < 50)")  # fmt: skip
    print(json.dumps({"healthz": healthz, "job": job, "ratio": ratio}))


if __name__ == "__main__":
    main()
