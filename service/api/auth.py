"""Who is calling: a team (by API key) or the administrator (by the admin token)."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from service.api.coalescer import Coalescer
from service.api.db import AsyncDatabase
from service.api.deps import app_state
from service.api.errors import AuthenticationFailed, PermissionDenied
from service.core.errors import InvalidRequest
from service.core.teams import repository as teams_repository
from service.core.teams.keys import hash_api_key


@dataclass(frozen=True)
class TeamIdentity:
    """Who a request acts for: enough to scope every query, cheap to cache."""

    id: str
    name: str


class KeyCache:
    """API key hash -> team, for ``ttl_s`` seconds, so that polling does not look the key up each time.

    A deleted key is forgotten at once by the server that deleted it and within ``ttl_s`` by the
    others; ``ttl_s = 0`` turns the cache off.
    """

    def __init__(self, ttl_s: float, max_entries: int = 10_000):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, TeamIdentity]] = {}

    def get(self, key_hash: str) -> TeamIdentity | None:
        entry = self._entries.get(key_hash)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key_hash: str, team: TeamIdentity) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # rare; a full cache only costs lookups
        self._entries[key_hash] = (time.monotonic() + self.ttl_s, team)

    def forget(self, key_hash: str) -> None:
        self._entries.pop(key_hash, None)


def key_lookups(database: AsyncDatabase) -> Coalescer[str, TeamIdentity]:
    """Key hash -> team, looked up once for every request that missed the cache at the same moment
    (when a polled key's entry expires, all its pollers miss together)."""

    async def teams(key_hashes: list[str]) -> dict[str, TeamIdentity]:
        # A session of its own, not the request's: the request may never need one (a status
        # poll), and the connection is back in the pool before the route runs.
        async with database.single_reads() as session:
            found = await session.run_sync(teams_repository.teams_for_key_hashes, key_hashes)
        return {key_hash: TeamIdentity(t.id, t.name) for key_hash, t in found.items()}

    return Coalescer(teams)


class _Bearer(HTTPBearer):
    """``Authorization: Bearer <token>``, declared once for OpenAPI; each subclass's dependency
    resolves the token to who is calling, in one step (each dependency costs the polled path)."""

    def __init__(self) -> None:
        # auto_error=False: a missing header becomes our own 401 body instead of FastAPI's.
        super().__init__(
            auto_error=False,
            scheme_name="HTTPBearer",
            description="A team's API key, or the admin token",
        )

    async def token(self, request: Request) -> str:
        credentials = await super().__call__(request)
        if credentials is None or not credentials.credentials:
            raise AuthenticationFailed(
                "missing API key: send 'Authorization: Bearer <key>'", param="Authorization"
            )
        return credentials.credentials


ACT_FOR_HEADER = "OpenAI-Organization"  # what OpenAI's client sends as ``organization=``


class TeamKey(_Bearer):
    """A team's API key; or the admin token with the team it acts for named in the
    ``OpenAI-Organization`` header (the dashboard's admin view, any team's jobs)."""

    async def __call__(self, request: Request) -> TeamIdentity:  # type: ignore[override]
        token = await self.token(request)
        key_hash = hash_api_key(token)
        state = app_state(request)
        team = state.key_cache.get(key_hash)
        if team is None:
            team = await state.key_lookups.get(key_hash)
            if team is None:
                return await self._admin_acting_for_a_team(request, token)
            state.key_cache.put(key_hash, team)
        return team

    async def _admin_acting_for_a_team(self, request: Request, token: str) -> TeamIdentity:
        admin = app_state(request).runtime.settings.admin_token
        if admin is None or not hmac.compare_digest(
            token.encode(), admin.get_secret_value().encode()
        ):
            raise AuthenticationFailed("invalid API key", param="Authorization")
        team_id = request.headers.get(ACT_FOR_HEADER)
        if not team_id:
            raise InvalidRequest(
                f"the admin token acts for a team: name its id in the {ACT_FOR_HEADER} header",
                param=ACT_FOR_HEADER,
            )
        async with app_state(request).database.single_reads() as session:
            found = await session.run_sync(teams_repository.get_team, team_id)
        if found is None:
            raise InvalidRequest(f"no team with id {team_id!r}", param=ACT_FOR_HEADER)
        return TeamIdentity(found.id, found.name)


class AdminToken(_Bearer):
    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        token = await self.token(request)
        settings = app_state(request).runtime.settings
        if settings.admin_token is None:
            raise PermissionDenied("admin endpoints are disabled: set GORA_ADMIN_TOKEN")
        expected = settings.admin_token.get_secret_value().encode()
        if not hmac.compare_digest(token.encode(), expected):
            raise AuthenticationFailed("invalid admin token", param="Authorization")


CurrentTeam = Annotated[TeamIdentity, Depends(TeamKey())]
AdminOnly = Depends(AdminToken())
