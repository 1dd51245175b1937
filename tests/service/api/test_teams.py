"""Admin endpoints: teams and API keys; authentication of every team endpoint."""

from __future__ import annotations

import secrets

from fastapi.testclient import TestClient
from sqlalchemy import select

from service.core.db import Database
from service.core.teams.models import ApiKey
from tests.helpers.api import Backend, Team, assert_error, make_settings


def test_create_team_and_key(client: TestClient, admin: dict[str, str], database: Database):
    name = f"research-{secrets.token_hex(4)}"
    team = client.post("/v1/teams", json={"name": name, "max_running_jobs": 2}, headers=admin)
    assert team.status_code == 200
    assert team.json()["object"] == "team"
    assert team.json()["name"] == name
    assert team.json()["max_running_jobs"] == 2
    assert team.json()["id"].startswith("team-")

    key = client.post(f"/v1/teams/{team.json()['id']}/api_keys", json={"name": "ci"}, headers=admin)
    assert key.status_code == 200
    body = key.json()
    assert body["key"].startswith("gsk-") and body["prefix"] == body["key"][:12]
    # Only the hash is stored: the key itself appears nowhere in the database.
    with database.transaction() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.id == body["id"])).one()
        assert row.key_hash != body["key"] and len(row.key_hash) == 64
        assert body["key"] not in (row.key_hash, row.prefix, row.name)
    models = client.get("/v1/models", headers={"Authorization": f"Bearer {body['key']}"})
    assert models.status_code == 200


def test_duplicate_team_name_is_409(client: TestClient, admin: dict[str, str]):
    name = f"dup-{secrets.token_hex(4)}"
    assert client.post("/v1/teams", json={"name": name}, headers=admin).status_code == 200
    again = client.post("/v1/teams", json={"name": name}, headers=admin)
    assert_error(again, 409, "name", "team_exists")


def test_bad_team_bodies_name_the_field(client: TestClient, admin: dict[str, str]):
    assert_error(client.post("/v1/teams", json={}, headers=admin), 400, "name")
    assert_error(client.post("/v1/teams", json={"name": ""}, headers=admin), 400, "name")
    assert_error(client.post("/v1/teams", json={"name": "a\x00b"}, headers=admin), 400, "name")
    bad_limit = client.post("/v1/teams", json={"name": "x", "max_running_jobs": 0}, headers=admin)
    assert_error(bad_limit, 400, "max_running_jobs")
    assert_error(
        client.post("/v1/teams", json={"name": "x", "colour": "red"}, headers=admin), 400, "colour"
    )
    not_json = client.post(
        "/v1/teams", content=b"{", headers={**admin, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 400


def test_admin_token_is_required(client: TestClient, team: Team):
    assert_error(client.post("/v1/teams", json={"name": "x"}), 401, "Authorization")
    wrong = {"Authorization": "Bearer not-the-token"}
    assert_error(client.post("/v1/teams", json={"name": "x"}, headers=wrong), 401, "Authorization")
    # A team's API key is not an admin token.
    assert_error(
        client.post("/v1/teams", json={"name": "x"}, headers=team.headers), 401, "Authorization"
    )


def test_admin_endpoints_are_off_without_a_token(tmp_path):
    embedded = Backend("sqlite", f"sqlite:///{tmp_path / 'x.db'}", tmp_path)
    app_settings = make_settings(embedded, admin_token=None)
    from service.api.app import create_app

    with TestClient(create_app(app_settings)) as bare:
        response = bare.post("/v1/teams", json={"name": "x"}, headers={"Authorization": "Bearer a"})
    assert_error(response, 403, None, "permission_denied")


def test_key_for_unknown_team_is_404(client: TestClient, admin: dict[str, str]):
    missing = client.post("/v1/teams/team-doesnotexist/api_keys", headers=admin)
    assert_error(missing, 404, "team_id", "team_not_found")
    malformed = client.post("/v1/teams/%00/api_keys", headers=admin)
    assert_error(malformed, 404, "team_id")


def test_deleted_key_stops_working(client: TestClient, admin: dict[str, str], team: Team):
    assert client.get("/v1/files", headers=team.headers).status_code == 200
    deleted = client.delete(f"/v1/api_keys/{team.key_id}", headers=admin)
    assert deleted.status_code == 200
    assert deleted.json() == {"id": team.key_id, "object": "api_key", "deleted": True}
    assert_error(client.get("/v1/files", headers=team.headers), 401, "Authorization")
    again = client.delete(f"/v1/api_keys/{team.key_id}", headers=admin)
    assert_error(again, 404, "key_id", "api_key_not_found")


def test_team_endpoints_need_a_valid_key(client: TestClient):
    for method, path in [
        ("get", "/v1/files"),
        ("get", "/v1/fine_tuning/jobs"),
        ("post", "/v1/fine_tuning/jobs"),
        ("get", "/v1/fine_tuning/jobs/ftjob-x"),
        ("get", "/v1/models"),
    ]:
        assert_error(getattr(client, method)(path), 401, "Authorization", "invalid_api_key")
        bad = getattr(client, method)(path, headers={"Authorization": "Bearer gsk-nope"})
        assert_error(bad, 401, "Authorization", "invalid_api_key")


def test_the_admin_token_acts_for_a_team_it_names(client, team, other_team):
    from tests.helpers.api import ADMIN_TOKEN, assert_error, create_job

    job = create_job(client, team)
    create_job(client, other_team)
    teams = client.get("/v1/teams", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    assert {team.id, other_team.id} <= {t["id"] for t in teams["data"]}
    as_team = {"Authorization": f"Bearer {ADMIN_TOKEN}", "OpenAI-Organization": team.id}
    listed = client.get("/v1/fine_tuning/jobs", headers=as_team).json()["data"]
    assert [j["id"] for j in listed] == [job["id"]]  # that team's, and only that team's
    nameless = client.get(
        "/v1/fine_tuning/jobs", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert_error(nameless, 400, "OpenAI-Organization")
    unknown = {**as_team, "OpenAI-Organization": "team-nope"}
    assert_error(client.get("/v1/fine_tuning/jobs", headers=unknown), 400, "OpenAI-Organization")
    wrong = {"Authorization": "Bearer not-the-token", "OpenAI-Organization": team.id}
    assert_error(client.get("/v1/fine_tuning/jobs", headers=wrong), 401, "Authorization")
    # A team's key lists no teams.
    assert client.get("/v1/teams", headers=team.headers).status_code == 401
