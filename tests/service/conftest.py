"""Service tests run against both kinds of deployment: the embedded one (a SQLite file and the
filesystem broker: no server at all, so these run in the fast lane) and the team one (a real
PostgreSQL and Redis).

PostgreSQL gets a fresh database per test session (dropped at the end), Redis a test db number and
queue names unique to the session, so engineers running the suite in parallel never collide.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.core.db import Database
from service.core.migrate import upgrade
from tests.helpers.api import (
    ADMIN,
    REDIS_URL,
    SESSION,
    TEST_POOL,
    Backend,
    Team,
    make_settings,
    new_team,
)
from tests.helpers.live_server import serve
from tests.helpers.postgres import postgres_database

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp(f"gora-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{data_dir / 'gora.db'}"
        upgrade(url)
        yield Backend("sqlite", url, data_dir)
        return
    with postgres_database(f"gora_service_{SESSION}") as url:
        upgrade(url)
        yield Backend("postgresql", url, data_dir)


@pytest.fixture(scope="session")
def app(backend: Backend) -> Iterator[FastAPI]:
    yield create_app(make_settings(backend))
    if backend.broker_url == REDIS_URL:  # this session's queue and kombu's bindings for it
        broker = redis.Redis.from_url(REDIS_URL)
        for key in broker.scan_iter(f"*{TEST_POOL}*"):
            broker.delete(key)
        broker.close()


@pytest.fixture(scope="session")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def database(backend: Backend) -> Iterator[Database]:
    """The test's own way in (what a worker uses), to set up and check rows beside the API."""
    database = Database(backend.database_url)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def admin() -> dict[str, str]:
    return ADMIN


@pytest.fixture
def team(client: TestClient) -> Team:
    return new_team(client)


@pytest.fixture
def other_team(client: TestClient) -> Team:
    return new_team(client)


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture(scope="session")
def live_url(backend: Backend) -> Iterator[str]:
    """An app over the same database served by uvicorn on loopback, for clients that speak real
    HTTP. An app of its own: an app's connections belong to the event loop that serves it."""
    with serve(create_app(make_settings(backend))) as url:
        yield url


@pytest.fixture
def openai_client(live_url: str, team: Team) -> openai.OpenAI:
    """OpenAI's own client, unchanged, on the app served by uvicorn, with the team's key."""
    return openai.OpenAI(base_url=f"{live_url}/v1", api_key=team.key, max_retries=0, timeout=30)
