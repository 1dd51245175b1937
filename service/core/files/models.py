"""Uploaded datasets. The bytes live in the artifact store under ``files/<id>``; the row says what they hold."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.core.clock import utcnow
from service.core.db import Base

PURPOSE_FINE_TUNE = "fine-tune"
PURPOSE_RESULTS = "fine-tune-results"  # what a job writes (OpenAI's purpose for step_metrics.csv)


class FileStatus:
    PROCESSED = "processed"
    ERROR = "error"


class StoredFile(Base):
    __tablename__ = "files"
    __table_args__ = (Index("ix_files_team_listing", "team_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    status_details: Mapped[str | None] = mapped_column(Text, default=None)
    # What line validation found: the rows' format (chat, prompt_completion, text, classification),
    # how many rows are usable, the classification labels, and the first bad lines.
    data_format: Mapped[str | None] = mapped_column(String(32), default=None)
    rows: Mapped[int] = mapped_column(default=0)
    labels: Mapped[list[Any]] = mapped_column(default=list)
    errors: Mapped[list[Any]] = mapped_column(default=list)
    storage_key: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Deleted files keep their row: past jobs still name them.
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class UploadStatus:
    PENDING = "pending"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Upload(Base):
    """OpenAI's Upload: a file sent in parts (each streamed to the store), assembled into a file
    of ``bytes`` bytes on ``complete``; a pending one that outlives ``expires_at`` leaves nothing."""

    __tablename__ = "uploads"
    __table_args__ = (Index("ix_uploads_expiry", "status", "expires_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"))
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    mime_type: Mapped[str] = mapped_column(String(255))
    bytes: Mapped[int] = mapped_column(BigInteger)  # declared at create; the parts must sum to it
    status: Mapped[str] = mapped_column(String(16), default=UploadStatus.PENDING)
    file_id: Mapped[str | None] = mapped_column(ForeignKey("files.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class UploadPart(Base):
    __tablename__ = "upload_parts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id"), index=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(String(300))  # uploads/<upload id>/<part id>
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
