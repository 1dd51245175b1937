"""SQL for webhook endpoints and their deliveries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.core.pagination import keyset_page
from service.core.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint


def add(session: Session, row: WebhookEndpoint | WebhookDelivery) -> None:
    session.add(row)
    session.flush()


def get_endpoint(session: Session, team_id: str, endpoint_id: str) -> WebhookEndpoint | None:
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.team_id == team_id
    )
    return session.scalars(query).one_or_none()


def list_endpoints(
    session: Session, team_id: str, cursor: WebhookEndpoint | None, limit: int
) -> tuple[list[WebhookEndpoint], bool]:
    query = select(WebhookEndpoint).where(WebhookEndpoint.team_id == team_id)
    return keyset_page(session, query, WebhookEndpoint, cursor, limit)


def endpoints_for(session: Session, team_id: str) -> list[WebhookEndpoint]:
    query = select(WebhookEndpoint).where(WebhookEndpoint.team_id == team_id)
    return list(session.scalars(query.order_by(WebhookEndpoint.created_at)))


def delete_endpoint(session: Session, endpoint_id: str) -> None:
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id))
    session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))


def get_delivery(session: Session, endpoint_id: str, delivery_id: str) -> WebhookDelivery | None:
    query = select(WebhookDelivery).where(
        WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint_id
    )
    return session.scalars(query).one_or_none()


def list_deliveries(
    session: Session, endpoint_id: str, cursor: WebhookDelivery | None, limit: int
) -> tuple[list[WebhookDelivery], bool]:
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    return keyset_page(session, query, WebhookDelivery, cursor, limit)


def lease(session: Session, delivery_id: str, seen: datetime | None, until: datetime) -> bool:
    """Moves a pending delivery's next attempt to ``until`` if it is still at ``seen``."""
    statement = (
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .where(WebhookDelivery.status == DeliveryStatus.PENDING)
        .where(WebhookDelivery.next_attempt_at == seen)
        .values(next_attempt_at=until)
        .execution_options(synchronize_session=False)
    )
    return session.execute(statement).rowcount == 1  # type: ignore[attr-defined]


def due_deliveries(session: Session, now: datetime, limit: int) -> list[WebhookDelivery]:
    """Pending deliveries whose time has come, locked; rows another server has locked are
    skipped (PostgreSQL), so two API servers never send the same attempt."""
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.status == DeliveryStatus.PENDING)
        .where(WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))
