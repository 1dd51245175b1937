"""Telling workers that a job is ready: a Celery message by task name, sent after the job's row commits.

The broker only carries "job X is ready"; the database stays the source of truth. A message that cannot
be sent leaves the job ``queued``, where the worker's reconciler finds it and sends it again.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from service.core.settings import Settings

log = logging.getLogger(__name__)

RUN_JOB_TASK = "gora.run_job"
CPU_POOL = "cpu"


def queue_for_pool(pool: str) -> str:
    """``cpu`` for CPU-only workers, ``gpu.<pool>`` for a GPU pool (one worker process per GPU)."""
    return CPU_POOL if pool == CPU_POOL else f"gpu.{pool}"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings the API and the workers share, so both ends agree on the transport."""
    transport_options: dict[str, Any] = {
        # Redis re-delivers an unacknowledged message after this. A running job's message stays
        # unacknowledged (acks_late), so it should exceed the longest job; a re-delivery is only a
        # duplicate turn, which claims nothing (docs/worker.md, "Who owns which failure").
        "visibility_timeout": settings.visibility_timeout_s,
        "socket_connect_timeout": 5,
    }
    if settings.broker_url.startswith("filesystem"):
        messages = settings.broker_dir / "messages"
        control = settings.broker_dir / "control"
        for folder in (messages, control):
            folder.mkdir(parents=True, exist_ok=True)
        transport_options = {
            "data_folder_in": str(messages),
            "data_folder_out": str(messages),
            "control_folder": str(control),
        }
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport_options,
        "task_ignore_result": True,
        "broker_connection_retry_on_startup": True,
        # A publish to a broker that is down fails fast: the job stays queued for the reconciler.
        "task_publish_retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.5},
    }


def make_celery(settings: Settings) -> Celery:
    app = Celery("gora")
    app.conf.update(celery_config(settings))
    return app


class JobQueue:
    """Sends ``gora.run_job(job_id)`` to the queue of the job's pool."""

    def __init__(self, celery: Celery):
        self.celery = celery

    def enqueue(self, job_id: str, pool: str) -> bool:
        """True when the broker took the message; False (logged) when it did not."""
        try:
            self.celery.send_task(RUN_JOB_TASK, args=[job_id], queue=queue_for_pool(pool))
        except Exception:
            log.exception("could not enqueue job %s on pool %s; it stays queued", job_id, pool)
            return False
        return True

    def ping(self, timeout_s: float = 2.0) -> None:
        """Raises when the broker cannot be reached within ``timeout_s``."""
        with self.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=0, timeout=timeout_s)
