"""The Celery app of the workers and its one task, ``gora.run_job(job_id)``.

The broker settings come from ``service.core.queue.celery_config`` (the API sends with the same ones);
what is added here is only for the consuming side, set for hour-long tasks (design.md, "Workers"):

- ``worker_prefetch_multiplier=1``: a worker reserves no message beyond the one it runs, so a
  waiting job is free for the next idle worker;
- ``task_acks_late`` + ``task_reject_on_worker_lost``: the message is acknowledged only when the task
  returns, so a worker that dies mid-job leaves it to be delivered again (Redis: after the
  visibility timeout, which ``celery_config`` sets above the longest job);
- results ignored: the database is where a job's outcome lives.

The task itself is thin: ``worker.supervisor.run_job`` claims the job and runs it in a child process.
"""

from __future__ import annotations

import logging

from celery import Celery, signals

from service.core.queue import RUN_JOB_TASK, celery_config
from service.core.settings import get_settings

log = logging.getLogger(__name__)


def worker_config() -> dict:
    config = celery_config(get_settings())
    config.update(
        worker_prefetch_multiplier=1,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_concurrency=1,
        # The job runs in its own process; the pool process only supervises it, so it is reused.
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        # A message only says "job X is ready"; its JSON is all the worker needs.
        accept_content=["json"],
        task_serializer="json",
    )
    return config


app = Celery("gora")
app.conf.update(worker_config())


@signals.setup_logging.connect
def _structured_logs(loglevel=None, **_) -> None:
    """Celery leaves the root logger to us: JSON lines off a terminal, each with its job and team."""
    from worker.logs import configure

    configure(loglevel or logging.INFO)


@app.task(name=RUN_JOB_TASK, ignore_result=True)
def run_job(job_id: str) -> str:
    """Claims ``job_id`` (or the oldest job its pool may run now) and runs it to an outcome."""
    from worker.supervisor import run_job as supervise

    return supervise(job_id)
