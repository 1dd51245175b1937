"""Structured worker logs: JSON lines when the stream is not a terminal, readable text when it is,
with the job id and the team on every line.

The job and team are context (``contextvars``), not arguments: ``bound(job_id, team_id)`` sets them for
a block (the supervisor, once it has claimed a job; the training child for its whole life), and the
``JobContext`` filter on the handler stamps them on every record that passes through it, whichever
logger emitted it (ours, Celery's; transformers' logger does not propagate to the root unless
``transformers.utils.logging.enable_propagation()`` is called). Outside a job they are ``null`` (JSON)
or ``-``.

Wired in: ``gora worker`` (Celery's ``setup_logging`` signal, worker/celery_app.py), the supervisor
(``bound`` once it has claimed a job) and the training child (``configure`` + ``set_process_job``: the
job and, once the job row is read, the team, for every thread of the process).

    from worker.logs import bound, configure
    configure()                      # once per process: replaces the root logger's handlers
    with bound(job.id, job.team_id):
        log.info("child started")    # {"ts": ..., "level": "INFO", ..., "job_id": "ftjob-...", "team_id": "team-..."}

``GORA_LOG_FORMAT=json`` or ``text`` overrides the terminal test.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any

from worker.processes import rank_and_world

_JOB_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("gora_job_id", default=None)
_TEAM_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("gora_team_id", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [job=%(job_id)s team=%(team_id)s] %(message)s"


@contextmanager
def bound(job_id: str | None, team_id: str | None = None) -> Iterator[None]:
    """Every log line inside the block carries this job and team."""
    job_token = _JOB_ID.set(job_id)
    team_token = _TEAM_ID.set(team_id)
    try:
        yield
    finally:
        _TEAM_ID.reset(team_token)
        _JOB_ID.reset(job_token)


# A process that lives for one job (the training child) sets it once for all its threads: a new thread
# starts with an empty context, so ``bound`` in the main thread would not reach it.
_PROCESS: dict[str, str | None] = {"job_id": None, "team_id": None}


def set_process_job(job_id: str | None, team_id: str | None = None) -> None:
    """The job (and team) of every line of this process that no ``bound`` block overrides."""
    _PROCESS.update(job_id=job_id, team_id=team_id)


def current() -> tuple[str | None, str | None]:
    return _JOB_ID.get() or _PROCESS["job_id"], _TEAM_ID.get() or _PROCESS["team_id"]


class JobContext(logging.Filter):
    """Sets ``record.job_id`` and ``record.team_id`` from the context (a value the caller passed in
    ``extra=`` wins); never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        job_id, team_id = current()
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id
        if getattr(record, "team_id", None) is None:
            record.team_id = team_id
        return True


def distributed_rank() -> int | None:
    """This process's rank in a multi-process job, else None: the ranks of one job write into one
    log, so each line says which rank wrote it."""
    rank, world = rank_and_world()
    return rank if world > 1 else None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601), level, logger, message, job_id, team_id,
    process, ``rank`` in a multi-process job, and ``exc`` with the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "job_id": getattr(record, "job_id", None),
            "team_id": getattr(record, "team_id", None),
            "process": record.process,
        }
        rank = distributed_rank()
        if rank is not None:
            line["rank"] = rank
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, with ``-`` for a job or team that is not set."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        job_id, team_id = getattr(record, "job_id", None), getattr(record, "team_id", None)
        record.job_id, record.team_id = job_id or "-", team_id or "-"
        try:
            return super().format(record)
        finally:
            record.job_id, record.team_id = job_id, team_id


def wants_json(stream: IO[str]) -> bool:
    choice = os.environ.get("GORA_LOG_FORMAT", "").strip().lower()
    if choice in ("json", "text"):
        return choice == "json"
    isatty = getattr(stream, "isatty", None)
    return not (isatty is not None and isatty())


def make_handler(stream: IO[str] | None = None) -> logging.Handler:
    stream = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if wants_json(stream) else TextFormatter())
    handler.addFilter(JobContext())
    return handler


def configure(level: int | str = logging.INFO, stream: IO[str] | None = None) -> logging.Handler:
    """The root logger writes through one structured handler (its other handlers removed)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = make_handler(stream)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    return handler
