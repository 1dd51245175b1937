"""OpenAI's Upload and Upload Part objects, and the bodies that create and complete an upload."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.api.files.schemas import FileOut
from service.core.clock import to_unix
from service.core.files.models import StoredFile, Upload, UploadPart


class UploadCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI's expires_after: the server's TTL applies

    bytes: int = Field(ge=1, description="The file's size; the parts must sum to it")
    filename: str = Field(min_length=1, max_length=1024)
    mime_type: str = Field(min_length=1, max_length=255)
    purpose: str = Field(max_length=32, description="fine-tune")


class UploadComplete(BaseModel):
    model_config = ConfigDict(extra="forbid")

    part_ids: list[str] = Field(max_length=10_000, description="The parts, in file order")
    md5: str | None = Field(default=None, max_length=64, description="Of the whole file, hex")


class UploadOut(BaseModel):
    id: str
    object: Literal["upload"] = "upload"
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    status: str  # pending | completed | cancelled | expired
    file: FileOut | None = None

    @classmethod
    def of(cls, row: Upload, file: StoredFile | None = None) -> UploadOut:
        return cls(
            id=row.id,
            bytes=row.bytes,
            created_at=to_unix(row.created_at) or 0,
            expires_at=to_unix(row.expires_at) or 0,
            filename=row.filename,
            purpose=row.purpose,
            status=row.status,
            file=FileOut.of(file) if file is not None else None,
        )


class UploadPartOut(BaseModel):
    id: str
    object: Literal["upload.part"] = "upload.part"
    created_at: int
    upload_id: str

    @classmethod
    def of(cls, row: UploadPart) -> UploadPartOut:
        return cls(id=row.id, created_at=to_unix(row.created_at) or 0, upload_id=row.upload_id)
