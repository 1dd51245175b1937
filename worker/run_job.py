"""The child process that runs one job: ``python -m worker.run_job <job id> <worker id>``.

Started by ``worker.supervisor``; a crash, an OOM or a kill here never touches the Celery worker.
Exit 0 means the outcome (succeeded, cancelled, or a user error) is recorded; anything else leaves it
to the supervisor, which fails the job with an internal code and this process's last log lines.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from gora.data.encoding import build_label_map
from gora.data.loading import collator_for
from gora.export import save_adapter
from gora.train import TrainingDiverged, latest_checkpoint, train
from gora.train.checkpoints import load_trainable_adapter
from service.core.db import Database
from service.core.files import repository as files_repository
from service.core.jobs import repository
from service.core.jobs.lifecycle import ErrorCode, JobPhase
from service.core.settings import get_settings
from service.core.storage import Storage, adapter_key, job_key
from worker import artifacts
from worker.errors import JobUserError, out_of_memory_error
from worker.logs import configure, set_process_job
from worker.pipeline import (
    REFERENCE_OUTPUTS,
    JobCallbacks,
    JobPlan,
    Workspace,
    build_adapter,
    encode,
    load_model,
    read_rows,
    reference_outputs,
    training_config,
)
from worker.reporting import JobReporter, QuietReporter
from worker.settings import WorkerSettings

log = logging.getLogger("worker.run_job")
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: the kernel kills this process when its supervisor dies, so no orphan keeps training."""
    with contextlib.suppress(OSError):  # not Linux: the reconciler still takes the job back
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def rank_and_world() -> tuple[int, int]:
    """(this rank, number of ranks): torchrun exports RANK and WORLD_SIZE; a plain child is 0 of 1."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed() -> None:
    """Under torchrun: this rank's GPU (LOCAL_RANK among the worker's CUDA_VISIBLE_DEVICES) and the
    process group, before the probe (gora all-reduces over it) and the Trainer (accelerate reuses it)."""
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        # Without it the Trainer sees no GPU, runs each rank on its own (no DDP) and only warns.
        os.environ["ACCELERATE_USE_CPU"] = "true"
        dist.init_process_group("gloo")
    # Every rank says it joined: the ranks share one log, and only rank 0 reports anything else.
    log.info(
        "rank %d of %d joined the %s process group",
        dist.get_rank(),
        dist.get_world_size(),
        dist.get_backend(),
    )


def file_key_of(session, team_id: str, file_id: str | None, param: str) -> str | None:
    if file_id is None:
        return None
    row = files_repository.get_for_team(session, team_id, file_id)
    if row is None:
        raise JobUserError(
            ErrorCode.USER_BAD_DATA, f"{param} {file_id} was deleted; upload it again", param
        )
    return row.storage_key


def load_plan(database: Database, job_id: str, models_dir: str) -> JobPlan:
    with database.transaction() as session:
        job = repository.get(session, job_id)
        assert job is not None, f"job {job_id} vanished"
        set_process_job(job.id, job.team_id)
        return JobPlan(
            job_id=job.id,
            model_source=job.model_source,
            task=job.task,
            training_key=file_key_of(session, job.team_id, job.training_file_id, "training_file"),
            validation_key=file_key_of(
                session, job.team_id, job.validation_file_id, "validation_file"
            ),
            hyperparameters=job.hyperparameters,
            adapter=job.adapter,
            seed=job.seed,
            models_dir=models_dir,
        )


def resume_point(storage: Storage, plan: JobPlan, work: Workspace) -> Path | None:
    """The newest checkpoint an earlier attempt left in the store, copied into the workspace."""
    prefix = job_key(plan.job_id, "checkpoints")
    steps = sorted(
        {int(k.split("/", 1)[0].removeprefix("step-")) for k, _ in storage.list_files(prefix)}
    )
    if not steps:
        return None
    local = work.checkpoints / f"checkpoint-{steps[-1]}"
    artifacts.download_dir(storage, artifacts.checkpoint_key(plan.job_id, steps[-1]), local)
    return latest_checkpoint(work.checkpoints)


def export(plan: JobPlan, model, dataset, collator, storage: Storage, work: Workspace) -> list[str]:
    out = work.root / "export"
    for adapter_format in ("peft", "uniform"):
        save_adapter(model, out / adapter_format, format=adapter_format)
        artifacts.upload_dir(
            storage, out / adapter_format, adapter_key(plan.job_id, adapter_format)
        )
    report_key = job_key(plan.job_id, "gora_allocation.json")
    if (
        out / "peft" / "gora_allocation.json"
    ).is_file():  # absent after a resume: kept from probing
        artifacts.upload_file(storage, out / "peft" / "gora_allocation.json", report_key)
    metrics_key = job_key(plan.job_id, "metrics.jsonl")
    work.metrics_file.touch()
    artifacts.upload_file(storage, work.metrics_file, metrics_key)
    reference_key = job_key(plan.job_id, REFERENCE_OUTPUTS)
    artifacts.upload_json(storage, reference_key, reference_outputs(model, dataset, collator))
    return [
        adapter_key(plan.job_id, "peft"),
        adapter_key(plan.job_id, "uniform"),
        report_key,
        metrics_key,
        reference_key,
    ]


def run(
    plan: JobPlan, reporter: JobReporter, storage: Storage, work: Workspace, rank: int = 0
) -> None:
    """The whole job on one rank; only rank 0 writes (ranks above 0 get a ``QuietReporter``)."""
    # The pid lets an operator (and the tests) find the training process of a job.
    reporter.phase(
        JobPhase.LOADING, f"Loading model {plan.model_source['name']} and data", pid=os.getpid()
    )
    fmt, rows, lines = read_rows(storage, plan.training_key, work, "training_file")
    label2id = build_label_map(rows) if plan.task == "sequence_classification" else None
    base, tokenizer = load_model(plan, list(label2id) if label2id else None)
    collator = collator_for(tokenizer)
    dataset, stats = encode(plan, rows, fmt, lines, tokenizer, label2id, "training_file")
    valid = None
    if plan.validation_key:
        v_fmt, v_rows, v_lines = read_rows(storage, plan.validation_key, work, "validation_file")
        valid, _ = encode(plan, v_rows, v_fmt, v_lines, tokenizer, label2id, "validation_file")
    reporter.event(f"Data: {stats.examples} examples, {stats.trained_tokens} trained tokens")
    checkpoint = resume_point(storage, plan, work)
    if checkpoint is not None:
        reporter.event(f"Resuming from checkpoint {checkpoint.name}")
        model = load_trainable_adapter(base, checkpoint)
    else:
        model = build_adapter(plan, base, dataset, collator, reporter, storage, rank)
    config = training_config(plan, work, len(dataset))
    reporter.phase(
        JobPhase.TRAINING, f"Training: {config.n_epochs} epochs, batch {config.batch_size}"
    )
    callbacks = JobCallbacks(plan, reporter, storage, work)
    try:
        result = train(model, dataset, collator, config, callbacks, valid, checkpoint)
    except TrainingDiverged as exc:
        raise JobUserError(
            ErrorCode.USER_BAD_CONFIG, str(exc), "hyperparameters.learning_rate_multiplier"
        ) from exc
    if result.cancelled:
        reporter.cancelled(result.steps)
        return
    if rank != 0:  # rank 0 exports and records the outcome
        return
    reporter.phase(JobPhase.EXPORTING, "Exporting the adapter (PEFT and uniform formats)")
    if rank_and_world()[1] > 1:  # the reference pass runs on the CPU, as in one process
        model = model.to("cpu")
    files = export(plan, model, dataset, collator, storage, work)
    reporter.succeed(
        files, result.trained_tokens, f"{plan.model_source['name']}:gora:{plan.job_id}"
    )


def main(job_id: str, worker_id: str) -> int:
    die_with_parent()
    configure(logging.INFO)  # JSON lines into the child's log file, with the job on each
    set_process_job(job_id)
    settings, worker_settings = get_settings(), WorkerSettings()
    rank, world = rank_and_world()
    if world > 1:
        init_distributed()
    database = Database(settings.database_url)
    # Each rank has its own local copies (data, a resumed checkpoint); rank 0's is the job's.
    name = job_id if rank == 0 else f"{job_id}.rank{rank}"
    work = Workspace(Path(worker_settings.work_dir or settings.data_dir / "work") / name)
    shutil.rmtree(work.root / "export", ignore_errors=True)
    work.root.mkdir(parents=True, exist_ok=True)
    reporter_class = JobReporter if rank == 0 else QuietReporter
    reporter = reporter_class(database, job_id, worker_id, worker_settings.cancel_poll_s)
    try:
        plan = load_plan(database, job_id, str(settings.models_dir))
        run(plan, reporter, Storage(settings.storage_url), work, rank)
    except JobUserError as exc:
        # A user error (bad data, model, config, divergence) is met by every rank alike; rank 0
        # records it, the others just end.
        log.info("job %s failed (user error): %s", job_id, json.dumps(exc.as_error()))
        reporter.fail(exc.as_error())
    except torch.OutOfMemoryError as exc:
        # Any device's allocator; the first line of torch's message says how much was asked for.
        log.info("job %s failed: out of device memory: %s", job_id, exc)
        reporter.fail(out_of_memory_error(str(exc).split(".")[0]))
    finally:
        database.dispose()
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    shutil.rmtree(work.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
