"""With PostgreSQL really stopped, every endpoint that needs it answers 503 with a code and
Retry-After (it answered 500 internal_error), and the service recovers when the database is back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.core.migrate import upgrade
from tests.helpers.api import ADMIN, CHAT, Backend, Team, create_job, jsonl, make_settings, new_team
from tests.helpers.postgres import PrivatePostgres


# The key looked up each time (the lookup meets the dead database), or cached (the route does).
@pytest.fixture(params=[0, 600], ids=["key-lookup", "key-cached"])
def down(
    request: pytest.FixtureRequest, private_postgres: PrivatePostgres, tmp_path
) -> Iterator[tuple[TestClient, Team, dict]]:
    """A client, a team and one job of it, then the database stopped."""
    upgrade(private_postgres.url)
    backend = Backend("postgresql", private_postgres.url, tmp_path)
    settings = make_settings(backend, broker_url="filesystem://", auth_cache_ttl_s=request.param)
    with TestClient(create_app(settings)) as client:
        team = new_team(client)
        job = create_job(client, team)
        private_postgres.stop()
        yield client, team, job


def _calls(team: Team, job: dict) -> list[tuple[str, str, dict]]:
    jobs = "/v1/fine_tuning/jobs"
    upload = {
        "files": {"file": ("t.jsonl", jsonl(CHAT), "application/jsonl")},
        "data": {"purpose": "fine-tune"},
    }
    mine = {"headers": team.headers}
    return [
        ("GET", f"{jobs}/{job['id']}", mine),
        ("GET", jobs, mine),
        ("POST", jobs, {**mine, "json": {"model": "smollm2-135m", "training_file": "file-x"}}),
        ("POST", f"{jobs}/{job['id']}/cancel", mine),
        ("GET", f"{jobs}/{job['id']}/events", mine),
        ("GET", f"{jobs}/{job['id']}/events/stream", mine),
        ("GET", f"{jobs}/{job['id']}/checkpoints", mine),
        ("GET", f"{jobs}/{job['id']}/allocation", mine),
        ("GET", "/v1/files", mine),
        ("POST", "/v1/files", {**mine, **upload}),
        ("POST", "/v1/teams", {"headers": ADMIN, "json": {"name": "later"}}),
        ("GET", "/metrics", {}),
    ]


def test_every_database_endpoint_is_a_503_while_the_database_is_down(down, private_postgres):
    client, team, job = down
    # The model list reads only the key, so it needs the database only when the key is not cached.
    models = client.get("/v1/models", headers=team.headers)
    cached = client.app.state.gora.runtime.settings.auth_cache_ttl_s > 0  # type: ignore[attr-defined]
    assert models.status_code == (200 if cached else 503), models.text
    for method, path, options in _calls(team, job):
        response = client.request(method, path, **options)
        assert response.status_code == 503, (method, path, response.text)
        error = response.json()["error"]
        assert error["code"] == "database_unavailable" and error["type"] == "server_error"
        assert response.headers["retry-after"].isdigit(), (method, path)
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200  # the process itself is fine
    private_postgres.start()
    deadline = time.monotonic() + 20
    while client.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=team.headers).status_code != 200:
        assert time.monotonic() < deadline, "the service did not recover"
        time.sleep(0.2)
    assert client.get("/v1/files", headers=team.headers).status_code == 200
