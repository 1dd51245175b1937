"""Starting from earlier work (Together's ``from_checkpoint``): a new job trains, on new data, the
adapter of a finished job of the same team, or one of any job's checkpoints. GoRA keeps the ranks
that adapter has: the new job does not probe, and its allocation report says where the ranks came
from."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from service.core import ids, storage
from service.core.errors import InvalidRequest
from service.core.files import repository as files_repository
from service.core.files.models import StoredFile
from service.core.jobs import repository
from service.core.jobs.lifecycle import JobStatus
from service.core.jobs.models import Checkpoint, Job

PARAM = "from_checkpoint"


def _refused(message: str, code: str = "invalid_from_checkpoint") -> InvalidRequest:
    return InvalidRequest(message, param=PARAM, code=code)


def _source(session: Session, team_id: str, ref: str) -> tuple[Job, Checkpoint | None]:
    """The job (and checkpoint) ``ref`` names: a succeeded job's id, or a checkpoint's id."""
    if ids.is_id(ids.CHECKPOINT, ref):
        checkpoint = session.get(Checkpoint, ref)
        job = repository.get(session, checkpoint.job_id) if checkpoint is not None else None
        if checkpoint is None or job is None or job.team_id != team_id:
            raise _refused(f"no checkpoint with id {ref!r}", "checkpoint_not_found")
        return job, checkpoint
    job = repository.get(session, ref) if ids.is_id(ids.JOB, ref) else None
    if job is None or job.team_id != team_id:
        raise _refused(
            f"from_checkpoint must be one of your job ids (ftjob-…) or checkpoint ids (ftckpt-…); "
            f"no job {ref!r}",
            "job_not_found",
        )
    if job.status != JobStatus.SUCCEEDED:
        raise _refused(
            f"job {job.id} is {job.status}: start from a succeeded job, or from one of its "
            "checkpoints (GET /v1/fine_tuning/jobs/{id}/checkpoints)"
        )
    return job, None


def _labels(session: Session, file_id: str) -> list[str]:
    row = files_repository.get(session, file_id)
    return list(row.labels) if row is not None else []


def resolve_warm_start(
    session: Session,
    team_id: str,
    ref: str,
    model_source: dict[str, Any],
    task: str,
    training: StoredFile,
) -> dict[str, Any]:
    """What the worker needs to start from ``ref`` (stored on the job), after checking that the
    adapter fits: the same base model and task, and for a classifier the same labels."""
    job, checkpoint = _source(session, team_id, ref)
    if job.model_source.get("name") != model_source.get("name"):
        raise _refused(
            f"{ref} was trained on {job.model!r}; a warm start needs the same model",
            "model_mismatch",
        )
    if job.task != task:
        raise _refused(f"{ref} trained {job.task}, but the training file trains {task}")
    if task == "sequence_classification" and _labels(session, job.training_file_id) != sorted(
        training.labels
    ):
        raise InvalidRequest(
            f"training file {training.id} has labels {sorted(training.labels)}, but {ref}'s "
            f"classifier has {_labels(session, job.training_file_id)}; a warm start keeps its "
            "head, so the labels must be the same",
            param="training_file",
        )
    if checkpoint is None:
        key, step = storage.adapter_key(job.id, "peft"), None
    else:
        key, step = storage.checkpoint_adapter_key(job.id, checkpoint.step, "peft"), checkpoint.step
    return {"ref": ref, "job_id": job.id, "step": step, "adapter_key": key, "adapter": job.adapter}
