"""A running job's writes are made only while its worker holds it: a worker whose job was taken back
(it was paused past the stale timeout, or cut off) writes nothing more and stops. SQLite, no server."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gora.data.formats import validate_lines
from service.core.db import Database
from service.core.files import repository as files_repository
from service.core.files import service as files
from service.core.jobs import repository
from service.core.jobs import service as jobs
from service.core.jobs.errors import ErrorCode, JobError
from service.core.jobs.lifecycle import JobStatus
from service.core.jobs.spec import JobCreate
from service.core.migrate import upgrade
from service.core.runtime import Runtime
from service.core.settings import Settings
from service.core.teams import service as teams
from tests.helpers.api import CHAT, jsonl
from worker.reporting import JobReporter, ResultFile

RESULT = ResultFile("file-" + "r" * 24, "m.csv", 12, 3)


@pytest.fixture
def database(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'gora.db'}"
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()


@pytest.fixture
def job_id(database: Database, tmp_path: Path) -> str:
    runtime = Runtime.from_settings(Settings(data_dir=tmp_path, database_url=database.url))
    with database.transaction() as session:
        team = teams.create_team(session, "t")
        report = validate_lines(jsonl(CHAT).splitlines())
        data = files.record_upload(session, team.id, files.new_file_id(), "t.jsonl", 10, report)
        body = JobCreate(model="smollm2-135m", training_file=data.id)
        job = jobs.create_job(session, runtime, team.id, body, None)
        assert repository.claim(session, job.id, "worker-a")
        return job.id


def _take_back(database: Database, job_id: str) -> None:
    """What the reconciler does to a job whose heartbeat went stale, then another worker's claim."""
    with database.transaction() as session:
        assert repository.transition(
            session, job_id, expected=JobStatus.RUNNING, to=JobStatus.QUEUED, worker_id=None
        )
        assert repository.claim(session, job_id, "worker-b")


def _events(database: Database, job_id: str) -> list[str]:
    with database.transaction() as session:
        rows, _ = repository.list_events(session, job_id, None, 100, newest_first=False)
        return [row.message for row in rows]


def test_a_worker_whose_job_was_taken_back_writes_nothing_more(database: Database, job_id: str):
    stale = JobReporter(database, job_id, "worker-a", cancel_poll_s=0)
    stale.event("Probing gradients: batch 1/2")
    assert not stale.should_stop()
    _take_back(database, job_id)
    before = _events(database, job_id)
    assert before[-1] == "Probing gradients: batch 1/2"
    stale.event("late event")
    stale.metrics({"step": 3, "loss": 1.0, "trained_tokens": 10})
    stale.checkpoint(3, "jobs/x/checkpoints/step-3", {"loss": 1.0})
    assert not stale.succeed(RESULT, 10, "m")
    assert not stale.fail(JobError(ErrorCode.INTERNAL_ERROR, "boom"))
    assert stale.lost and stale.should_stop() and not stale.holds()
    assert _events(database, job_id) == before  # nothing at all
    current = JobReporter(database, job_id, "worker-b", cancel_poll_s=0)
    finish = datetime(2027, 1, 1, tzinfo=UTC)
    current.metrics({"step": 3, "loss": 1.0, "trained_tokens": 10}, estimated_finish=finish)
    with database.transaction() as session:
        assert repository.get(session, job_id).estimated_finish == finish
    assert current.succeed(RESULT, 10, "m") and not current.lost
    with database.transaction() as session:
        job = repository.get(session, job_id)
        assert (job.status, job.worker_id, job.trained_tokens) == ("succeeded", "worker-b", 10)
        # The result file is the team's, recorded with the success.
        assert job.result_files == [RESULT.file_id]
        stored = files_repository.get_for_team(session, job.team_id, RESULT.file_id)
        assert (stored.purpose, stored.filename, stored.rows) == ("fine-tune-results", "m.csv", 3)
    assert _events(database, job_id)[-2:] == [
        "Step 3: training loss=1.0000",
        "The job has successfully completed",
    ]


def test_a_cancel_while_exporting_does_not_end_in_success(database: Database, job_id: str):
    reporter = JobReporter(database, job_id, "worker-a", cancel_poll_s=0)
    with database.transaction() as session:
        assert repository.transition(
            session, job_id, expected=JobStatus.RUNNING, to=JobStatus.CANCELLING
        )
    assert not reporter.succeed(RESULT, 1, "m")  # the supervisor records it as cancelled
    assert reporter.should_stop() and not reporter.lost
