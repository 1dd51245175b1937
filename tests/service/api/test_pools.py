"""``GET /v1/pools``: the workers online per pool (by their presence stamps), their GPUs and last
heartbeat, and the caller's team's running and queued jobs there against its limit."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from service.core.clock import utcnow
from service.core.db import Database
from service.core.jobs import repository as jobs
from service.core.workers import repository
from service.core.workers.models import Worker
from tests.helpers.api import TEST_POOL, Team, create_job


def test_pools_show_workers_online_and_the_teams_jobs(
    client: TestClient, team: Team, other_team: Team, database: Database
):
    with database.transaction() as session:
        repository.seen(session, "host-a/11", "host-a", TEST_POOL, ["0", "1"])
        repository.seen(session, "host-a/11", "host-a", TEST_POOL, ["0", "1"])  # a second beat
        repository.seen(session, "host-b/12", "host-b", TEST_POOL, [])
        session.get(Worker, "host-b/12").last_seen_at = utcnow() - timedelta(minutes=5)
    queued = create_job(client, team)
    running = create_job(client, team)
    create_job(client, other_team)  # another team's: not counted for this one
    with database.transaction() as session:
        assert jobs.claim(session, running["id"], "w1")

    body = client.get("/v1/pools", headers=team.headers).json()
    pools = {p["id"]: p for p in body["data"]}
    assert set(pools) == {"cpu", TEST_POOL}
    mine = pools[TEST_POOL]
    online = [w for w in mine["workers"] if w["id"].startswith("host-")]
    assert [(w["id"], w["gpus"]) for w in online] == [("host-a/11", ["0", "1"])]  # b is stale
    assert online[0]["last_heartbeat_at"] >= online[0]["started_at"]
    assert mine["team"] == {"running": 1, "queued": 1, "max_running_jobs": None}
    assert queued["id"] != running["id"]
    theirs = client.get("/v1/pools", headers=other_team.headers).json()["data"]
    assert {p["id"]: p["team"] for p in theirs}[TEST_POOL]["queued"] == 1
    with database.transaction() as session:
        repository.gone(session, "host-a/11")
        repository.gone(session, "host-b/12")


def test_rows_of_workers_gone_a_day_are_forgotten(database: Database):
    with database.transaction() as session:
        repository.seen(session, "host-c/13", "host-c", TEST_POOL, [])
        repository.seen(session, "host-d/14", "host-d", TEST_POOL, [])
        session.get(Worker, "host-c/13").last_seen_at = utcnow() - timedelta(days=1, minutes=1)
        session.get(Worker, "host-d/14").last_seen_at = utcnow() - timedelta(hours=23)
    with database.transaction() as session:
        repository.forget_the_long_gone(session)
    with database.transaction() as session:
        assert session.get(Worker, "host-c/13") is None
        assert session.get(Worker, "host-d/14") is not None  # offline, not yet forgotten
        repository.gone(session, "host-d/14")
