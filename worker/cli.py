"""What ``gora worker`` and ``gora reconcile`` run (the commands themselves live in cli/main.py)."""

from __future__ import annotations

import os
import threading

from service.core.db import Database
from service.core.queue import JobQueue, make_celery, queue_for_pool
from service.core.settings import get_settings
from worker.settings import WorkerSettings


def start_worker(pool: str, gpus: str | None, reconcile: bool, loglevel: str = "INFO") -> None:
    """A Celery worker on the pool's queue, one job at a time; the reconciler runs beside it."""
    if gpus is not None:
        # Set before anything imports torch: the job's child inherits the pinned devices.
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    from celery import signals

    from worker.celery_app import app

    stop = threading.Event()
    # Started once the pool's processes exist, so no fork copies the threads' connections.
    signals.worker_ready.connect(lambda **_: start_presence(pool, stop), weak=False)
    if reconcile and WorkerSettings().reconcile_every_s > 0:
        signals.worker_ready.connect(lambda **_: start_reconciler(stop), weak=False)
    signals.worker_shutdown.connect(lambda **_: stop.set(), weak=False)
    name = f"{pool}-{os.getpid()}@%h"
    argv = ["worker", "-Q", queue_for_pool(pool), "-c", "1", "-n", name, "--loglevel", loglevel]
    # No mingle/gossip: workers share nothing but the queue, and both slow the start down.
    app.worker_main([*argv, "--without-mingle", "--without-gossip"])


def start_presence(pool: str, stop: threading.Event) -> threading.Thread:
    from worker.presence import run_presence

    database = Database(get_settings().database_url)
    args = (database, pool, WorkerSettings().heartbeat_s, stop)
    thread = threading.Thread(target=run_presence, args=args, name="presence", daemon=True)
    thread.start()
    return thread


def start_reconciler(stop: threading.Event) -> threading.Thread:
    from worker.reconciler import run_forever

    settings = get_settings()
    queue = JobQueue(make_celery(settings))
    args = (Database(settings.database_url), queue, WorkerSettings(), stop)
    thread = threading.Thread(target=run_forever, args=args, name="reconciler", daemon=True)
    thread.start()
    return thread


def reconcile_now() -> str:
    from worker.reconciler import reconcile_once

    settings = get_settings()
    database = Database(settings.database_url)
    try:
        return str(reconcile_once(database, JobQueue(make_celery(settings)), WorkerSettings()))
    finally:
        database.dispose()
