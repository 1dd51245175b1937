"""Fine-tuning job bodies: OpenAI's fields (so its client works unchanged) plus GoRA's ``adapter``/``gpu``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from service import ids
from service.clock import to_unix
from service.jobs.models import Checkpoint, Job, JobEvent
from service.schemas import PRINTABLE

Auto = Literal["auto"]
MetadataKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
MetadataValue = Annotated[str, StringConstraints(max_length=512, pattern=PRINTABLE)]
FileRef = Annotated[str, StringConstraints(min_length=1, max_length=100)]
ModuleName = Annotated[str, StringConstraints(max_length=200, pattern=PRINTABLE)]
# Far above any useful LoRA rank; it keeps absurd values a clear 400 rather than a failed job.
MAX_RANK = 4096


class Hyperparameters(BaseModel):
    """OpenAI's three knobs (a number or "auto") and GoRA's run-length knobs."""

    model_config = ConfigDict(extra="forbid", strict=True)

    n_epochs: Auto | Annotated[int, Field(ge=1, le=50)] = "auto"
    batch_size: Auto | Annotated[int, Field(ge=1, le=1024)] = "auto"
    learning_rate_multiplier: Auto | Annotated[float, Field(gt=0, le=100)] = "auto"
    max_steps: Annotated[int, Field(ge=1, le=10_000_000)] | None = Field(
        default=None,
        description="Stop after this many optimizer steps (default: the epochs decide)",
    )
    max_seq_length: Annotated[int, Field(ge=16, le=131_072)] | None = None
    log_every_steps: Annotated[int, Field(ge=1, le=100_000)] | None = None
    checkpoint_every_steps: Annotated[int, Field(ge=1, le=10_000_000)] | None = None


class SupervisedMethod(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    hyperparameters: Hyperparameters | None = None


class Method(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["supervised"] = "supervised"
    supervised: SupervisedMethod | None = None


class AdapterSpec(BaseModel):
    """GoRA/LoRA settings (the fields of ``gora.config.GoraConfig``); unset fields take its defaults."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["gora", "lora"] | None = None
    r_ref: Annotated[int, Field(ge=1, le=MAX_RANK)] | None = None
    alpha: float | None = None
    target_modules: Annotated[list[ModuleName], Field(max_length=256)] | ModuleName | None = None
    r_min: Annotated[int, Field(ge=0, le=MAX_RANK)] | None = None
    r_max: Annotated[int, Field(ge=1, le=MAX_RANK)] | None = None
    probe_steps: Annotated[int, Field(ge=1, le=100_000)] | None = None
    gamma: float | None = None
    importance: str | None = None
    allocation: str | None = None
    features: str | None = None
    lr_ratio_b: float | None = None
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    lora_dropout: float | None = None
    modules_to_save: Annotated[list[ModuleName], Field(max_length=256)] | None = None


class GpuRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    pool: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    count: Annotated[int, Field(ge=1, le=64)] = 1


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=PRINTABLE)]
    training_file: FileRef
    validation_file: FileRef | None = None
    suffix: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)] | None = None
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    integrations: list[Any] | None = Field(default=None, description="Accepted, not used")
    adapter: AdapterSpec | None = None
    gpu: GpuRequest | None = None
    priority: Annotated[int, Field(ge=0, le=9)] = 0


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
            id=event_id(event.seq),
            created_at=to_unix(event.created_at) or 0,
            level=event.level,
            message=event.message,
            data=event.data,
            type=event.type,
        )


def event_id(seq: int) -> str:
    """Events are numbered in the order they were written; the public id carries the number."""
    return f"{ids.EVENT}-{seq}"


def event_seq(event_id_value: str) -> int | None:
    head, _, number = event_id_value.partition("-")
    return int(number) if head == ids.EVENT and number.isdigit() and len(number) < 19 else None


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


class AllocationLayerOut(BaseModel):
    name: str
    d_in: int
    d_out: int
    importance: float | None
    share: float | None
    rank: int
    params: int


class AllocationOut(BaseModel):
    """``gora_allocation.json`` (gora-spec.md §5)."""

    object: Literal["fine_tuning.job.allocation"] = "fine_tuning.job.allocation"
    job_id: str
    adapter_type: str
    layers: list[AllocationLayerOut]
    totals: dict[str, Any]
    config: dict[str, Any]
    probe: dict[str, Any]
