"""A job as submitted (``JobCreate``: OpenAI's fields, so its client works unchanged, plus GoRA's
``adapter`` and ``gpu``) and its resolution into the full spec the worker runs; each bad field is an
``InvalidRequest`` naming it.

The spec is resolved here, once: "auto" hyperparameters become numbers and the adapter settings
become a complete ``GoraConfig``, so the stored row alone says exactly what will run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.orm import Session

from gora.config import ADAPTER_TYPES, GoraConfig
from gora.data.formats import method_format_error
from gora.train import defaults as training_defaults
from gora.train.config import TrainingConfig
from gora.validation import AUTO, ConfigError
from service.core.errors import InvalidRequest
from service.core.fields import PRINTABLE
from service.core.files import repository as files_repository
from service.core.files.models import PURPOSE_FINE_TUNE, FileStatus, StoredFile
from service.core.jobs.catalog import TASK_OF_FORMAT, resolve_model
from service.core.jobs.warm_start import resolve_warm_start
from service.core.settings import Settings

Auto = Literal["auto"]
Search = Literal["search"]
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
    learning_rate_multiplier: Auto | Search | Annotated[float, Field(gt=0, le=100)] = Field(
        default="auto",
        description='"auto" (the method\'s default rate), a number times it, or "search": the '
        "job tries rates around the default and keeps the best on validation loss",
    )
    max_steps: Annotated[int, Field(ge=1, le=10_000_000)] | None = Field(
        default=None,
        description="Stop after this many optimizer steps (default: the epochs decide)",
    )
    max_seq_length: Annotated[int, Field(ge=16, le=131_072)] | None = None
    log_every_steps: Annotated[int, Field(ge=1, le=100_000)] | None = None
    checkpoint_every_steps: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    search_budget: Annotated[float, Field(gt=1, le=10)] | None = Field(
        default=None,
        description='With learning_rate_multiplier "search": the most training work the search '
        "may cost, in plain jobs (default 1.75)",
    )
    retry_on_collapse: bool = Field(
        default=True,
        description="When the loss diverges or a classifier answers one class for every example, "
        "retry once at half the rate from the initial adapter",
    )


class DpoHyperparameters(Hyperparameters):
    """OpenAI's DPO knobs: the supervised ones and ``beta`` (auto: OpenAI's 0.1)."""

    beta: Auto | Annotated[float, Field(gt=0, le=10)] = "auto"


class SupervisedMethod(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    hyperparameters: Hyperparameters | None = None


class DpoMethod(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    hyperparameters: DpoHyperparameters | None = None


# The methods this service trains (OpenAI's method.type); another is a 400 that lists these.
SUPPORTED_METHODS = ("supervised", "dpo")
DEFAULT_BETA = 0.1  # OpenAI's documented default


class Method(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: Annotated[str, StringConstraints(max_length=64, pattern=PRINTABLE)] = "supervised"
    supervised: SupervisedMethod | None = None
    dpo: DpoMethod | None = None


class AdapterSpec(BaseModel):
    """GoRA/LoRA settings (the fields of ``gora.config.GoraConfig``); unset fields take its defaults."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal[ADAPTER_TYPES] | None = None  # type: ignore[valid-type]
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
    dry_run: bool = Field(
        default=False,
        description="Validate, tokenise and (GoRA) probe on a worker, then stop: the allocation, "
        "parameter and token counts, steps and an estimated duration, without training",
    )
    from_checkpoint: Annotated[str, StringConstraints(max_length=100, pattern=PRINTABLE)] | None = (
        Field(
            default=None,
            description="Continue from a succeeded job (its id) or a checkpoint (its id) of your "
            "team, on this job's data; GoRA keeps that adapter's ranks (no probe)",
        )
    )


# Defaults of the service's own run-length knobs (the library has no say in these).
DEFAULT_MAX_SEQ_LENGTH = 512
DEFAULT_LOG_EVERY_STEPS = 10
DEFAULT_CHECKPOINT_EVERY_STEPS = 100


@dataclass
class JobSpec:
    method: str  # "supervised" or "dpo"
    model_source: dict[str, Any]
    task: str
    training_file: StoredFile
    validation_file: StoredFile | None
    hyperparameters: dict[str, Any]
    adapter: dict[str, Any]
    pool: str
    gpu_count: int
    from_checkpoint: dict[str, Any] | None = None


def _usable_file(session: Session, team_id: str, file_id: str, param: str) -> StoredFile:
    row = files_repository.get_for_team(session, team_id, file_id)
    if row is None:
        raise InvalidRequest(f"no file with id {file_id!r}", param=param, code="file_not_found")
    if row.purpose != PURPOSE_FINE_TUNE:
        raise InvalidRequest(
            f"file {file_id} has purpose {row.purpose!r}; train on a file uploaded with "
            f"purpose {PURPOSE_FINE_TUNE!r}",
            param=param,
            code="invalid_file_purpose",
        )
    if row.status != FileStatus.PROCESSED:
        raise InvalidRequest(
            f"file {file_id} has errors and cannot be used: {row.status_details}",
            param=param,
            code="file_not_processed",
        )
    return row


def _check_task(model_source: dict[str, Any], training: StoredFile) -> str:
    task = TASK_OF_FORMAT[training.data_format or "text"]
    model_task = model_source.get("task")
    if model_task is not None and model_task != task:
        raise InvalidRequest(
            f"model {model_source['name']!r} is for {model_task}, but training file {training.id} "
            f"holds {training.data_format} rows, which train {task}",
            param="model",
            code="model_task_mismatch",
        )
    return task


def _method(body: JobCreate) -> Method:
    method = body.method or Method()
    if method.type not in SUPPORTED_METHODS:
        raise InvalidRequest(
            f"method.type {method.type!r} is not trained here; supported: "
            + ", ".join(SUPPORTED_METHODS),
            param="method.type",
            code="unsupported_method",
        )
    other = "dpo" if method.type == "supervised" else "supervised"
    if getattr(method, other) is not None:
        raise InvalidRequest(
            f"method.{other} is given but method.type is {method.type!r}; give the settings "
            f"under method.{method.type}",
            param=f"method.{other}",
        )
    return method


def _given_hyperparameters(body: JobCreate, method: Method) -> Hyperparameters:
    """The hyperparameters as OpenAI's ``method.<type>.hyperparameters`` or, for supervised jobs
    (deprecated there but still accepted), at the top level; both given must agree."""
    if method.type == "dpo":
        if body.hyperparameters is not None:
            raise InvalidRequest(
                "a DPO job takes its hyperparameters under method.dpo.hyperparameters (the "
                "top-level field is supervised-only)",
                param="hyperparameters",
            )
        given = method.dpo.hyperparameters if method.dpo else None
        return given or DpoHyperparameters()
    nested = method.supervised.hyperparameters if method.supervised else None
    if nested is not None and body.hyperparameters is not None and nested != body.hyperparameters:
        raise InvalidRequest(
            "hyperparameters and method.supervised.hyperparameters differ; give them once "
            "(OpenAI's place is method.supervised.hyperparameters)",
            param="hyperparameters",
        )
    return nested or body.hyperparameters or Hyperparameters()


def resolve_hyperparameters(
    given: Hyperparameters,
    training_rows: int,
    *,
    adapter_type: str,
    task: str,
    method: str = "supervised",
) -> dict[str, Any]:
    """The run's numbers, stored on the job and trusted by the worker as they are.

    "auto" is resolved by the library's own rule (``TrainingConfig.resolve``, the documented
    defaults of gora.train.defaults), once, here. OpenAI's ``batch_size`` is the effective batch:
    stored with the micro-batch and accumulation steps it runs as. A DPO job's batch counts
    preference pairs, and its "auto" rate is the DPO default (``defaults.DPO_LR_RATIO``).
    """
    if given.batch_size == "auto":
        micro, accumulation = AUTO, 1
    else:
        micro, accumulation = training_defaults.split_batch(task, int(given.batch_size))
    multiplier = given.learning_rate_multiplier
    searched = multiplier == "search"
    multiplier = 1.0 if multiplier in ("auto", "search") else float(multiplier)
    run = TrainingConfig(
        n_epochs=given.n_epochs,
        batch_size=micro,
        grad_accum_steps=accumulation,
        objective="dpo" if method == "dpo" else "sft",
    ).resolve(
        adapter_type=adapter_type,
        task=task,
        n_examples=max(1, training_rows),
        lr_multiplier=multiplier,
    )
    resolved = {
        "n_epochs": run.n_epochs,
        "batch_size": run.batch_size * run.grad_accum_steps,
        "micro_batch_size": run.batch_size,
        "grad_accum_steps": run.grad_accum_steps,
        "learning_rate_multiplier": multiplier,
        "learning_rate": run.learning_rate,
        "max_steps": given.max_steps,
        "max_seq_length": given.max_seq_length or DEFAULT_MAX_SEQ_LENGTH,
        "log_every_steps": given.log_every_steps or DEFAULT_LOG_EVERY_STEPS,
        "checkpoint_every_steps": given.checkpoint_every_steps or DEFAULT_CHECKPOINT_EVERY_STEPS,
    }
    if isinstance(given, DpoHyperparameters):
        resolved["beta"] = DEFAULT_BETA if given.beta == "auto" else float(given.beta)
    resolved["retry_on_collapse"] = given.retry_on_collapse
    if searched:  # the rates to try; the worker records the one chosen over learning_rate
        resolved["learning_rate_search"] = {
            "candidates": training_defaults.rate_ladder(run.learning_rate),
            "budget": given.search_budget or training_defaults.SEARCH_BUDGET,
        }
    elif given.search_budget is not None:
        raise InvalidRequest(
            'search_budget applies to learning_rate_multiplier "search" only',
            param="hyperparameters.search_budget",
        )
    return resolved


def resolve_adapter(body: JobCreate, seed: int) -> dict[str, Any]:
    given = body.adapter.model_dump(exclude_none=True) if body.adapter else {}
    given.setdefault("seed", seed)
    try:
        return GoraConfig.from_dict(given).to_dict()
    except ConfigError as exc:
        raise InvalidRequest(
            str(exc), param=f"adapter.{exc.field}", code="invalid_adapter"
        ) from None


def _resolve_gpu(settings: Settings, body: JobCreate) -> tuple[str, int]:
    pool = (body.gpu.pool if body.gpu else None) or settings.default_pool
    if pool not in settings.pools:
        raise InvalidRequest(
            f"unknown pool {pool!r}; this server has: {', '.join(settings.pools)}",
            param="gpu.pool",
            code="unknown_pool",
        )
    count = body.gpu.count if body.gpu else 1
    if count > settings.max_gpus_per_job:
        raise InvalidRequest(
            f"gpu.count may be at most {settings.max_gpus_per_job}", param="gpu.count"
        )
    return pool, (0 if pool == "cpu" else count)


def build_spec(
    session: Session, settings: Settings, team_id: str, body: JobCreate, seed: int
) -> JobSpec:
    model_source = resolve_model(settings, body.model)
    training = _usable_file(session, team_id, body.training_file, "training_file")
    method = _method(body)
    mismatch = method_format_error(training.data_format, method.type)
    if mismatch:
        raise InvalidRequest(
            f"training file {training.id}: {mismatch}",
            param="training_file",
            code="invalid_file_format",
        )
    task = _check_task(model_source, training)
    validation = None
    if body.validation_file is not None:
        validation = _usable_file(session, team_id, body.validation_file, "validation_file")
        if validation.data_format != training.data_format:
            raise InvalidRequest(
                f"validation file holds {validation.data_format} rows but the training file "
                f"holds {training.data_format} rows",
                param="validation_file",
            )
    given = _given_hyperparameters(body, method)
    pool, gpu_count = _resolve_gpu(settings, body)
    warm = None
    if body.from_checkpoint is not None:
        warm = resolve_warm_start(
            session, team_id, body.from_checkpoint, model_source, task, training
        )
        if body.adapter is not None:
            raise InvalidRequest(
                f"a job started from {body.from_checkpoint} keeps that adapter (its type and "
                "ranks); leave adapter out",
                param="adapter",
            )
    adapter = warm["adapter"] if warm else resolve_adapter(body, seed)
    hyperparameters = resolve_hyperparameters(
        given, training.rows, adapter_type=adapter["type"], task=task, method=method.type
    )
    if "learning_rate_search" in hyperparameters and gpu_count > 1:
        raise InvalidRequest(
            'learning_rate_multiplier "search" runs on one GPU; set gpu.count to 1 or give a '
            "multiplier",
            param="hyperparameters.learning_rate_multiplier",
        )
    return JobSpec(
        method=method.type,
        model_source=model_source,
        task=task,
        training_file=training,
        validation_file=validation,
        hyperparameters=hyperparameters,
        adapter=adapter,
        pool=pool,
        gpu_count=gpu_count,
        from_checkpoint=warm,
    )
