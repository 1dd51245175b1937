"""Request and response bodies of the admin endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.core.clock import to_unix
from service.core.fields import Name
from service.core.teams.models import ApiKey, Team


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name
    max_running_jobs: int | None = Field(default=None, ge=1, le=10_000)


class TeamOut(BaseModel):
    id: str
    object: Literal["team"] = "team"
    name: str
    max_running_jobs: int | None
    created_at: int

    @classmethod
    def of(cls, team: Team) -> TeamOut:
        return cls(
            id=team.id,
            name=team.name,
            max_running_jobs=team.max_running_jobs,
            created_at=to_unix(team.created_at) or 0,
        )


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name | None = None


class ApiKeyOut(BaseModel):
    """The key itself appears only in the answer to its creation; the database keeps its hash."""

    id: str
    object: Literal["api_key"] = "api_key"
    team_id: str
    name: str | None
    prefix: str
    key: str
    created_at: int

    @classmethod
    def of(cls, row: ApiKey, key: str) -> ApiKeyOut:
        return cls(
            id=row.id,
            team_id=row.team_id,
            name=row.name,
            prefix=row.prefix,
            key=key,
            created_at=to_unix(row.created_at) or 0,
        )
