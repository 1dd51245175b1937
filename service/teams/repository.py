"""SQL for teams and API keys."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.teams.models import ApiKey, Team


def team_for_key_hash(session: Session, key_hash: str) -> Team | None:
    query = select(Team).join(ApiKey, ApiKey.team_id == Team.id).where(ApiKey.key_hash == key_hash)
    return session.scalars(query).one_or_none()


def get_team(session: Session, team_id: str) -> Team | None:
    return session.get(Team, team_id)


def team_by_name(session: Session, name: str) -> Team | None:
    return session.scalars(select(Team).where(Team.name == name)).one_or_none()


def add(session: Session, row: Team | ApiKey) -> None:
    session.add(row)
    session.flush()


def delete_api_key(session: Session, key_id: str) -> str | None:
    """Deletes the key; returns its hash (for caches to forget), or None when there was none."""
    statement = delete(ApiKey).where(ApiKey.id == key_id).returning(ApiKey.key_hash)
    return session.scalar(statement)
