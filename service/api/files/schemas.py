"""The file object: OpenAI's fields plus what line validation found."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from service.core.clock import to_unix
from service.core.files.models import StoredFile


class FileOut(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str  # processed | error
    status_details: str | None
    expires_at: int | None = None
    # GoRA: the rows' format, how many are usable, classification labels, the first bad lines.
    format: str | None
    rows: int
    labels: list[str]
    errors: list[dict[str, Any]]

    @classmethod
    def of(cls, row: StoredFile) -> FileOut:
        return cls(
            id=row.id,
            bytes=row.bytes,
            created_at=to_unix(row.created_at) or 0,
            filename=row.filename,
            purpose=row.purpose,
            status=row.status,
            status_details=row.status_details,
            format=row.data_format,
            rows=row.rows,
            labels=row.labels,
            errors=row.errors,
        )
