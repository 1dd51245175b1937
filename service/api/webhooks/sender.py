"""The webhook sender each API server runs beside its requests: a loop that sends due deliveries
(``service.core.webhooks.delivery``) in a thread, and sleeps when there are none."""

from __future__ import annotations

import asyncio
import logging

import httpx
from starlette.concurrency import run_in_threadpool

from service.core.db import Database
from service.core.settings import Settings
from service.core.webhooks.delivery import RetryPolicy, deliver_due

log = logging.getLogger(__name__)


async def run_sender(settings: Settings) -> None:
    database = Database(settings.database_url)
    policy = RetryPolicy(tuple(settings.webhook_retry_waits_s), settings.webhook_timeout_s)
    # No redirects: a notice goes where the team registered it, nowhere else.
    client = httpx.Client(follow_redirects=False)
    try:
        while True:
            try:
                sent = await run_in_threadpool(deliver_due, database, client, policy)
            except Exception:  # a database restart, say: the outbox keeps what is due
                log.exception("webhook delivery round failed; trying again")
                sent = 0
            if not sent:
                await asyncio.sleep(settings.webhook_poll_interval_s)
    finally:
        client.close()
        database.dispose()
