"""The training child: ``python -m worker.child <job id> <worker id>``, one process per rank.

Started by the supervisor (worker/supervisor.py), alone or under torchrun; a crash, an OOM or a kill
here never touches the Celery worker. Exit 0 means the outcome (succeeded, cancelled, or a failure
the submitter can fix) is recorded; anything else leaves it to the supervisor, which fails the job
with what a rank recorded (workspace.record_rank_failure) or an internal code and the log's tail.
"""

from __future__ import annotations

import json
import logging
import os
import sys

import torch
import torch.distributed as dist

from service.core.db import Database
from service.core.jobs.errors import JobError, JobUserError
from service.core.settings import get_settings
from service.core.storage import Storage
from worker.logs import configure, set_process_job
from worker.plan import load_plan
from worker.processes import die_with_parent, rank_and_world
from worker.recipe import JobRecipe
from worker.reporting import JobReporter, QuietReporter
from worker.settings import WorkerSettings
from worker.workspace import Workspace, record_rank_failure

log = logging.getLogger("worker.child")


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


def main(job_id: str, worker_id: str) -> int:
    die_with_parent()
    configure(logging.INFO)  # JSON lines into the child's log file, with the job on each
    set_process_job(job_id)
    settings, worker_settings = get_settings(), WorkerSettings()
    rank, world = rank_and_world()
    if world > 1:
        init_distributed()
    database = Database(settings.database_url)
    work_root = worker_settings.work_root(settings)
    # Each rank has its own local copies (data, a resumed checkpoint); rank 0's is the job's.
    work = Workspace.of(work_root, job_id, rank)
    work.prepare()
    reporter_class = JobReporter if rank == 0 else QuietReporter
    reporter = reporter_class(
        database, job_id, worker_id, worker_settings.cancel_poll_s, worker_settings.db_patience_s
    )
    try:
        plan = load_plan(database, job_id, str(settings.models_dir))
        set_process_job(job_id, plan.team_id)
        JobRecipe(plan, reporter, Storage(settings.storage_url), work, rank, world).run()
    except JobUserError as exc:
        # A user error (bad data, model, config, divergence) is met by every rank alike; rank 0
        # records it, the others just end.
        log.info("job %s failed (user error): %s", job_id, json.dumps(exc.error.as_dict()))
        reporter.fail(exc.error)
    except torch.OutOfMemoryError as exc:
        # Any device's allocator; the first line of torch's message says how much was asked for.
        error = JobError.out_of_memory(str(exc).split(".")[0])
        if rank != 0:  # it cannot write the job's record: it leaves it for the supervisor
            record_rank_failure(work_root, job_id, rank, error)
            raise  # and ends the group: torchrun stops the other ranks
        log.info("job %s failed: out of device memory: %s", job_id, exc)
        reporter.fail(error)
    finally:
        database.dispose()
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    work.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
