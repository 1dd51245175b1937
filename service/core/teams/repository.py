"""SQL for teams and API keys."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.core.teams.models import ApiKey, Team


def teams_for_key_hashes(session: Session, key_hashes: list[str]) -> dict[str, Team]:
    """{key hash: its team} for the hashes that name a key."""
    query = (
        select(ApiKey.key_hash, Team)
        .join(Team, ApiKey.team_id == Team.id)
        .where(ApiKey.key_hash.in_(key_hashes))
    )
    return {key_hash: team for key_hash, team in session.execute(query)}


def get_team(session: Session, team_id: str) -> Team | None:
    return session.get(Team, team_id)


def list_teams(session: Session) -> list[Team]:
    return list(session.scalars(select(Team).order_by(Team.name)))


def team_by_name(session: Session, name: str) -> Team | None:
    return session.scalars(select(Team).where(Team.name == name)).one_or_none()


def add(session: Session, row: Team | ApiKey) -> None:
    session.add(row)
    session.flush()


def delete_api_key(session: Session, key_id: str) -> str | None:
    """Deletes the key; returns its hash (for caches to forget), or None when there was none."""
    statement = delete(ApiKey).where(ApiKey.id == key_id).returning(ApiKey.key_hash)
    return session.scalar(statement)
