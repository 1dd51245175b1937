"""Who is calling: a team (by API key) or the administrator (by the admin token)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from service.db import AsyncReads, Database
from service.errors import AuthenticationFailed, PermissionDenied
from service.settings import Settings
from service.teams import repository as teams_repository

KEY_PREFIX = "gsk-"

# auto_error=False: a missing header becomes our own 401 body instead of FastAPI's.
bearer = HTTPBearer(auto_error=False, description="A team's API key, or the admin token")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(30)


def hash_api_key(key: str) -> str:
    # Keys are 240 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise AuthenticationFailed(
            "missing API key: send 'Authorization: Bearer <key>'", param="Authorization"
        )
    return credentials.credentials


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


def _lookup_teams(database: Database, key_hashes: list[str]) -> dict[str, TeamIdentity]:
    # Its own short transaction, not the request's: the connection is back in the pool before the
    # request waits for a thread again, so requests never hold connections while queueing for threads.
    found: dict[str, TeamIdentity] = {}
    with database.transaction() as session:
        for key_hash in key_hashes:
            team = teams_repository.team_for_key_hash(session, key_hash)
            if team is not None:
                found[key_hash] = TeamIdentity(team.id, team.name)
    return found


async def _fetch_teams(reads: AsyncReads, key_hashes: list[str]) -> dict[str, TeamIdentity]:
    return await run_in_threadpool(_lookup_teams, reads.database, key_hashes)


async def current_team(credentials: BearerCredentials, request: Request) -> TeamIdentity:
    key_hash = hash_api_key(_token(credentials))
    runtime = request.app.state.runtime
    cache: KeyCache = runtime.key_cache
    team = cache.get(key_hash)
    if team is None:
        # When a polled key's entry expires, every client polling with it misses at once: they
        # share one lookup (made after each of them asked) instead of each taking a thread.
        lookups = runtime.database.reads.coalesced("api_keys", _fetch_teams)
        team = await lookups.get(key_hash)
        if team is None:
            raise AuthenticationFailed("invalid API key", param="Authorization")
        cache.put(key_hash, team)
    return team


def require_admin(credentials: BearerCredentials, request: Request) -> None:
    settings: Settings = request.app.state.settings
    token = _token(credentials)
    if settings.admin_token is None:
        raise PermissionDenied("admin endpoints are disabled: set GORA_ADMIN_TOKEN")
    expected = settings.admin_token.get_secret_value().encode()
    if not hmac.compare_digest(token.encode(), expected):
        raise AuthenticationFailed("invalid admin token", param="Authorization")


CurrentTeam = Annotated[TeamIdentity, Depends(current_team)]
AdminOnly = Depends(require_admin)
