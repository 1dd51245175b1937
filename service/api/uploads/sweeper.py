"""The sweep each API server runs: pending uploads past their expiry end ``expired``, their parts'
rows and bytes gone (``service.core.files.uploads.sweep_expired``)."""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool

from service.core.db import Database
from service.core.files.uploads import sweep_expired
from service.core.settings import Settings
from service.core.storage import Storage

log = logging.getLogger(__name__)


async def run_upload_sweeper(settings: Settings, store: Storage) -> None:
    database = Database(settings.database_url)
    try:
        while True:
            try:
                await run_in_threadpool(database.run, lambda session: sweep_expired(session, store))
            except Exception:  # the database restarting, say: the next sweep finds the rest
                log.exception("upload sweep failed; trying again")
            await asyncio.sleep(settings.upload_sweep_interval_s)
    finally:
        database.dispose()
