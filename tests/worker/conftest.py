"""Worker tests: real Celery worker processes (``gora worker``), Redis, PostgreSQL, the API in-process.

PostgreSQL gets a fresh database for the session, Redis db 14 with a pool (queue) name unique to the
session, and every worker process runs with one torch thread (the machine is shared; two threads
under contention make CPU training ~10x slower). SmolLM2's GGUF is converted once into a cache
shared by the test process and every job's child process.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.core.db import Database
from service.core.migrate import upgrade
from service.core.settings import Settings
from tests.gora.bundled import session_cache_dir, smollm_dir
from tests.service.conftest import ADMIN_TOKEN, new_team, postgres_database
from tests.service.support import Team

SESSION = secrets.token_hex(4)
POOL = f"w{SESSION}"  # the shared worker's
SPARE_POOL = f"x{SESSION}"  # for tests that start and kill their own workers
REDIS_URL = "redis://127.0.0.1:6379/14"
ROOT = Path(__file__).resolve().parents[2]
GORA = str(ROOT / ".venv" / "bin" / "gora")

# Short timings so that a lost worker or a cancel shows within seconds.
FAST_WORKER_ENV = {
    "GORA_WORKER_HEARTBEAT_S": "1",
    "GORA_WORKER_CANCEL_GRACE_S": "4",
    "GORA_WORKER_STALE_AFTER_S": "6",
    "GORA_WORKER_RECONCILE_EVERY_S": "2",
    "GORA_WORKER_REQUEUE_AFTER_S": "120",
    "GORA_WORKER_CANCEL_POLL_S": "0.2",
}


@dataclass
class Stack:
    settings: Settings
    client: TestClient
    database: Database
    env: dict[str, str]
    admin: dict[str, str]


def worker_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GORA_DATA_DIR=str(settings.data_dir),
        GORA_DATABASE_URL=settings.database_url,
        GORA_BROKER_URL=settings.broker_url,
        GORA_STORAGE_URL=settings.storage_url,
        GORA_POOLS=",".join(settings.pools),
        GORA_DEFAULT_POOL=settings.default_pool,
        GORA_CACHE_DIR=str(session_cache_dir()),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        **FAST_WORKER_ENV,
    )
    return env


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    smollm_dir()  # convert once, before any job's child would
    data_dir = tmp_path_factory.mktemp("gora-worker")
    databases = postgres_database(f"gora_worker_{SESSION}")
    url = next(databases)
    upgrade(url)
    settings = Settings(
        data_dir=data_dir,
        database_url=url,
        broker_url=REDIS_URL,
        admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
        pools=["cpu", POOL, SPARE_POOL],
        default_pool=POOL,
    )
    app = create_app(settings)
    with TestClient(app) as client:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        database = Database(url)
        yield Stack(settings, client, database, worker_env(settings), admin)
        database.dispose()
    databases.close()
    broker = redis.Redis.from_url(REDIS_URL)
    for pool in (POOL, SPARE_POOL):
        for key in broker.scan_iter(f"*{pool}*"):
            broker.delete(key)
    broker.close()


@pytest.fixture
def team(stack: Stack) -> Team:
    return new_team(stack.client, stack.admin)


class WorkerProcess:
    """``gora worker --pool <session pool>`` in its own process group (killed as a whole)."""

    def __init__(self, env: dict[str, str], log_path: Path, pool: str = POOL):
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [GORA, "worker", "--pool", pool, "--loglevel", "INFO"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while b" ready." not in self.log_path.read_bytes():
            assert self.process.poll() is None, self.log_path.read_text()
            assert time.monotonic() < deadline, (
                "worker did not start:\n" + self.log_path.read_text()
            )
            time.sleep(0.2)

    def kill(self) -> None:
        """Host lost: the worker and everything under it die at once."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture
def start_worker(stack: Stack, tmp_path: Path):
    started: list[WorkerProcess] = []

    def start(**env: str) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        worker = WorkerProcess({**stack.env, **env}, log_path, SPARE_POOL)
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker shared by the tests that only need jobs to run."""
    process = WorkerProcess(stack.env, tmp_path_factory.mktemp("worker") / "worker.log")
    process.wait_ready()
    yield process
    process.stop()
