"""The client commands against the real app, served by uvicorn on loopback (SQLite, filesystem broker)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from service.api.app import create_app
from service.core.db import Database
from service.core.migrate import upgrade
from service.core.settings import Settings
from tests.helpers.api import ADMIN, ADMIN_TOKEN, Team
from tests.helpers.live_server import serve


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    data_dir = tmp_path_factory.mktemp("gora-cli")
    url = f"sqlite:///{data_dir / 'gora.db'}"
    upgrade(url)
    settings = Settings(
        data_dir=data_dir,
        database_url=url,
        broker_url="filesystem://",  # no worker consumes it: jobs stay queued
        admin_token=ADMIN_TOKEN,  # type: ignore[arg-type]
        pools=["cpu"],
        default_pool="cpu",
    )
    return create_app(settings)


@pytest.fixture(scope="session")
def database(app: FastAPI) -> Iterator[Database]:
    database = Database(app.state.gora.runtime.settings.database_url)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def live_url(app: FastAPI) -> Iterator[str]:
    with serve(app) as url:
        yield url


@pytest.fixture
def team(live_url: str) -> Team:
    with httpx.Client(base_url=live_url, headers=ADMIN) as http:
        team = http.post("/v1/teams", json={"name": f"cli-{secrets.token_hex(4)}"}).json()
        key = http.post(f"/v1/teams/{team['id']}/api_keys").json()
    return Team(id=team["id"], key=key["key"], key_id=key["id"])


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def env(live_url: str, team: Team) -> dict[str, str]:
    return {"GORA_API_URL": live_url, "GORA_API_KEY": team.key, "GORA_ADMIN_TOKEN": ""}
