"""The guarded job transitions the API and the worker share: of two racing writers exactly one wins."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from service.core.db import Database
from service.core.jobs import repository
from service.core.jobs.lifecycle import ACTIVE, ALLOWED, TERMINAL, JobStatus, check_transition
from service.core.jobs.models import Job
from tests.helpers.api import Team, create_job


def _job(database: Database, job_id: str) -> Job:
    with database.transaction() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_only_one_of_two_workers_claims_a_job(client: TestClient, team: Team, database: Database):
    job_id = create_job(client, team)["id"]
    with database.transaction() as session:
        assert repository.claim(session, job_id, "worker-a") is True
    with database.transaction() as session:
        assert repository.claim(session, job_id, "worker-b") is False
    job = _job(database, job_id)
    assert (job.status, job.worker_id, job.attempt, job.phase) == (
        "running",
        "worker-a",
        1,
        "loading",
    )
    assert job.started_at is not None and job.heartbeat_at is not None


def test_concurrent_claims_have_one_winner(client: TestClient, team: Team, database: Database):
    job_id = create_job(client, team)["id"]
    wins: list[str] = []
    barrier = threading.Barrier(6)

    def claim(worker: str) -> None:
        barrier.wait()
        with database.transaction() as session:
            if repository.claim(session, job_id, worker):
                wins.append(worker)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1
    assert _job(database, job_id).worker_id == wins[0]


def test_a_cancelled_job_is_never_claimed(client: TestClient, team: Team, database: Database):
    job = create_job(client, team)
    client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=team.headers)
    with database.transaction() as session:
        assert repository.claim(session, job["id"], "worker-a") is False
    assert _job(database, job["id"]).status == "cancelled"


def test_heartbeat_and_phase_belong_to_the_holder(
    client: TestClient, team: Team, database: Database
):
    job_id = create_job(client, team)["id"]
    with database.transaction() as session:
        assert repository.claim(session, job_id, "worker-a")
        assert repository.heartbeat(session, job_id, "worker-a")
        assert not repository.heartbeat(session, job_id, "worker-b")
        assert repository.record_progress(session, job_id, "worker-a", trained_tokens=123)
        assert not repository.record_progress(session, job_id, "worker-b", trained_tokens=9)
        assert repository.set_phase(session, job_id, "worker-a", "training")
        assert not repository.set_phase(session, job_id, "worker-b", "exporting")
    job = _job(database, job_id)
    assert (job.phase, job.trained_tokens) == ("training", 123)
    with pytest.raises(ValueError), database.transaction() as session:
        repository.set_phase(session, job_id, "worker-a", "dreaming")


def test_requeue_then_reclaim_counts_attempts(client: TestClient, team: Team, database: Database):
    job_id = create_job(client, team)["id"]
    with database.transaction() as session:
        assert repository.claim(session, job_id, "worker-a")
        # The reconciler hands back a job whose worker went silent.
        assert repository.transition(
            session, job_id, expected=JobStatus.RUNNING, to=JobStatus.QUEUED, worker_id=None
        )
        assert repository.claim(session, job_id, "worker-b")
    job = _job(database, job_id)
    assert (job.worker_id, job.attempt) == ("worker-b", 2)


def test_finishing_stamps_finished_at_and_results(
    client: TestClient, team: Team, database: Database
):
    job_id = create_job(client, team)["id"]
    with database.transaction() as session:
        repository.claim(session, job_id, "worker-a")
        assert repository.transition(
            session,
            job_id,
            expected=JobStatus.RUNNING,
            to=JobStatus.FAILED,
            error={"code": "user_bad_data", "message": "no usable row", "param": "training_file"},
        )
        # A second writer with a stale view changes nothing.
        assert not repository.transition(
            session, job_id, expected=JobStatus.RUNNING, to=JobStatus.SUCCEEDED
        )
    body = client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=team.headers).json()
    assert body["status"] == "failed" and body["finished_at"] is not None
    assert body["error"] == {
        "code": "user_bad_data",
        "message": "no usable row",
        "param": "training_file",
    }


def test_the_lifecycle_table():
    for status in TERMINAL:
        assert ALLOWED[status] == frozenset()
    assert JobStatus.CANCELLING in ACTIVE
    check_transition("queued", "running")
    with pytest.raises(ValueError):
        check_transition("succeeded", "running")
    with pytest.raises(ValueError):
        check_transition("queued", "succeeded")


def test_an_impossible_transition_is_refused_before_any_sql(database: Database):
    with pytest.raises(ValueError), database.transaction() as session:
        repository.transition(
            session, "ftjob-x", expected=JobStatus.SUCCEEDED, to=JobStatus.RUNNING
        )


def test_listing_for_the_scheduler(client: TestClient, team: Team, database: Database):
    low = create_job(client, team, priority=0)["id"]
    high = create_job(client, team, priority=5)["id"]
    with database.transaction() as session:
        queued = [j.id for j in repository.jobs_in_status(session, "queued") if j.id in (low, high)]
        assert queued == [high, low]
        repository.claim(session, high, "w")
        assert repository.running_count_for_team(session, team.id) == 1
        assert repository.count_by_status(session)["running"] >= 1


def test_claims_for_one_team_are_counted_in_turn(
    client: TestClient, team: Team, database: Database
):
    """Worker b counts the team's running jobs only after worker a's claim commits: with a limit
    of one, b must not start a second job (the team's row is locked while a claim is counted)."""
    if not database.url.startswith("postgresql"):
        pytest.skip("SQLite serialises writers; the embedded mode runs a single worker")
    from sqlalchemy import update

    from service.core.teams.models import Team as TeamRow
    from worker.scheduling import may_start

    first, second = create_job(client, team)["id"], create_job(client, team)["id"]
    with database.transaction() as session:
        session.execute(update(TeamRow).where(TeamRow.id == team.id).values(max_running_jobs=1))
    a_claimed, release = threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def worker_a() -> None:
        with database.transaction() as session:
            seen["a"] = may_start(session, session.get(Job, first))
            assert repository.claim(session, first, "worker-a")
            a_claimed.set()
            release.wait(10)  # the claim is not committed yet

    def worker_b() -> None:
        a_claimed.wait(10)
        with database.transaction() as session:
            seen["b"] = may_start(session, session.get(Job, second))

    threads = [threading.Thread(target=worker_a), threading.Thread(target=worker_b)]
    for thread in threads:
        thread.start()
    a_claimed.wait(10)
    threads[1].join(0.5)
    b_waited = threads[1].is_alive()
    release.set()
    for thread in threads:
        thread.join(10)
    assert b_waited, "b should wait for a's transaction"
    assert seen == {"a": True, "b": False}
    with database.transaction() as session:  # leave the team as other tests expect it
        session.execute(update(TeamRow).where(TeamRow.id == team.id).values(max_running_jobs=None))
        repository.transition(session, first, expected=JobStatus.RUNNING, to=JobStatus.CANCELLED)
