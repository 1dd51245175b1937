"""SQL for jobs, their events, checkpoints and allocations; the API and the worker share it.

Every change of a job's status is ``transition``: ``UPDATE jobs SET status=:new … WHERE id=:id AND
status IN (:expected)``. It returns whether the row changed, so of two writers racing for one job
exactly one wins (two workers claiming it, or a cancel against a claim).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.util import identity_key

from service.core import ids
from service.core.clock import utcnow
from service.core.jobs.errors import JobError
from service.core.jobs.lifecycle import (
    ACTIVE,
    HOLDING,
    TERMINAL,
    JobPhase,
    JobStatus,
    check_transition,
)
from service.core.jobs.models import (
    Checkpoint,
    IdempotencyKey,
    Job,
    JobAllocation,
    JobEvent,
)
from service.core.pagination import keyset_page
from service.core.teams.models import Team
from service.core.webhooks import service as webhooks

# ---- jobs ------------------------------------------------------------------------------------


def get(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id) if ids.is_id(ids.JOB, job_id) else None


def get_for_team(session: Session, team_id: str, job_id: str) -> Job | None:
    """The team's job, or None for an unknown or another team's id (both answer 404)."""
    if not ids.is_id(ids.JOB, job_id):
        return None
    params = {"job_id": job_id, "team_id": team_id}
    return session.scalars(_JOB_FOR_TEAM, params).one_or_none()


# Built once: job status is what clients poll, so the statement is not rebuilt on every request.
_JOB_FOR_TEAM = select(Job).where(
    Job.id == bindparam("job_id"), Job.team_id == bindparam("team_id")
)


def list_for_team(
    session: Session,
    team_id: str,
    cursor: Job | None,
    limit: int,
    metadata: dict[str, str] | None = None,
) -> tuple[list[Job], bool]:
    query: Any = select(Job).where(Job.team_id == team_id)
    for key, value in (metadata or {}).items():
        query = query.where(Job.user_metadata[key].as_string() == value)
    return keyset_page(session, query, Job, cursor, limit)


def queue_positions(session: Session, jobs: list[Job]) -> dict[str, int]:
    """Each queued job's place in its pool's queue (1: next), in the order workers claim: higher
    priority first, then the oldest. One query for the whole page."""
    queued = JobStatus.QUEUED.value
    waiting = [job.id for job in jobs if job.status == queued]
    if not waiting:
        return {}
    ahead = aliased(Job)
    count_ahead = (
        select(func.count())
        .select_from(ahead)
        .where(ahead.pool == Job.pool, ahead.status == queued, ahead.id != Job.id)
        .where(
            (ahead.priority > Job.priority)
            | ((ahead.priority == Job.priority) & (ahead.created_at < Job.created_at))
        )
        .correlate(Job)
        .scalar_subquery()
    )
    rows = session.execute(select(Job.id, count_ahead).where(Job.id.in_(waiting)))
    return {job_id: int(before) + 1 for job_id, before in rows}


def add(session: Session, job: Job) -> None:
    session.add(job)
    session.flush()


def _statuses(expected: str | Iterable[str]) -> list[str]:
    # Plain strings: drivers adapt a StrEnum member by its name, not its value.
    return sorted(
        {JobStatus(s).value for s in ([expected] if isinstance(expected, str) else expected)}
    )


def transition(
    session: Session,
    job_id: str,
    *,
    expected: str | Iterable[str],
    to: str,
    held_by: str | None = None,
    **values: Any,
) -> bool:
    """Moves the job to ``to`` if its status is still one of ``expected``; True when it did.

    With ``held_by``, only while that worker still holds the job: a worker whose job was taken
    back after a stale heartbeat can then never finish it over the worker that runs it now.
    ``values`` are further columns to set in the same statement (error, result_files…). Reaching
    a terminal status stamps ``finished_at`` unless given.
    """
    allowed, to = _statuses(expected), JobStatus(to).value
    for current in allowed:
        check_transition(current, to)
    if to in TERMINAL:
        values.setdefault("finished_at", utcnow())
    moved = _update(session, job_id, allowed, held_by, status=to, **values)
    if moved and to in webhooks.EVENT_OF_STATUS:
        team_id = session.scalar(select(Job.team_id).where(Job.id == job_id))
        webhooks.notify_job_status(session, team_id, job_id, to)  # sent once this commits
    return moved


def _update(
    session: Session, job_id: str, statuses: list[str], held_by: str | None, **values: Any
) -> bool:
    """``UPDATE jobs SET … WHERE id = :id AND status IN (:statuses) [AND worker_id = :held_by]``."""
    statement = update(Job).where(Job.id == job_id, Job.status.in_(statuses))
    if held_by is not None:
        statement = statement.where(Job.worker_id == held_by)
    statement = statement.values(updated_at=values.pop("updated_at", utcnow()), **values)
    changed = session.execute(statement.execution_options(synchronize_session=False)).rowcount == 1  # type: ignore[attr-defined]
    if changed:
        _expire_loaded(session, job_id)
    return changed


def move(
    session: Session,
    job_id: str,
    *,
    expected: str | Iterable[str],
    to: str,
    event: str,
    level: str = "info",
    data: dict[str, Any] | None = None,
    held_by: str | None = None,
    **values: Any,
) -> bool:
    """``transition`` and, when it happened, the event that says so, in the same transaction."""
    if not transition(session, job_id, expected=expected, to=to, held_by=held_by, **values):
        return False
    add_event(session, job_id, event, level=level, data=data)
    return True


def fail(
    session: Session,
    job_id: str,
    error: JobError,
    *,
    expected: str | Iterable[str] = JobStatus.RUNNING,
    held_by: str | None = None,
    data: dict[str, Any] | None = None,
) -> bool:
    """The one way a job fails: ``error`` on the row and an error event saying why (with ``data``)."""
    return move(
        session,
        job_id,
        expected=expected,
        to=JobStatus.FAILED,
        event=f"Job failed: {error.message}",
        level="error",
        data={"code": error.code.value, **(data or {})},
        held_by=held_by,
        error=error.as_dict(),
    )


def _expire_loaded(session: Session, job_id: str) -> None:
    """A Job already loaded in this session reloads on next access instead of showing old values."""
    loaded = session.identity_map.get(identity_key(Job, job_id))
    if loaded is not None:
        session.expire(loaded)


def claim(session: Session, job_id: str, worker_id: str) -> bool:
    """queued → running for ``worker_id``; False when another worker won or the job was cancelled."""
    now = utcnow()
    return transition(
        session,
        job_id,
        expected=JobStatus.QUEUED,
        to=JobStatus.RUNNING,
        worker_id=worker_id,
        attempt=Job.attempt + 1,
        phase=JobPhase.LOADING.value,
        started_at=func.coalesce(Job.started_at, now),
        heartbeat_at=now,
        error=None,
    )


_HOLDING = _statuses(HOLDING)


def heartbeat(session: Session, job_id: str, worker_id: str) -> bool:
    """Stamps ``heartbeat_at`` while ``worker_id`` still holds the job: the supervisor's, the one
    writer of it. False when the job is no longer this worker's (taken back after a stale one)."""
    return _update(session, job_id, _HOLDING, worker_id, heartbeat_at=utcnow())


def record_progress(session: Session, job_id: str, worker_id: str, **progress: Any) -> bool:
    """Progress columns (``trained_tokens``) while ``worker_id`` holds the job; no heartbeat."""
    return _update(session, job_id, _HOLDING, worker_id, **progress)


def set_phase(session: Session, job_id: str, worker_id: str, phase: str) -> bool:
    return _update(session, job_id, _HOLDING, worker_id, phase=JobPhase(phase).value)


def status_of(session: Session, job_id: str) -> str | None:
    """The status as committed, read fresh."""
    return session.scalar(select(Job.status).where(Job.id == job_id))


def holder(session: Session, job_id: str, *, lock: bool = False) -> tuple[str, str | None] | None:
    """(status, the worker that holds it) as committed: the child's per-step stop check.

    ``lock`` keeps the job's row locked until the transaction ends (``FOR UPDATE`` on PostgreSQL;
    SQLite serialises writers anyway): a write made because this worker still holds the job then
    cannot interleave with the reconciler taking it back.
    """
    query = select(Job.status, Job.worker_id).where(Job.id == job_id)
    row = session.execute(query.with_for_update() if lock else query).one_or_none()
    return (row.status, row.worker_id) if row is not None else None


def jobs_in_status(
    session: Session, status: str, pool: str | None = None, updated_before: datetime | None = None
) -> list[Job]:
    """Jobs in ``status`` (oldest first within priority): what the reconciler and scheduler scan."""
    query = select(Job).where(Job.status == JobStatus(status).value)
    if pool is not None:
        query = query.where(Job.pool == pool)
    if updated_before is not None:
        query = query.where(Job.updated_at < updated_before)
    return list(session.scalars(query.order_by(Job.priority.desc(), Job.created_at, Job.id)))


def touch_queued(session: Session, job_id: str) -> bool:
    """Stamps ``updated_at`` of a still-queued job (the reconciler re-sent its message)."""
    statement = (
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED.value)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return session.execute(statement).rowcount == 1  # type: ignore[attr-defined]


def team_running_limit(session: Session, team_id: str, *, lock: bool = False) -> int | None:
    """``teams.max_running_jobs`` (None: no limit).

    ``lock`` holds the team's row until the transaction ends (``SELECT ... FOR UPDATE`` on PostgreSQL;
    SQLite serialises writers anyway), so that workers claiming jobs of one team count its running
    jobs one after the other and cannot pass the limit together.
    """
    query = select(Team.max_running_jobs).where(Team.id == team_id)
    return session.scalar(query.with_for_update() if lock else query)


def running_count_for_team(session: Session, team_id: str) -> int:
    query = select(func.count()).where(Job.team_id == team_id, Job.status.in_(_HOLDING))
    return int(session.scalar(query) or 0)


def active_jobs_using_file(session: Session, file_id: str) -> list[str]:
    query = select(Job.id).where(
        Job.status.in_(sorted(s.value for s in ACTIVE)),
        (Job.training_file_id == file_id) | (Job.validation_file_id == file_id),
    )
    return list(session.scalars(query))


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Job.status, func.count()).group_by(Job.status))
    return {status: int(count) for status, count in rows}


# ---- idempotency -----------------------------------------------------------------------------


def idempotency_record(session: Session, team_id: str, key: str) -> IdempotencyKey | None:
    return session.get(IdempotencyKey, (team_id, key))


# ---- events ----------------------------------------------------------------------------------


def add_event(
    session: Session,
    job_id: str,
    message: str,
    *,
    level: str = "info",
    type: str = "message",
    data: dict[str, Any] | None = None,
) -> JobEvent:
    """Appends a line to the job's log; ``type="metrics"`` with ``data`` {step, loss, …} for charts."""
    event = JobEvent(job_id=job_id, message=message, level=level, type=type, data=data)
    session.add(event)
    session.flush()
    return event


def list_events(
    session: Session, job_id: str, after_seq: int | None, limit: int, newest_first: bool = True
) -> tuple[list[JobEvent], bool]:
    """A page of events: newest first (OpenAI's list) or oldest first after ``after_seq`` (streams)."""
    query = select(JobEvent).where(JobEvent.job_id == job_id)
    if after_seq is not None:
        query = query.where(JobEvent.seq < after_seq if newest_first else JobEvent.seq > after_seq)
    query = query.order_by(JobEvent.seq.desc() if newest_first else JobEvent.seq.asc())
    rows = list(session.scalars(query.limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def _metrics_events(session: Session, job_id: str, measure: str) -> list[dict[str, Any]]:
    """The data of the job's metrics events that carry ``measure``, oldest first."""
    query = select(JobEvent.data).where(JobEvent.job_id == job_id, JobEvent.type == "metrics")
    return [
        data for data in session.scalars(query.order_by(JobEvent.seq)) if data and measure in data
    ]


def training_metrics(session: Session, job_id: str) -> list[dict[str, Any]]:
    """The data of the job's training-step metrics events (step, loss, …), oldest first: of its
    latest run (a retry after a collapse is run 1; its data say ``"run": 1``)."""
    events = _metrics_events(session, job_id, "loss")
    latest = max((data.get("run", 0) for data in events), default=0)
    return [data for data in events if data.get("run", 0) == latest]


def training_run(session: Session, job_id: str) -> int:
    """The run the job's training is in: 0, or 1 after a retry at half the rate."""
    return max((data.get("run", 0) for data in _metrics_events(session, job_id, "loss")), default=0)


def validation_metrics(session: Session, job_id: str) -> list[dict[str, Any]]:
    """The data of the job's evaluation events (step, valid_loss, …), oldest first."""
    return _metrics_events(session, job_id, "valid_loss")


THROUGHPUT_REPORTS = 50  # the latest metrics reports the pool's throughput is the median of


def pool_throughput(session: Session, job_id: str) -> tuple[float, int] | None:
    """(median trained tokens per second, how many reports) over the latest metrics reports of
    succeeded jobs that trained the same model on the same pool as ``job_id``; None without any."""
    job = get(session, job_id)
    if job is None:
        return None
    query = (
        select(JobEvent.data)
        .join(Job, Job.id == JobEvent.job_id)
        .where(Job.pool == job.pool, Job.model == job.model, Job.id != job.id)
        .where(Job.status == JobStatus.SUCCEEDED.value, Job.dry_run.is_(False))
        .where(JobEvent.type == "metrics")
        .order_by(JobEvent.seq.desc())
        .limit(4 * THROUGHPUT_REPORTS)
    )
    rates = [
        float(data["tokens_per_s"])
        for data in session.scalars(query)
        if data and data.get("tokens_per_s")
    ][:THROUGHPUT_REPORTS]
    if not rates:
        return None
    rates.sort()
    return rates[len(rates) // 2], len(rates)


def training_metric_steps(session: Session, job_id: str) -> set[int]:
    """The steps the job's latest run has metrics events for."""
    return {data["step"] for data in training_metrics(session, job_id)}


def event_seq(session: Session, job_id: str, event_id: str) -> int | None:
    """Where the job's event ``event_id`` stands in its log (a cursor), or None for no such event."""
    if not ids.is_id(ids.EVENT, event_id):
        return None
    query = select(JobEvent.seq).where(JobEvent.job_id == job_id, JobEvent.id == event_id)
    return session.scalar(query)


def set_learning_rate(
    session: Session,
    job_id: str,
    worker_id: str,
    learning_rate: float,
    multiplier: float,
    search: dict[str, Any] | None = None,
) -> bool:
    """The rate the job now trains at (chosen by its search, or halved for a retry), in its
    hyperparameters and method's copy of them; a search's record beside."""
    job = session.get(Job, job_id)
    if job is None:
        return False
    rates = {"learning_rate": learning_rate, "learning_rate_multiplier": multiplier}
    hyperparameters = {**job.hyperparameters, **rates}
    kind = job.method.get("type", "supervised")
    method = {**job.method, kind: {"hyperparameters": hyperparameters}}
    values: dict[str, Any] = {"hyperparameters": hyperparameters, "method": method}
    if search is not None:
        values["learning_rate_search"] = search
    return _update(session, job_id, _HOLDING, worker_id, **values)


# ---- checkpoints -----------------------------------------------------------------------------


def delete_checkpoints(session: Session, job_id: str) -> None:
    """Forgets the job's checkpoints (a retry from the initial adapter makes them stale)."""
    session.execute(delete(Checkpoint).where(Checkpoint.job_id == job_id))


def add_checkpoint(
    session: Session, job_id: str, step: int, storage_key: str, metrics: dict[str, Any]
) -> Checkpoint:
    """Records a checkpoint the worker has written under ``storage_key``; a repeated step replaces it."""
    session.execute(delete(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.step == step))
    row = Checkpoint(
        id=ids.new_id(ids.CHECKPOINT),
        job_id=job_id,
        step=step,
        storage_key=storage_key,
        metrics={"step": step, **metrics},
    )
    session.add(row)
    session.flush()
    return row


def list_checkpoints(
    session: Session, job_id: str, cursor: Checkpoint | None, limit: int
) -> tuple[list[Checkpoint], bool]:
    query = select(Checkpoint).where(Checkpoint.job_id == job_id)
    if cursor is not None:
        query = query.where(Checkpoint.step < cursor.step)
    rows = list(session.scalars(query.order_by(Checkpoint.step.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def get_checkpoint(session: Session, job_id: str, checkpoint_id: str) -> Checkpoint | None:
    if not ids.is_id(ids.CHECKPOINT, checkpoint_id):
        return None
    query = select(Checkpoint).where(Checkpoint.id == checkpoint_id, Checkpoint.job_id == job_id)
    return session.scalars(query).one_or_none()


# ---- allocation ------------------------------------------------------------------------------


def save_allocation(session: Session, job_id: str, report: dict[str, Any]) -> None:
    """Stores the library's report (``AllocationReport.to_dict()``), replacing an earlier one."""
    row = session.get(JobAllocation, job_id)
    if row is None:
        session.add(JobAllocation(job_id=job_id, report=report))
    else:
        row.report = report
    # The adapter's size on the job row too: job lists show it without reading each report.
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(adapter_params=report["totals"]["allocated"])
        .execution_options(synchronize_session=False)
    )
    _expire_loaded(session, job_id)
    session.flush()


def get_allocation(session: Session, job_id: str) -> dict[str, Any] | None:
    """The stored report in the shape of ``gora_allocation.json``, or None before probing ends."""
    return session.scalar(select(JobAllocation.report).where(JobAllocation.job_id == job_id))
