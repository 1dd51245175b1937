"""Webhook endpoints and their delivery log, as the API shows them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.core.clock import to_unix
from service.core.webhooks.models import WebhookDelivery, WebhookEndpoint
from service.core.webhooks.service import EVENT_TYPES, MAX_URL


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: str = Field(max_length=MAX_URL, description="http:// or https://; POSTed to, signed")
    events: list[str] | None = Field(
        default=None,
        max_length=len(EVENT_TYPES),
        description=f"Any of {', '.join(EVENT_TYPES)}; all of them when left out",
    )


class WebhookOut(BaseModel):
    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    events: list[str]
    created_at: int
    # Standard Webhooks' ``whsec_…`` key, in the create response only: keep it to verify signatures.
    secret: str | None = None

    @classmethod
    def of(cls, row: WebhookEndpoint, *, with_secret: bool = False) -> WebhookOut:
        return cls(
            id=row.id,
            url=row.url,
            events=row.events,
            created_at=to_unix(row.created_at) or 0,
            secret=row.secret if with_secret else None,
        )


class DeliveryOut(BaseModel):
    id: str  # the webhook-id header: the same on each retry
    object: Literal["webhook_delivery"] = "webhook_delivery"
    event_type: str
    fine_tuning_job_id: str
    status: str  # pending | succeeded | failed
    attempts: int
    response_status: int | None
    last_error: str | None
    created_at: int
    last_attempt_at: int | None
    next_attempt_at: int | None
    delivered_at: int | None

    @classmethod
    def of(cls, row: WebhookDelivery) -> DeliveryOut:
        return cls(
            id=row.id,
            event_type=row.event_type,
            fine_tuning_job_id=row.job_id,
            status=row.status,
            attempts=row.attempts,
            response_status=row.response_status,
            last_error=row.last_error,
            created_at=to_unix(row.created_at) or 0,
            last_attempt_at=to_unix(row.last_attempt_at),
            next_attempt_at=to_unix(row.next_attempt_at),
            delivered_at=to_unix(row.delivered_at),
        )
