"""The periodic repair of what the broker cannot see: lost messages and dead workers.

- A ``queued`` job not touched for ``requeue_after_s`` gets its message sent again (a broker restart,
  or an enqueue that failed after the API committed, lost the first one).
- A ``running`` job whose heartbeat is older than ``stale_after_s`` lost its worker: it goes back to
  ``queued`` and is sent again; the next attempt resumes from its newest stored checkpoint. After
  ``max_attempts`` it fails with ``worker_lost`` instead.
- A ``cancelling`` job with a stale heartbeat has no worker left to stop it: it becomes ``cancelled``;
  a ``pausing`` one becomes ``paused`` (a resume continues from its last stored checkpoint).

Every change is a guarded transition, so several reconcilers (one per worker host) can run at once.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from service.core.clock import utcnow
from service.core.db import Database
from service.core.jobs import repository
from service.core.jobs.errors import ErrorCode, JobError
from service.core.jobs.lifecycle import HOLDING, JobStatus
from service.core.queue import JobQueue
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


@dataclass
class Repairs:
    resent: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)


def reconcile_once(database: Database, queue: JobQueue, ws: WorkerSettings) -> Repairs:
    repairs = Repairs()
    recover_stale(database, ws, repairs)
    resend_queued(database, queue, ws, repairs)
    return repairs


def recover_stale(database: Database, ws: WorkerSettings, repairs: Repairs) -> None:
    stale_before = utcnow() - timedelta(seconds=ws.stale_after_s)
    with database.transaction() as session:
        for status in HOLDING:
            for job in repository.jobs_in_status(session, status):
                if job.heartbeat_at is not None and job.heartbeat_at >= stale_before:
                    continue
                take_back(session, job, ws, repairs)


def take_back(session, job, ws: WorkerSettings, repairs: Repairs) -> None:
    lost = f"its worker {job.worker_id} stopped sending heartbeats"
    if job.status == JobStatus.PAUSING:  # it resumes from its last stored checkpoint
        if repository.move(
            session,
            job.id,
            expected=job.status,
            to=JobStatus.PAUSED,
            event=f"Job paused ({lost}); a resume continues from its last checkpoint",
            worker_id=None,
        ):
            repairs.paused.append(job.id)
        return
    if job.status == JobStatus.CANCELLING:
        if repository.move(
            session,
            job.id,
            expected=job.status,
            to=JobStatus.CANCELLED,
            event=f"Job cancelled ({lost})",
        ):
            repairs.cancelled.append(job.id)
        return
    if job.attempt >= ws.max_attempts:
        error = JobError(
            ErrorCode.WORKER_LOST, f"{lost}, {job.attempt} times; the job is not retried again"
        )
        if repository.fail(session, job.id, error, expected=job.status):
            repairs.failed.append(job.id)
        return
    if repository.move(
        session,
        job.id,
        expected=job.status,
        to=JobStatus.QUEUED,
        event=f"Requeued: {lost}; it resumes from its last checkpoint",
        level="warn",
        worker_id=None,
    ):
        repairs.requeued.append(job.id)


def resend_queued(
    database: Database, queue: JobQueue, ws: WorkerSettings, repairs: Repairs
) -> None:
    old = utcnow() - timedelta(seconds=ws.requeue_after_s)
    with database.transaction() as session:
        waiting = [
            (job.id, job.pool)
            for job in repository.jobs_in_status(session, JobStatus.QUEUED, updated_before=old)
        ]
        waiting += [(job_id, pool) for job_id, pool in _just_requeued(session, repairs)]
        waiting = list(dict(waiting).items())  # a job requeued just now may be listed twice
        for job_id, _ in waiting:
            repository.touch_queued(session, job_id)
    for job_id, pool in waiting:
        if queue.enqueue(job_id, pool):
            repairs.resent.append(job_id)


def _just_requeued(session, repairs: Repairs) -> list[tuple[str, str]]:
    found = []
    for job_id in repairs.requeued:
        job = repository.get(session, job_id)
        if job is not None and job.status == JobStatus.QUEUED.value:
            found.append((job_id, job.pool))
    return found


def run_forever(database: Database, queue: JobQueue, ws: WorkerSettings, stop: threading.Event):
    """The loop ``gora worker`` runs in a thread (every ``reconcile_every_s``)."""
    while not stop.wait(ws.reconcile_every_s):
        try:
            repairs = reconcile_once(database, queue, ws)
        except Exception:  # the next pass tries again; a database blip must not end the loop
            log.exception("reconciler pass failed")
            continue
        if any(vars(repairs).values()):
            log.info("reconciler: %s", repairs)
