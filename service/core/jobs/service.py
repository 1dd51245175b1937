"""Creating, listing, cancelling and reporting on fine-tuning jobs."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.core import ids
from service.core.db import FollowUp, after_commit
from service.core.errors import Conflict, InvalidRequest, NotFound
from service.core.jobs import repository
from service.core.jobs.lifecycle import JobStatus
from service.core.jobs.models import IdempotencyKey, Job
from service.core.jobs.spec import JobCreate, JobSpec, build_spec
from service.core.queue import JobQueue
from service.core.runtime import Runtime


def _request_hash(body: JobCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json", exclude_unset=True), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(session: Session, team_id: str, key: str, request_hash: str, ttl_s: int) -> Job | None:
    """The job a retried request already created, or None for a key not seen (or expired)."""
    record = repository.idempotency_record(session, team_id, key)
    if record is None:
        return None
    if _age_s(record.created_at) > ttl_s:  # a retry comes within minutes; this is a new request
        session.delete(record)
        session.flush()
        return None
    if record.request_hash != request_hash:
        raise Conflict(
            "this Idempotency-Key was used for a different request; use a new key",
            param="Idempotency-Key",
            code="idempotency_key_reused",
        )
    job = repository.get(session, record.job_id)
    assert job is not None  # the key row references the job
    return job


def _age_s(created_at: datetime) -> float:
    return (datetime.now(UTC) - created_at).total_seconds()


def create_job(
    session: Session, runtime: Runtime, team_id: str, body: JobCreate, idempotency_key: str | None
) -> Job:
    request_hash = _request_hash(body)
    ttl_s = runtime.settings.idempotency_ttl_s
    if idempotency_key is not None:
        earlier = _replay(session, team_id, idempotency_key, request_hash, ttl_s)
        if earlier is not None:
            return earlier
    seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
    job = _new_job(team_id, body, build_spec(session, runtime.settings, team_id, body, seed), seed)
    try:
        with session.begin_nested():
            repository.add(session, job)
            if idempotency_key is not None:
                session.add(
                    IdempotencyKey(
                        team_id=team_id,
                        key=idempotency_key,
                        request_hash=request_hash,
                        job_id=job.id,
                    )
                )
                session.flush()
    except IntegrityError:
        # A concurrent retry with the same key committed first: answer with its job.
        earlier = idempotency_key and _replay(
            session, team_id, idempotency_key, request_hash, ttl_s
        )
        if not earlier:
            raise
        return earlier
    repository.add_event(session, job.id, f"Created fine-tuning job: {job.id}")
    repository.add_event(
        session,
        job.id,
        f"Files validated, job queued on pool {job.pool!r}",
        data={"pool": job.pool},
    )
    _enqueue_after_commit(session, runtime.queue, job.id, job.pool)
    return job


def _new_job(team_id: str, body: JobCreate, spec: JobSpec, seed: int) -> Job:
    return Job(
        id=ids.new_id(ids.JOB),
        team_id=team_id,
        model=body.model,
        model_source=spec.model_source,
        task=spec.task,
        training_file_id=spec.training_file.id,
        validation_file_id=spec.validation_file.id if spec.validation_file else None,
        suffix=body.suffix,
        seed=seed,
        user_metadata=body.metadata,
        hyperparameters=spec.hyperparameters,
        method={"type": spec.method, spec.method: {"hyperparameters": spec.hyperparameters}},
        adapter=spec.adapter,
        pool=spec.pool,
        gpu_count=spec.gpu_count,
        priority=body.priority,
        from_checkpoint=spec.from_checkpoint,
        dry_run=body.dry_run,
        submitted=body.model_dump(mode="json", exclude_unset=True),
        # Files are validated when uploaded, so a new job is ready for a worker at once.
        status=JobStatus.QUEUED.value,
    )


def _enqueue_after_commit(session: Session, queue: JobQueue, job_id: str, pool: str) -> None:
    def send() -> FollowUp | None:
        if queue.enqueue(job_id, pool):
            return None
        return lambda later: repository.add_event(
            later,
            job_id,
            "The job queue could not be reached; the job stays queued and is sent again "
            "when the queue is back",
            level="warn",
        )

    after_commit(session, send)


def get_job(session: Session, team_id: str, job_id: str) -> Job:
    job = repository.get_for_team(session, team_id, job_id)
    if job is None:
        raise NotFound(
            f"no fine-tuning job with id {job_id!r}", param="job_id", code="job_not_found"
        )
    return job


def list_jobs(
    session: Session, team_id: str, after: str | None, limit: int, metadata: dict[str, str]
) -> tuple[list[Job], bool]:
    cursor = None
    if after is not None:
        cursor = repository.get_for_team(session, team_id, after)
        if cursor is None:
            raise InvalidRequest(
                f"no fine-tuning job with id {after!r} to list after", param="after"
            )
    return repository.list_for_team(session, team_id, cursor, limit, metadata)


def queue_positions(session: Session, jobs: list[Job]) -> dict[str, int]:
    return repository.queue_positions(session, jobs)


_STOPPING = "Cancellation requested; the worker stops at its next step"

# What each request does from each status: the status it moves the job to and the event that says
# so, or None where the job already is where the request leads (answered as it is). From a status
# not listed the request is a conflict.
_CONTROLS: dict[str, dict[str, tuple[JobStatus, str] | None]] = {
    "cancel": {
        JobStatus.QUEUED: (JobStatus.CANCELLED, "Job cancelled before it started"),
        JobStatus.PAUSED: (JobStatus.CANCELLED, "Job cancelled while paused"),
        JobStatus.RUNNING: (JobStatus.CANCELLING, _STOPPING),
        JobStatus.PAUSING: (JobStatus.CANCELLING, _STOPPING),
        JobStatus.CANCELLING: None,
    },
    "pause": {
        JobStatus.QUEUED: (JobStatus.PAUSED, "Job paused before it started"),
        JobStatus.RUNNING: (
            JobStatus.PAUSING,
            "Pause requested; the worker saves a checkpoint at its next step and frees its GPU",
        ),
        JobStatus.PAUSING: None,
        JobStatus.PAUSED: None,
    },
    "resume": {
        JobStatus.PAUSED: (
            JobStatus.QUEUED,
            "Job resumed; it continues from the checkpoint it paused at",
        ),
        JobStatus.QUEUED: None,
    },
}
_REFUSED = {
    "cancel": ("job_not_cancellable", "only unfinished jobs can be cancelled"),
    "pause": ("job_not_pausable", "only queued or running jobs can be paused"),
    "resume": ("job_not_paused", "only paused jobs can be resumed"),
}


def control_job(session: Session, runtime: Runtime, team_id: str, job_id: str, action: str) -> Job:
    """Cancel, pause or resume (``action``), as ``_CONTROLS`` says for the job's status.

    Guarded updates race the worker; on a lost race the status is read again and the request
    tried again, so the answer always reflects what the database holds. A resumed job gets a
    message to the queue of its pool after the commit.
    """
    job = get_job(session, team_id, job_id)
    moves = _CONTROLS[action]
    for _ in range(3):
        status = repository.status_of(session, job.id)
        if status not in moves:
            code, rule = _REFUSED[action]
            raise Conflict(f"job {job.id} is {status}; {rule}", param="job_id", code=code)
        move = moves[status]
        if move is None:
            break
        if repository.move(session, job.id, expected=status, to=move[0], event=move[1]):
            if move[0] == JobStatus.QUEUED:
                _enqueue_after_commit(session, runtime.queue, job.id, job.pool)
            break
    session.refresh(job)
    return job


def cancel_job(session: Session, runtime: Runtime, team_id: str, job_id: str) -> Job:
    """Queued and paused jobs are cancelled at once; a running one goes to ``cancelling`` for its
    worker to stop. A finished job is a conflict."""
    return control_job(session, runtime, team_id, job_id, "cancel")


def pause_job(session: Session, runtime: Runtime, team_id: str, job_id: str) -> Job:
    """A running job goes to ``pausing``: its worker saves a checkpoint at the next step, frees its
    GPU and leaves it ``paused``. A queued job is paused at once."""
    return control_job(session, runtime, team_id, job_id, "pause")


def resume_job(session: Session, runtime: Runtime, team_id: str, job_id: str) -> Job:
    """A paused job is queued again, to continue from the checkpoint it paused at."""
    return control_job(session, runtime, team_id, job_id, "resume")


def list_events(
    session: Session, team_id: str, job_id: str, after: str | None, limit: int
) -> tuple[list[Any], bool]:
    job = get_job(session, team_id, job_id)
    return repository.list_events(session, job.id, event_cursor(session, job.id, after), limit)


def stream_start(session: Session, team_id: str, job_id: str, after: str | None) -> tuple[Job, int]:
    """The job whose events a stream sends, and the position it starts after (0: the start)."""
    job = get_job(session, team_id, job_id)
    return job, event_cursor(session, job.id, after) or 0


def event_cursor(session: Session, job_id: str, after: str | None) -> int | None:
    """The position in the job's log of the event ``after`` names (None: from the start)."""
    if after is None:
        return None
    seq = repository.event_seq(session, job_id, after)
    if seq is None:
        raise InvalidRequest(f"no event with id {after!r} in job {job_id}", param="after")
    return seq


def list_checkpoints(
    session: Session, team_id: str, job_id: str, after: str | None, limit: int
) -> tuple[Job, list[Any], bool]:
    job = get_job(session, team_id, job_id)
    cursor = None
    if after is not None:
        cursor = repository.get_checkpoint(session, job.id, after)
        if cursor is None:
            raise InvalidRequest(f"no checkpoint with id {after!r} in job {job.id}", param="after")
    rows, has_more = repository.list_checkpoints(session, job.id, cursor, limit)
    return job, rows, has_more


def get_checkpoint(session: Session, team_id: str, job_id: str, checkpoint_id: str) -> Any:
    job = get_job(session, team_id, job_id)
    row = repository.get_checkpoint(session, job.id, checkpoint_id)
    if row is None:
        raise NotFound(
            f"no checkpoint with id {checkpoint_id!r} in job {job.id}; list them with "
            f"GET /v1/fine_tuning/jobs/{job.id}/checkpoints",
            param="checkpoint_id",
            code="checkpoint_not_found",
        )
    return row


def get_allocation(session: Session, team_id: str, job_id: str) -> dict[str, Any]:
    job = get_job(session, team_id, job_id)
    report = repository.get_allocation(session, job.id)
    if report is None:
        raise NotFound(
            f"job {job.id} has no rank allocation yet: it is stored when probing finishes "
            f"(status {job.status}" + (f", phase {job.phase})" if job.phase else ")"),
            param="job_id",
            code="allocation_not_ready",
        )
    return report
