"""SQL for uploaded files."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.core import ids
from service.core.clock import utcnow
from service.core.files.models import StoredFile
from service.core.pagination import keyset_page


def get_for_team(session: Session, team_id: str, file_id: str) -> StoredFile | None:
    """The team's file, or None for an unknown, deleted or other team's id (all answer 404)."""
    if not ids.is_id(ids.FILE, file_id):
        return None
    query = select(StoredFile).where(
        StoredFile.id == file_id, StoredFile.team_id == team_id, StoredFile.deleted_at.is_(None)
    )
    return session.scalars(query).one_or_none()


def get(session: Session, file_id: str) -> StoredFile | None:
    return session.get(StoredFile, file_id)


def list_for_team(
    session: Session,
    team_id: str,
    cursor: StoredFile | None,
    limit: int,
    purpose: str | None,
    descending: bool,
) -> tuple[list[StoredFile], bool]:
    query: Any = select(StoredFile).where(
        StoredFile.team_id == team_id, StoredFile.deleted_at.is_(None)
    )
    if purpose is not None:
        query = query.where(StoredFile.purpose == purpose)
    return keyset_page(session, query, StoredFile, cursor, limit, descending)


def add(session: Session, row: StoredFile) -> None:
    session.add(row)
    session.flush()


def mark_deleted(session: Session, file_id: str) -> None:
    session.execute(update(StoredFile).where(StoredFile.id == file_id).values(deleted_at=utcnow()))
