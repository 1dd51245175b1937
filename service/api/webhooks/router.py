"""``/v1/webhooks``: a team's endpoints for job notices (succeeded, failed, cancelled, paused), each
with the log of its deliveries."""

from __future__ import annotations

from service.api.auth import CurrentTeam
from service.api.db import DbSession
from service.api.deps import After, Limit
from service.api.routing import api_router
from service.api.schemas import Deleted, ListPage
from service.api.webhooks.schemas import DeliveryOut, WebhookCreate, WebhookOut
from service.core.webhooks import service

router = api_router(prefix="/v1", tags=["webhooks"])


@router.post(
    "/webhooks",
    response_model=WebhookOut,
    description="Registers an endpoint. The response holds its signing secret, shown only here.",
)
async def create_webhook(body: WebhookCreate, team: CurrentTeam, session: DbSession) -> WebhookOut:
    row = await session.run_sync(service.create_endpoint, team.id, body.url, body.events)
    return WebhookOut.of(row, with_secret=True)


@router.get("/webhooks", response_model=ListPage[WebhookOut])
async def list_webhooks(
    team: CurrentTeam, session: DbSession, after: After = None, limit: Limit = 20
) -> ListPage[WebhookOut]:
    rows, has_more = await session.run_sync(service.list_endpoints, team.id, after, limit)
    return ListPage.of([WebhookOut.of(r) for r in rows], has_more, [r.id for r in rows])


@router.get("/webhooks/{webhook_id}", response_model=WebhookOut)
async def retrieve_webhook(webhook_id: str, team: CurrentTeam, session: DbSession) -> WebhookOut:
    return WebhookOut.of(await session.run_sync(service.get_endpoint, team.id, webhook_id))


@router.delete("/webhooks/{webhook_id}", response_model=Deleted)
async def delete_webhook(webhook_id: str, team: CurrentTeam, session: DbSession) -> Deleted:
    await session.run_sync(service.delete_endpoint, team.id, webhook_id)
    return Deleted(id=webhook_id, object="webhook_endpoint")


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=ListPage[DeliveryOut],
    description="Newest first: each notice, its attempts, the last answer or error, the next try.",
)
async def list_deliveries(
    webhook_id: str, team: CurrentTeam, session: DbSession, after: After = None, limit: Limit = 20
) -> ListPage[DeliveryOut]:
    rows, has_more = await session.run_sync(
        service.list_deliveries, team.id, webhook_id, after, limit
    )
    return ListPage.of([DeliveryOut.of(r) for r in rows], has_more, [r.id for r in rows])
