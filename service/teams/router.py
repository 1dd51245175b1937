"""Admin endpoints: teams and their API keys (admin token only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from service.auth import AdminOnly
from service.db import DbSession
from service.runtime import CurrentRuntime
from service.schemas import Deleted
from service.teams import service
from service.teams.schemas import ApiKeyCreate, ApiKeyOut, TeamCreate, TeamOut

router = APIRouter(prefix="/v1", tags=["admin"], dependencies=[AdminOnly])


@router.post("/teams", response_model=TeamOut)
def create_team(body: TeamCreate, session: DbSession) -> TeamOut:
    return TeamOut.of(service.create_team(session, body.name, body.max_running_jobs))


@router.post("/teams/{team_id}/api_keys", response_model=ApiKeyOut)
def create_api_key(
    team_id: str, session: DbSession, body: Annotated[ApiKeyCreate | None, Body()] = None
) -> ApiKeyOut:
    row, key = service.issue_api_key(session, team_id, body.name if body else None)
    return ApiKeyOut.of(row, key)


@router.delete("/api_keys/{key_id}", response_model=Deleted)
def delete_api_key(key_id: str, session: DbSession, runtime: CurrentRuntime) -> Deleted:
    service.revoke_api_key(session, key_id, runtime.key_cache)
    return Deleted(id=key_id, object="api_key")
