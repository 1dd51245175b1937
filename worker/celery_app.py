"""The Celery app of the workers and its one task, ``gora.run_job(job_id)``: "a job is ready".

The broker settings come from ``service.core.queue.celery_config`` (the API sends with the same
ones). Added here, for the consuming side of hour-long tasks: ``worker_prefetch_multiplier=1`` with
``task_acks_late``, so that a busy worker reserves no message beyond the one it runs (with early
acks it would reserve one more, and a waiting job would sit behind a busy worker). Which mechanism
owns which failure (a lost message, a dead worker or child, a stale heartbeat) is in docs/worker.md:
the database and the reconciler own every one; the broker only delivers turns.

The task is thin: ``worker.supervisor.take_turn`` claims a job and runs it in a child process.
"""

from __future__ import annotations

import logging

from celery import Celery, signals

from service.core.queue import RUN_JOB_TASK, celery_config
from service.core.settings import get_settings

log = logging.getLogger(__name__)


def worker_config() -> dict:
    config = celery_config(get_settings())
    config.update(worker_prefetch_multiplier=1, task_acks_late=True)
    return config


app = Celery("gora")
app.conf.update(worker_config())


@signals.setup_logging.connect
def _structured_logs(loglevel=None, **_) -> None:
    """Celery leaves the root logger to us: JSON lines off a terminal, each with its job and team."""
    from worker.logs import configure

    configure(loglevel or logging.INFO)


@app.task(name=RUN_JOB_TASK, ignore_result=True)
def job_ready(job_id: str) -> str:
    """A turn to run: claims ``job_id`` (or the oldest job its pool may run now) and runs it."""
    from worker.supervisor import take_turn

    return take_turn(job_id)
