"""A worker's presence: every heartbeat, ``gora worker`` stamps its row (pool, GPUs) so that
``GET /v1/pools`` shows who is online; on a clean stop it removes the row (a killed worker's row
ages out of "online" and is forgotten after a day)."""

from __future__ import annotations

import logging
import os
import socket
import threading

from service.core.db import Database
from service.core.workers import repository

log = logging.getLogger(__name__)


def visible_gpus() -> list[str]:
    return [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]


def run_presence(database: Database, pool: str, every_s: float, stop: threading.Event) -> None:
    host = socket.gethostname()
    worker_id, gpus = f"{host}/{os.getpid()}", visible_gpus()
    try:  # housekeeping, once per worker start (not on every read of the pools)
        database.run(repository.forget_the_long_gone)
    except Exception:
        log.warning("could not forget the rows of long-gone workers", exc_info=True)
    while not stop.is_set():
        try:
            database.run(lambda session: repository.seen(session, worker_id, host, pool, gpus))
        except Exception:  # the database restarting: shown offline for a while, nothing lost
            log.warning("could not stamp this worker's presence; trying again", exc_info=True)
        stop.wait(every_s)
    try:
        database.run(lambda session: repository.gone(session, worker_id))
    except Exception:
        log.warning("could not remove this worker's presence row", exc_info=True)
    finally:
        database.dispose()
