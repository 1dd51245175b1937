"""The job-status read path clients poll: async autocommit reads shared by concurrent polls
(``Coalescer``), on SQLite and PostgreSQL. Nothing may be stale, another team's job stays a 404,
and the body is exactly the ORM path's ``JobOut``."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from service.api.coalescer import Coalescer
from service.api.jobs.schemas import JobOut
from service.core.db import Database
from service.core.jobs import repository
from service.core.jobs.lifecycle import JobStatus
from tests.helpers.api import Team, assert_error, create_job

JOBS = "/v1/fine_tuning/jobs"


def test_status_is_the_orm_body_and_follows_every_write(
    client: TestClient, team: Team, database: Database
):
    job = create_job(client, team, metadata={"k": "v"}, suffix="s")

    def orm_body() -> dict:
        with database.transaction() as session:
            return json.loads(JobOut.of(repository.get(session, job["id"])).model_dump_json())

    assert client.get(f"{JOBS}/{job['id']}", headers=team.headers).json() == orm_body() == job
    with database.transaction() as session:
        assert repository.claim(session, job["id"], "worker-1")
    polled = client.get(f"{JOBS}/{job['id']}", headers=team.headers).json()
    assert polled["status"] == "running" and polled["phase"] == "loading"
    assert polled == orm_body()
    error = {"code": "user_bad_data", "message": "boom", "param": None}
    with database.transaction() as session:
        assert repository.transition(
            session, job["id"], expected=[JobStatus.RUNNING], to=JobStatus.FAILED, error=error
        )
    polled = client.get(f"{JOBS}/{job['id']}", headers=team.headers).json()
    assert polled["status"] == "failed" and polled["error"] == error
    assert polled["finished_at"] is not None
    assert polled == orm_body()


def test_concurrent_polls_over_http(
    live_url: str, client: TestClient, team: Team, other_team: Team
):
    """Many clients at once (they share reads) each get the job, and only its team does."""
    job = create_job(client, team)
    other_job = create_job(client, other_team)

    def poll(i: int) -> tuple[int, dict]:
        owner, polled = [(team, job), (other_team, other_job), (other_team, job)][i % 3]
        response = httpx.get(f"{live_url}{JOBS}/{polled['id']}", headers=owner.headers)
        return response.status_code, response.json()

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(poll, range(96)))
    for i, (status, body) in enumerate(results):
        if i % 3 == 0:
            assert (status, body) == (200, job)
        elif i % 3 == 1:
            assert (status, body) == (200, other_job)
        else:
            assert status == 404 and body["error"]["code"] == "job_not_found"
    # The revoked-key and missing-key answers are unchanged on this path.
    assert_error(client.get(f"{JOBS}/{job['id']}"), 401, "Authorization")


def test_a_lookup_never_joins_a_fetch_already_running():
    async def scenario() -> None:
        fetched: list[list[str]] = []
        release = asyncio.Event()
        version = {"value": 0}

        async def fetch(keys: list[str]) -> dict[str, int]:
            fetched.append(sorted(keys))
            seen = version["value"]
            await release.wait()
            return {key: seen for key in keys if key != "missing"}

        coalescer: Coalescer[str, int] = Coalescer(fetch, max_in_flight=1)
        first = [asyncio.create_task(coalescer.get(k)) for k in ("a", "a", "b", "missing")]
        await asyncio.sleep(0)  # the batch starts: its fetch read version 0
        await asyncio.sleep(0)
        version["value"] = 1  # a write after those lookups, before the next ones
        later = [asyncio.create_task(coalescer.get(k)) for k in ("a", "b")]
        await asyncio.sleep(0)
        release.set()
        assert await asyncio.gather(*first) == [0, 0, 0, None]
        assert await asyncio.gather(*later) == [1, 1]  # their own fetch, started after the write
        assert fetched == [["a", "b", "missing"], ["a", "b"]]

    asyncio.run(scenario())


def test_a_failed_fetch_fails_its_lookups_only():
    async def scenario() -> None:
        calls = {"n": 0}

        async def fetch(keys: list[str]) -> dict[str, str]:
            calls["n"] += 1
            if calls["n"] == 1:
                raise ConnectionError("database went away")
            return {key: key.upper() for key in keys}

        coalescer: Coalescer[str, str] = Coalescer(fetch)
        results = await asyncio.gather(
            coalescer.get("x"), coalescer.get("y"), return_exceptions=True
        )
        assert all(isinstance(r, ConnectionError) for r in results)
        assert await coalescer.get("x") == "X"

    asyncio.run(scenario())


def test_a_cancelled_poll_does_not_cancel_the_others():
    async def scenario() -> None:
        release = asyncio.Event()

        async def fetch(keys: list[str]) -> dict[str, str]:
            await release.wait()
            return dict.fromkeys(keys, "ok")

        coalescer: Coalescer[str, str] = Coalescer(fetch)
        gone = asyncio.create_task(coalescer.get("k"))
        stays = asyncio.create_task(coalescer.get("k"))
        await asyncio.sleep(0)
        gone.cancel()
        release.set()
        assert await stays == "ok"
        with pytest.raises(asyncio.CancelledError):
            await gone

    asyncio.run(scenario())
