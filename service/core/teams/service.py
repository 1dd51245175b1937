"""Creating teams and issuing and revoking their API keys."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.core import ids
from service.core.errors import Conflict, NotFound
from service.core.teams import repository
from service.core.teams.keys import hash_api_key, new_api_key
from service.core.teams.models import ApiKey, Team


def create_team(session: Session, name: str, max_running_jobs: int | None = None) -> Team:
    if repository.team_by_name(session, name) is not None:
        raise Conflict(f"a team named {name!r} already exists", param="name", code="team_exists")
    team = Team(id=ids.new_id(ids.TEAM), name=name, max_running_jobs=max_running_jobs)
    repository.add(session, team)
    return team


def issue_api_key(session: Session, team_id: str, name: str | None = None) -> tuple[ApiKey, str]:
    """The stored row and the key itself, which is shown once and never stored."""
    if not ids.is_id(ids.TEAM, team_id) or repository.get_team(session, team_id) is None:
        raise NotFound(f"no team with id {team_id!r}", param="team_id", code="team_not_found")
    key = new_api_key()
    row = ApiKey(
        id=ids.new_id(ids.API_KEY),
        team_id=team_id,
        name=name,
        key_hash=hash_api_key(key),
        prefix=key[:12],
    )
    repository.add(session, row)
    return row, key


def revoke_api_key(session: Session, key_id: str) -> str:
    """Deletes the key; returns its hash, for the servers' key caches to forget."""
    key_hash = (
        repository.delete_api_key(session, key_id) if ids.is_id(ids.API_KEY, key_id) else None
    )
    if key_hash is None:
        raise NotFound(f"no API key with id {key_id!r}", param="key_id", code="api_key_not_found")
    return key_hash
