"""Which queued job a worker takes: FIFO within priority in its pool, under each team's limit.

A message is a turn to run, not a reservation: the worker that receives ``run_job(X)`` claims the
oldest job of X's pool that its team may start now (X itself when nothing older waits). So the
database order, not the broker's, decides, a job over its team's limit simply waits, and a
duplicate or stale message costs one query. Every queued job still has its own message (sent by the
API, re-sent by the reconciler), so a job is never left without a turn.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.core.jobs import repository
from service.core.jobs.lifecycle import JobStatus
from service.core.jobs.models import Job


def may_start(session: Session, job: Job) -> bool:
    # The team's row stays locked until the claim commits: claims for one team are counted in turn.
    limit = repository.team_running_limit(session, job.team_id, lock=True)
    return limit is None or repository.running_count_for_team(session, job.team_id) < limit


def claim_next(session: Session, hinted_job_id: str, worker_id: str) -> Job | None:
    """Claims the job this worker should run now (guarded: no job is claimed twice), or None.

    Counting a team's running jobs locks the team's row until this transaction commits, so two
    workers claiming jobs of one team at the same instant cannot together pass its limit.
    """
    hinted = repository.get(session, hinted_job_id)
    if hinted is None:
        return None
    for job in repository.jobs_in_status(session, JobStatus.QUEUED, pool=hinted.pool):
        if not may_start(session, job):
            continue
        if repository.claim(session, job.id, worker_id):
            return job
    if hinted.status == JobStatus.QUEUED.value:
        repository.add_event(
            session,
            hinted.id,
            "Waiting: the team has reached its limit of running jobs; the job starts when one ends",
        )
    return None


def next_waiting(session: Session, pool: str) -> str | None:
    """The oldest queued job of ``pool``: sent a fresh turn when a job ends (it may have waited)."""
    waiting = repository.jobs_in_status(session, JobStatus.QUEUED, pool=pool)
    return waiting[0].id if waiting else None
