"""A job's events as server-sent events, oldest first, until the job has finished and all are sent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from sqlalchemy.orm import Session

from service.api.db import AsyncDatabase
from service.api.jobs.schemas import EventOut
from service.core.jobs import repository
from service.core.jobs.lifecycle import TERMINAL
from service.core.jobs.models import JobEvent

BATCH = 100
KEEPALIVE_S = 15.0


def _read(session: Session, job_id: str, after_seq: int) -> tuple[list[JobEvent], str | None]:
    # Status first: events written before a terminal status committed are then all visible.
    status = repository.status_of(session, job_id)
    events, _ = repository.list_events(session, job_id, after_seq, BATCH, newest_first=False)
    return events, status


def format_event(event: JobEvent) -> str:
    out = EventOut.of(event)
    return f"id: {out.id}\nevent: {event.type}\ndata: {out.model_dump_json()}\n\n"


async def event_stream(
    database: AsyncDatabase, job_id: str, after_seq: int, poll_s: float
) -> AsyncIterator[str]:
    """Yields SSE frames; ends with an ``event: end`` frame once the job is finished."""
    last_sent = time.monotonic()
    while True:
        async with database.sessions() as session:  # one per poll: a stream may last hours
            events, status = await session.run_sync(_read, job_id, after_seq)
        for event in events:
            yield format_event(event)
            after_seq = event.seq
        if events:
            last_sent = time.monotonic()
            if len(events) == BATCH:
                continue  # more are waiting
        if status is None or status in TERMINAL:
            yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"
            return
        if time.monotonic() - last_sent > KEEPALIVE_S:
            yield ": keep-alive\n\n"  # a comment line: keeps proxies from closing an idle stream
            last_sent = time.monotonic()
        await asyncio.sleep(poll_s)
