"""Jobs and what their runs leave behind: events, checkpoints and the rank allocation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from service.core.clock import utcnow
from service.core.db import AutoIncrementId, Base
from service.core.ids import EVENT, new_id
from service.core.jobs.lifecycle import JobPhase, JobStatus


def _one_of(column: str, values: type[JobStatus] | type[JobPhase]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_one_of("status", JobStatus), name="status"),
        CheckConstraint(_one_of("phase", JobPhase), name="phase"),
        Index("ix_jobs_team_listing", "team_id", "created_at", "id"),
        # What the worker's scheduler and reconciler scan: waiting or running jobs of a pool.
        Index("ix_jobs_scheduling", "status", "pool", "priority", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    # The model as the client named it, and where it resolved to ({kind, name, task}); see catalog.py.
    model: Mapped[str] = mapped_column(String(256))
    model_source: Mapped[dict[str, Any]]
    task: Mapped[str] = mapped_column(String(40))
    training_file_id: Mapped[str] = mapped_column(ForeignKey("files.id"))
    validation_file_id: Mapped[str | None] = mapped_column(ForeignKey("files.id"), default=None)
    suffix: Mapped[str | None] = mapped_column(String(64), default=None)
    seed: Mapped[int] = mapped_column(BigInteger)
    user_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata", default=None)
    # The request body as sent (None for jobs made before it was kept), and the full spec the
    # worker runs: resolved hyperparameters, method, GoraConfig fields.
    submitted: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    hyperparameters: Mapped[dict[str, Any]]
    method: Mapped[dict[str, Any]]
    adapter: Mapped[dict[str, Any]]
    pool: Mapped[str] = mapped_column(String(64))
    gpu_count: Mapped[int]
    priority: Mapped[int] = mapped_column(default=0)
    # A warm start: {ref, job_id, step, adapter_key} of the adapter this job continues from.
    from_checkpoint: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # A dry run validates, tokenises and probes, then ends with ``preview`` instead of training.
    dry_run: Mapped[bool] = mapped_column(default=False)
    preview: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # learning_rate_multiplier "search": the rates tried, their validation scores, the one chosen
    # and the cost (gora.train.search.SearchResult.to_dict()), once the search has ended.
    learning_rate_search: Mapped[dict[str, Any] | None] = mapped_column(default=None)

    status: Mapped[str] = mapped_column(String(20))
    phase: Mapped[str | None] = mapped_column(String(20), default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(default=None)  # {code, message, param}
    fine_tuned_model: Mapped[str | None] = mapped_column(String(300), default=None)
    result_files: Mapped[list[Any]] = mapped_column(default=list)  # file ids (step_metrics.csv)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger, default=None)
    adapter_params: Mapped[int | None] = mapped_column(BigInteger, default=None)  # once allocated
    # When training should end, from the step time measured so far (updated at each report).
    estimated_finish: Mapped[datetime | None] = mapped_column(default=None)
    # Which worker holds the job, how many times it was claimed, and when it last said it was alive.
    worker_id: Mapped[str | None] = mapped_column(String(200), default=None)
    attempt: Mapped[int] = mapped_column(default=0)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class JobEvent(Base):
    """A line of a job's log; ``type="metrics"`` events carry step, loss, learning rate, tokens/s."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_order", "job_id", "seq"),)

    # A sequence orders the events as they were written; it stays inside the service. The public
    # id is random: a sequence shared by every job would let a team count every team's activity.
    seq: Mapped[int] = mapped_column(AutoIncrementId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: new_id(EVENT))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    level: Mapped[str] = mapped_column(String(10), default="info")
    type: Mapped[str] = mapped_column(String(20), default="message")
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(default=None)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "step", name="uq_checkpoints_job_step"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    step: Mapped[int]
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    storage_key: Mapped[str] = mapped_column(String(300))  # jobs/<id>/checkpoints/step-<n>
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobAllocation(Base):
    """A job's rank allocation: the library's report (``gora_allocation.json``, the dict of
    ``gora.report.AllocationReport.to_dict``) stored whole, once, when probing ends."""

    __tablename__ = "job_allocations"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    report: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyKey(Base):
    """A create request already answered: a retry with the same key gets the same job back."""

    __tablename__ = "idempotency_keys"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
