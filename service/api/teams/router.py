"""Admin endpoints: teams and their API keys (admin token only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Body

from service.api.auth import AdminOnly
from service.api.db import DbSession
from service.api.deps import State
from service.api.openapi import error_response
from service.api.routing import api_router
from service.api.schemas import Deleted, ListPage
from service.api.teams.schemas import ApiKeyCreate, ApiKeyOut, TeamCreate, TeamOut
from service.core.db import after_commit
from service.core.teams import repository as teams_repository
from service.core.teams import service

router = api_router(prefix="/v1", tags=["admin"], dependencies=[AdminOnly])


@router.post(
    "/teams",
    response_model=TeamOut,
    responses={409: error_response("A team of that name exists")},
)
async def create_team(body: TeamCreate, session: DbSession) -> TeamOut:
    team = await session.run_sync(service.create_team, body.name, body.max_running_jobs)
    return TeamOut.of(team)


@router.get("/teams", response_model=ListPage[TeamOut], description="Every team, by name.")
async def list_teams(session: DbSession) -> ListPage[TeamOut]:
    teams = await session.run_sync(teams_repository.list_teams)
    return ListPage.of([TeamOut.of(t) for t in teams], False, [t.id for t in teams])


@router.post("/teams/{team_id}/api_keys", response_model=ApiKeyOut)
async def create_api_key(
    team_id: str, session: DbSession, body: Annotated[ApiKeyCreate | None, Body()] = None
) -> ApiKeyOut:
    row, key = await session.run_sync(service.issue_api_key, team_id, body.name if body else None)
    return ApiKeyOut.of(row, key)


@router.delete("/api_keys/{key_id}", response_model=Deleted)
async def delete_api_key(key_id: str, session: DbSession, state: State) -> Deleted:
    key_hash = await session.run_sync(service.revoke_api_key, key_id)
    after_commit(session.sync_session, lambda: state.key_cache.forget(key_hash))
    return Deleted(id=key_id, object="api_key")
