"""``/v1/files``: upload (multipart, streamed), list, retrieve, delete."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from service import storage
from service.auth import CurrentTeam
from service.db import DbSession
from service.errors import PayloadTooLarge
from service.files import service
from service.files.schemas import FileOut
from service.files.upload import receive_upload
from service.pagination import After, Limit
from service.schemas import PRINTABLE, Deleted, ListPage
from service.settings import Settings

router = APIRouter(prefix="/v1", tags=["files"])

# Multipart framing around the file: a request this much over the limit cannot hold a legal file.
MULTIPART_OVERHEAD = 64 * 1024

_UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file", "purpose"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "purpose": {"type": "string", "enum": ["fine-tune"]},
                },
            }
        }
    },
}


def _check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(
            f"the upload is {declared} bytes; the limit is {limit} bytes", param="file"
        )


@router.post("/files", response_model=FileOut, openapi_extra={"requestBody": _UPLOAD_BODY})
async def upload_file(request: Request, team: CurrentTeam, session: DbSession) -> FileOut:
    settings: Settings = request.app.state.settings
    store: storage.Storage = request.app.state.storage
    _check_declared_length(request, settings.max_upload_bytes)
    file_id = service.new_file_id()
    key = storage.file_key(file_id)
    try:
        form = await receive_upload(
            request.stream(),
            request.headers.get("content-type"),
            lambda: store.open_write(key),
            settings.max_upload_bytes,
        )
        service.check_purpose(form.fields.get("purpose"))
        row = await run_in_threadpool(service.record_upload, session, store, team.id, file_id, form)
    except BaseException:
        # Nothing was recorded: the partial upload must not stay behind in the store.
        await run_in_threadpool(store.delete, key)
        raise
    return FileOut.of(row)


@router.get("/files", response_model=ListPage[FileOut])
def list_files(
    team: CurrentTeam,
    session: DbSession,
    after: After = None,
    limit: Limit = 20,
    purpose: Annotated[str | None, Query(max_length=32, pattern=PRINTABLE)] = None,
    order: Literal["asc", "desc"] = "desc",
) -> ListPage[FileOut]:
    rows, has_more = service.list_files(session, team.id, after, limit, purpose, order)
    return ListPage.of([FileOut.of(r) for r in rows], has_more, [r.id for r in rows])


@router.get("/files/{file_id}", response_model=FileOut)
def retrieve_file(file_id: str, team: CurrentTeam, session: DbSession) -> FileOut:
    return FileOut.of(service.get_file(session, team.id, file_id))


@router.delete("/files/{file_id}", response_model=Deleted)
def delete_file(file_id: str, request: Request, team: CurrentTeam, session: DbSession) -> Deleted:
    service.delete_file(session, request.app.state.storage, team.id, file_id)
    return Deleted(id=file_id, object="file")
