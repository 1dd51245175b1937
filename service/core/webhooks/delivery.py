"""Sending what the outbox holds: each due delivery is leased, POSTed signed, and its outcome logged;
a failure (no answer, or not 2xx) is tried again after the next wait of the retry schedule, and after
the last one the delivery is ``failed``. Every API server runs a sender; the lease (a locked read that
moves the next attempt past the send's timeout) keeps two from sending the same attempt."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy.orm import Session

from service.core.clock import utcnow
from service.core.db import Database
from service.core.webhooks import repository, signing
from service.core.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class RetryPolicy:
    """``waits_s[i]``: the wait after attempt i + 1 failed; ``len(waits_s) + 1`` attempts in all."""

    waits_s: Sequence[float]
    timeout_s: float

    @property
    def lease_s(self) -> float:
        return self.timeout_s + 30.0  # past any send still in flight


@dataclass(frozen=True)
class Attempt:
    delivery_id: str
    url: str
    secret: str
    body: str


def deliver_due(
    database: Database, client: httpx.Client, policy: RetryPolicy, limit: int = 20
) -> int:
    """One round: sends every due delivery (up to ``limit``); returns how many it tried."""
    attempts = database.run(lambda session: _lease_due(session, policy, limit))
    for attempt in attempts:
        outcome = _send(client, attempt, policy.timeout_s)
        database.run(functools.partial(_record, attempt=attempt, outcome=outcome, policy=policy))
    return len(attempts)


def _lease_due(session: Session, policy: RetryPolicy, limit: int) -> list[Attempt]:
    now = utcnow()
    until = now + timedelta(seconds=policy.lease_s)
    leased = []
    for row in repository.due_deliveries(session, now, limit):
        # Compare-and-set: only the server whose update finds the row as it read it sends this
        # attempt (SQLite has no SKIP LOCKED, and two processes may share one file).
        if not repository.lease(session, row.id, row.next_attempt_at, until):
            continue
        endpoint = session.get(WebhookEndpoint, row.endpoint_id)
        assert endpoint is not None  # deleted together with its deliveries
        leased.append(Attempt(row.id, endpoint.url, endpoint.secret, row.body))
    return leased


def _send(
    client: httpx.Client, attempt: Attempt, timeout_s: float
) -> tuple[int | None, str | None]:
    """(HTTP status, error): the status when the endpoint answered, the error when it did not."""
    timestamp = int(time.time())  # the attempt's time, signed: a receiver rejects old replays
    headers = signing.headers(attempt.secret, attempt.delivery_id, timestamp, attempt.body)
    try:
        response = client.post(
            attempt.url, content=attempt.body.encode(), headers=headers, timeout=timeout_s
        )
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"


def _record(
    session: Session,
    *,
    attempt: Attempt,
    outcome: tuple[int | None, str | None],
    policy: RetryPolicy,
) -> None:
    status, error = outcome
    row = session.get(WebhookDelivery, attempt.delivery_id)
    if row is None:  # its endpoint was deleted meanwhile
        return
    now = utcnow()
    row.attempts += 1
    row.last_attempt_at, row.response_status, row.last_error = now, status, error
    if error is None:
        row.status, row.delivered_at, row.next_attempt_at = DeliveryStatus.SUCCEEDED, now, None
    elif row.attempts > len(policy.waits_s):
        row.status, row.next_attempt_at = DeliveryStatus.FAILED, None
    else:
        row.next_attempt_at = now + timedelta(seconds=policy.waits_s[row.attempts - 1])
