"""A team's webhook endpoints, and the notices a job's status moves put in their outbox."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from service.core import ids
from service.core.clock import to_unix, utcnow
from service.core.errors import InvalidRequest, NotFound
from service.core.webhooks import repository
from service.core.webhooks.models import WebhookDelivery, WebhookEndpoint
from service.core.webhooks.signing import new_secret

# The job statuses a team can be told about, by OpenAI's event names.
EVENT_OF_STATUS = {
    "succeeded": "fine_tuning.job.succeeded",
    "failed": "fine_tuning.job.failed",
    "cancelled": "fine_tuning.job.cancelled",
    "paused": "fine_tuning.job.paused",
}
EVENT_TYPES = tuple(EVENT_OF_STATUS.values())
MAX_URL = 2048


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > MAX_URL:
        raise InvalidRequest(
            f"url must be an http:// or https:// address with a host, at most {MAX_URL} "
            f"characters; got {url[:100]!r}",
            param="url",
        )
    return url


def _check_events(events: list[str] | None) -> list[str]:
    if events is None:
        return list(EVENT_TYPES)
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown or not events:
        raise InvalidRequest(
            f"events must be a non-empty list of {', '.join(EVENT_TYPES)}; got {unknown or events}",
            param="events",
        )
    return sorted(set(events), key=EVENT_TYPES.index)


def create_endpoint(
    session: Session, team_id: str, url: str, events: list[str] | None
) -> WebhookEndpoint:
    row = WebhookEndpoint(
        id=ids.new_id(ids.WEBHOOK),
        team_id=team_id,
        url=_check_url(url),
        secret=new_secret(),
        events=_check_events(events),
    )
    repository.add(session, row)
    return row


def get_endpoint(session: Session, team_id: str, endpoint_id: str) -> WebhookEndpoint:
    row = repository.get_endpoint(session, team_id, endpoint_id)
    if row is None:
        raise NotFound(
            f"no webhook endpoint with id {endpoint_id!r}",
            param="webhook_id",
            code="webhook_not_found",
        )
    return row


def list_endpoints(
    session: Session, team_id: str, after: str | None, limit: int
) -> tuple[list[WebhookEndpoint], bool]:
    cursor = None
    if after is not None:
        cursor = repository.get_endpoint(session, team_id, after)
        if cursor is None:
            raise InvalidRequest(f"no webhook endpoint with id {after!r}", param="after")
    return repository.list_endpoints(session, team_id, cursor, limit)


def delete_endpoint(session: Session, team_id: str, endpoint_id: str) -> None:
    """The endpoint and its delivery log; pending deliveries are not sent."""
    repository.delete_endpoint(session, get_endpoint(session, team_id, endpoint_id).id)


def list_deliveries(
    session: Session, team_id: str, endpoint_id: str, after: str | None, limit: int
) -> tuple[list[WebhookDelivery], bool]:
    endpoint = get_endpoint(session, team_id, endpoint_id)
    cursor = None
    if after is not None:
        cursor = repository.get_delivery(session, endpoint.id, after)
        if cursor is None:
            raise InvalidRequest(f"no delivery with id {after!r} to this endpoint", param="after")
    return repository.list_deliveries(session, endpoint.id, cursor, limit)


def notify_job_status(session: Session, team_id: str, job_id: str, status: str) -> None:
    """Queues a notice of the job's new status to each of the team's endpoints that asked for it,
    in the caller's transaction (the one that moved the job)."""
    event_type = EVENT_OF_STATUS.get(status)
    if event_type is None:
        return
    for endpoint in repository.endpoints_for(session, team_id):
        if event_type in endpoint.events:
            message_id = ids.new_id(ids.WEBHOOK_MESSAGE)
            body = _payload(message_id, event_type, job_id, status)
            repository.add(
                session,
                WebhookDelivery(
                    id=message_id,
                    endpoint_id=endpoint.id,
                    job_id=job_id,
                    event_type=event_type,
                    body=body,
                ),
            )


def _payload(message_id: str, event_type: str, job_id: str, status: str) -> str:
    """OpenAI's webhook event: ``{id, object: "event", created_at, type, data: {id}}``, plus the
    status reached (the job itself is one GET away)."""
    event: dict[str, Any] = {
        "id": message_id,
        "object": "event",
        "created_at": to_unix(utcnow()),
        "type": event_type,
        "data": {"id": job_id, "status": status},
    }
    return json.dumps(event, separators=(",", ":"))
