"""UTC time, and the unix seconds the OpenAI-shaped API speaks."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_unix(moment: datetime | None) -> int | None:
    """Unix seconds of a stored timestamp (always aware: ``service.core.db.UTCDateTime``)."""
    return None if moment is None else int(moment.timestamp())
