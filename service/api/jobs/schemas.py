"""What the job endpoints answer: OpenAI's job, event and checkpoint objects, plus GoRA's allocation."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, create_model

from gora.report import AllocationReport
from service.core.clock import to_unix
from service.core.jobs.models import Checkpoint, Job, JobEvent


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class GpuOut(BaseModel):
    pool: str
    count: int


class JobOut(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None
    fine_tuned_model: str | None
    finished_at: int | None
    hyperparameters: dict[str, Any]
    model: str
    organization_id: str
    result_files: list[str]
    seed: int
    status: str
    trained_tokens: int | None
    training_file: str
    validation_file: str | None
    estimated_finish: int | None = None
    integrations: list[Any] | None = None
    metadata: dict[str, str] | None
    method: dict[str, Any]
    suffix: str | None
    # GoRA additions.
    phase: str | None
    started_at: int | None
    adapter: dict[str, Any]
    gpu: GpuOut
    priority: int
    from_checkpoint: str | None = None  # Together's field: the job or checkpoint it started from
    dry_run: bool = False
    queue_position: int | None = None  # in the job list, for queued jobs: 1 is claimed next
    submitted: dict[str, Any] | None = None  # the request body as sent, before "auto" resolved
    adapter_params: int | None = None  # the allocated adapter's parameters, once probing ended
    # A dry run's result: trainable and LoRA parameters, tokens, steps, estimated duration.
    preview: dict[str, Any] | None = None
    # learning_rate_multiplier "search": rates tried, their validation losses, the chosen, the cost.
    learning_rate_search: dict[str, Any] | None = None

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            id=job.id,
            created_at=to_unix(job.created_at) or 0,
            error=JobError(**job.error) if job.error else None,
            fine_tuned_model=job.fine_tuned_model,
            finished_at=to_unix(job.finished_at),
            hyperparameters=job.hyperparameters,
            model=job.model,
            organization_id=job.team_id,
            result_files=job.result_files,
            seed=job.seed,
            status=job.status,
            trained_tokens=job.trained_tokens,
            # Only while it trains: a queued, paused or finished job has no finish to estimate.
            estimated_finish=to_unix(job.estimated_finish) if job.status == "running" else None,
            training_file=job.training_file_id,
            validation_file=job.validation_file_id,
            metadata=job.user_metadata,
            method=job.method,
            suffix=job.suffix,
            phase=job.phase,
            started_at=to_unix(job.started_at),
            adapter=job.adapter,
            gpu=GpuOut(pool=job.pool, count=job.gpu_count),
            priority=job.priority,
            from_checkpoint=(job.from_checkpoint or {}).get("ref"),
            dry_run=job.dry_run,
            preview=job.preview,
            learning_rate_search=job.learning_rate_search,
            submitted=job.submitted,
            adapter_params=job.adapter_params,
        )


class EventOut(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: str
    message: str
    data: dict[str, Any] | None
    type: str

    @classmethod
    def of(cls, event: JobEvent) -> EventOut:
        return cls(
            id=event.id,
            created_at=to_unix(event.created_at) or 0,
            level=event.level,
            message=event.message,
            data=event.data,
            type=event.type,
        )


class CheckpointOut(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict[str, Any]
    step_number: int

    @classmethod
    def of(cls, row: Checkpoint, job: Job) -> CheckpointOut:
        return cls(
            id=row.id,
            created_at=to_unix(row.created_at) or 0,
            fine_tuned_model_checkpoint=f"ft:{job.model}:{job.suffix or 'gora'}:{job.id}:"
            f"ckpt-step-{row.step}",
            fine_tuning_job_id=job.id,
            metrics=row.metrics,
            step_number=row.step,
        )


def _report_fields() -> dict[str, Any]:
    hints = get_type_hints(AllocationReport)
    return {field.name: (hints[field.name], ...) for field in dataclasses.fields(AllocationReport)}


# ``gora_allocation.json`` (gora-spec.md §5) with the job's id: its fields are those of the library's
# AllocationReport, read from it, so the report's shape is declared once (in gora/report.py).
AllocationOut = create_model(
    "AllocationOut",
    object=(Literal["fine_tuning.job.allocation"], "fine_tuning.job.allocation"),
    job_id=(str, ...),
    **_report_fields(),
)
