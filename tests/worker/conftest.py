"""Worker tests: real Celery worker processes (``gora worker``), Redis, PostgreSQL, the API in-process.

PostgreSQL gets a fresh database for the session, Redis db 14 with a pool (queue) name unique to the
session, and every worker process runs with one torch thread (the machine is shared; two threads
under contention make CPU training ~10x slower). SmolLM2's GGUF is converted once into a cache
shared by the test process and every job's child process.
"""

from __future__ import annotations

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
from tests.helpers.api import ADMIN, ADMIN_TOKEN, Team, new_team
from tests.helpers.jobs import POOL, REDIS_URL, SESSION, SPARE_POOL, WorkerProcess, worker_env
from tests.helpers.models import smollm_dir
from tests.helpers.postgres import postgres_database


@dataclass
class Stack:
    settings: Settings
    client: TestClient
    database: Database
    env: dict[str, str]
    admin: dict[str, str]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    smollm_dir()  # convert once, before any job's child would
    data_dir = tmp_path_factory.mktemp("gora-worker")
    with postgres_database(f"gora_worker_{SESSION}") as url:
        upgrade(url)
        yield from _stack(data_dir, url)
    broker = redis.Redis.from_url(REDIS_URL)
    for pool in (POOL, SPARE_POOL):
        for key in broker.scan_iter(f"*{pool}*"):
            broker.delete(key)
    broker.close()


def _stack(data_dir: Path, url: str) -> Iterator[Stack]:
    settings = Settings(
        data_dir=data_dir,
        database_url=url,
        broker_url=REDIS_URL,
        admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
        pools=["cpu", POOL, SPARE_POOL],
        default_pool=POOL,
    )
    with TestClient(create_app(settings)) as client:
        database = Database(url)
        yield Stack(settings, client, database, worker_env(settings), ADMIN)
        database.dispose()


@pytest.fixture
def team(stack: Stack) -> Team:
    return new_team(stack.client, stack.admin)


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
