"""Who is calling: a team (by API key) or the administrator (by the admin token)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.db import DbSession
from service.errors import AuthenticationFailed, PermissionDenied
from service.settings import Settings
from service.teams import repository as teams_repository
from service.teams.models import Team

KEY_PREFIX = "gsk-"

# auto_error=False: a missing header becomes our own 401 body instead of FastAPI's.
_bearer = HTTPBearer(auto_error=False, description="A team's API key, or the admin token")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


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


def current_team(credentials: BearerCredentials, session: DbSession) -> Team:
    token = _token(credentials)
    team = teams_repository.team_for_key_hash(session, hash_api_key(token))
    if team is None:
        raise AuthenticationFailed("invalid API key", param="Authorization")
    return team


def require_admin(credentials: BearerCredentials, request: Request) -> None:
    settings: Settings = request.app.state.settings
    token = _token(credentials)
    if settings.admin_token is None:
        raise PermissionDenied("admin endpoints are disabled: set GORA_ADMIN_TOKEN")
    expected = settings.admin_token.get_secret_value().encode()
    if not hmac.compare_digest(token.encode(), expected):
        raise AuthenticationFailed("invalid admin token", param="Authorization")


CurrentTeam = Annotated[Team, Depends(current_team)]
AdminOnly = Depends(require_admin)
