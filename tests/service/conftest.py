"""Service tests run against both databases: an embedded SQLite file and a real PostgreSQL.

PostgreSQL gets a fresh database per test session (dropped at the end), Redis a test db number and
queue names unique to the session, so engineers running the suite in parallel never collide.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.core.db import Database
from service.core.migrate import upgrade
from service.core.settings import Settings
from tests.live_server import serve
from tests.service.support import Team

SESSION = secrets.token_hex(4)
TEST_POOL = f"t{SESSION}"  # queue gpu.<pool>: no other session sends there
ADMIN_TOKEN = "test-admin-token"
REDIS_URL = "redis://127.0.0.1:6379/13"
PG_SERVER = "host=127.0.0.1 port=5432 user=postgres"
BACKENDS = ["sqlite", "postgresql"]


@dataclass
class Backend:
    name: str
    database_url: str
    data_dir: Path


def postgres_database(name: str) -> Iterator[str]:
    """Creates database ``name`` on the local server for the block, then drops it."""
    with psycopg.connect(f"{PG_SERVER} dbname=test", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(f"{PG_SERVER} dbname=test", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_settings(data_dir: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "broker_url": REDIS_URL,
        "admin_token": ADMIN_TOKEN,
        "pools": ["cpu", TEST_POOL],
        "default_pool": TEST_POOL,
        "max_upload_bytes": 64 * 1024,
        "event_poll_interval_s": 0.05,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp(f"gora-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{data_dir / 'gora.db'}"
        upgrade(url)
        yield Backend("sqlite", url, data_dir)
        return
    databases = postgres_database(f"gora_service_{SESSION}")
    url = next(databases)
    upgrade(url)
    yield Backend("postgresql", url, data_dir)
    databases.close()  # runs the generator's finally: DROP DATABASE


@pytest.fixture(scope="session")
def app(backend: Backend) -> FastAPI:
    return create_app(make_settings(backend.data_dir, backend.database_url))


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
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def new_team(client: TestClient, admin: dict[str, str]) -> Team:
    name = f"team-{secrets.token_hex(6)}"
    team = client.post("/v1/teams", json={"name": name}, headers=admin)
    assert team.status_code == 200, team.text
    key = client.post(f"/v1/teams/{team.json()['id']}/api_keys", headers=admin)
    assert key.status_code == 200, key.text
    return Team(id=team.json()["id"], key=key.json()["key"], key_id=key.json()["id"])


@pytest.fixture
def team(client: TestClient, admin: dict[str, str]) -> Team:
    return new_team(client, admin)


@pytest.fixture
def other_team(client: TestClient, admin: dict[str, str]) -> Team:
    return new_team(client, admin)


@pytest.fixture(scope="session", autouse=True)
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    # This session's queue and kombu's binding sets for it: no worker consumes them.
    for key in client.scan_iter(f"*{TEST_POOL}*"):
        client.delete(key)
    client.close()


@pytest.fixture(scope="session")
def live_url(backend: Backend) -> Iterator[str]:
    """An app over the same database served by uvicorn on loopback, for clients that speak real
    HTTP. An app of its own: an app's connections belong to the event loop that serves it."""
    with serve(create_app(make_settings(backend.data_dir, backend.database_url))) as url:
        yield url
