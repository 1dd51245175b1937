"""``/v1/files``: upload (multipart, streamed), list, retrieve, download the content, delete."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from service.api.auth import CurrentTeam
from service.api.db import DbSession
from service.api.deps import After, Limit, State
from service.api.errors import PayloadTooLarge
from service.api.files.schemas import FileOut
from service.api.files.upload import receive_upload
from service.api.openapi import error_response
from service.api.routing import api_router
from service.api.schemas import Deleted, ListPage
from service.core import storage
from service.core.fields import PRINTABLE
from service.core.files import service

router = api_router(prefix="/v1", tags=["files"])

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


@router.post(
    "/files",
    response_model=FileOut,
    openapi_extra={"requestBody": _UPLOAD_BODY},
    responses={413: error_response("The upload is larger than GORA_MAX_UPLOAD_BYTES")},
)
async def upload_file(
    request: Request, team: CurrentTeam, session: DbSession, state: State
) -> FileOut:
    limit, store = state.runtime.settings.max_upload_bytes, state.runtime.storage
    _check_declared_length(request, limit)
    file_id = service.new_file_id()
    key = storage.file_key(file_id)
    try:
        form = await receive_upload(
            request.stream(),
            request.headers.get("content-type"),
            lambda: store.open_write(key),
            limit,
        )
        service.check_purpose(form.fields.get("purpose"))
        report = await run_in_threadpool(service.check_upload, store, file_id)
        row = await session.run_sync(
            service.record_upload, team.id, file_id, form.filename, form.file_bytes, report
        )
    except BaseException:
        # Nothing was recorded: the partial upload must not stay behind in the store.
        await run_in_threadpool(store.delete, key)
        raise
    return FileOut.of(row)


@router.get("/files", response_model=ListPage[FileOut])
async def list_files(
    team: CurrentTeam,
    session: DbSession,
    after: After = None,
    limit: Limit = 20,
    purpose: Annotated[str | None, Query(max_length=32, pattern=PRINTABLE)] = None,
    order: Literal["asc", "desc"] = "desc",
) -> ListPage[FileOut]:
    rows, has_more = await session.run_sync(
        service.list_files, team.id, after, limit, purpose, order
    )
    return ListPage.of([FileOut.of(r) for r in rows], has_more, [r.id for r in rows])


@router.get("/files/{file_id}", response_model=FileOut)
async def retrieve_file(file_id: str, team: CurrentTeam, session: DbSession) -> FileOut:
    return FileOut.of(await session.run_sync(service.get_file, team.id, file_id))


@router.get(
    "/files/{file_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}, "text/csv": {}}}},
    description="The file's bytes as stored: an upload, or a job's `step_metrics.csv`.",
)
async def file_content(
    file_id: str, team: CurrentTeam, session: DbSession, state: State
) -> StreamingResponse:
    row = await session.run_sync(service.get_file, team.id, file_id)
    store = state.runtime.storage
    media = "text/csv" if row.filename.endswith(".csv") else "application/octet-stream"
    # The stored name may hold quotes or non-Latin-1 characters: an ASCII fallback, and the exact
    # name percent-encoded (RFC 6266's filename*).
    plain = "".join(c if c.isascii() and c not in '"\\' else "_" for c in row.filename)
    disposition = f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(row.filename)}"
    return StreamingResponse(
        iterate_in_threadpool(store.iter_bytes(row.storage_key)),
        media_type=media,
        headers={"Content-Disposition": disposition, "Content-Length": str(row.bytes)},
    )


@router.delete(
    "/files/{file_id}",
    response_model=Deleted,
    responses={409: error_response("A job that has not finished uses the file")},
)
async def delete_file(file_id: str, team: CurrentTeam, session: DbSession, state: State) -> Deleted:
    await session.run_sync(service.delete_file, state.runtime.storage, team.id, file_id)
    return Deleted(id=file_id, object="file")
