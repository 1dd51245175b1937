"""Cursor pagination the OpenAI way: ``after=<id of the last item seen>&limit=N``, newest first.

Rows are ordered by (created_at, id), so the cursor stays exact when two rows share a timestamp.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

MAX_LIMIT = 100


def keyset_page(
    session: Session,
    query: Select[Any],
    model: Any,
    cursor: Any | None,
    limit: int,
    descending: bool = True,
) -> tuple[list[Any], bool]:
    """(rows, has_more): the page of ``query`` that follows ``cursor`` (a row, or None for the start)."""
    created, row_id = model.created_at, model.id
    if cursor is not None:
        if descending:
            after = or_(
                created < cursor.created_at, and_(created == cursor.created_at, row_id < cursor.id)
            )
        else:
            after = or_(
                created > cursor.created_at, and_(created == cursor.created_at, row_id > cursor.id)
            )
        query = query.where(after)
    order = (created.desc(), row_id.desc()) if descending else (created.asc(), row_id.asc())
    rows = list(session.scalars(query.order_by(*order).limit(limit + 1)))
    return rows[:limit], len(rows) > limit
