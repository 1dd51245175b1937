"""``/v1/uploads``: OpenAI's Uploads API, for files over the single-request limit
(``client.uploads.upload_file_chunked``). Each part streams to the store as it arrives."""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from service.api.auth import CurrentTeam
from service.api.db import DbSession
from service.api.deps import State
from service.api.files.upload import receive_upload
from service.api.openapi import error_response
from service.api.routing import api_router
from service.api.uploads.schemas import UploadComplete, UploadCreate, UploadOut, UploadPartOut
from service.core import storage
from service.core.errors import Conflict
from service.core.files import service as files
from service.core.files import uploads
from service.core.files.models import UploadStatus

router = api_router(prefix="/v1", tags=["files"])
PART_FIELD = "data"

_PART_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [PART_FIELD],
                "properties": {PART_FIELD: {"type": "string", "format": "binary"}},
            }
        }
    },
}
_NOT_PENDING = error_response("The upload is completed, cancelled or expired")


@router.post("/uploads", response_model=UploadOut)
async def create_upload(
    body: UploadCreate, team: CurrentTeam, session: DbSession, state: State
) -> UploadOut:
    row = await session.run_sync(
        uploads.create_upload,
        state.runtime.settings,
        team.id,
        filename=body.filename,
        purpose=body.purpose,
        mime_type=body.mime_type,
        size=body.bytes,
    )
    return UploadOut.of(row)


@router.post(
    "/uploads/{upload_id}/parts",
    response_model=UploadPartOut,
    openapi_extra={"requestBody": _PART_BODY},
    responses={
        409: _NOT_PENDING,
        413: error_response("The part is larger than GORA_MAX_UPLOAD_PART_BYTES"),
    },
)
async def add_part(
    upload_id: str, request: Request, team: CurrentTeam, session: DbSession, state: State
) -> UploadPartOut:
    upload = await session.run_sync(uploads.pending_upload, team.id, upload_id)
    store, part_id = state.runtime.storage, uploads.new_part_id()
    key = storage.upload_part_key(upload.id, part_id)
    try:
        form = await receive_upload(
            request.stream(),
            request.headers.get("content-type"),
            lambda: store.open_write(key),
            state.runtime.settings.max_upload_part_bytes,
            file_field=PART_FIELD,
        )
        row = await session.run_sync(uploads.record_part, upload, part_id, form.file_bytes)
    except BaseException:
        await run_in_threadpool(store.delete, key)  # a part not recorded leaves no bytes
        raise
    return UploadPartOut.of(row)


@router.post(
    "/uploads/{upload_id}/complete", response_model=UploadOut, responses={409: _NOT_PENDING}
)
async def complete_upload(
    upload_id: str, body: UploadComplete, team: CurrentTeam, session: DbSession, state: State
) -> UploadOut:
    upload = await session.run_sync(uploads.pending_upload, team.id, upload_id)
    parts = await session.run_sync(uploads.ordered_parts, upload, body.part_ids, body.md5)
    store, file_id = state.runtime.storage, files.new_file_id()
    try:
        await run_in_threadpool(uploads.assemble, store, parts, file_id, body.md5)
        report = await run_in_threadpool(files.check_upload, store, file_id)
        file_row = await session.run_sync(
            files.record_upload, team.id, file_id, upload.filename, upload.bytes, report
        )
        if not await session.run_sync(uploads.finish, upload, file_row):
            raise Conflict(
                f"upload {upload.id} was completed or cancelled by another request",
                param="upload_id",
                code="upload_not_pending",
            )
        await session.run_sync(uploads.delete_parts, store, upload)
    except BaseException:
        await run_in_threadpool(store.delete, storage.file_key(file_id))
        raise
    return UploadOut.of(upload, file_row)


@router.post("/uploads/{upload_id}/cancel", response_model=UploadOut, responses={409: _NOT_PENDING})
async def cancel_upload(
    upload_id: str, team: CurrentTeam, session: DbSession, state: State
) -> UploadOut:
    upload = await session.run_sync(uploads.pending_upload, team.id, upload_id)
    await session.run_sync(uploads.end, state.runtime.storage, upload, UploadStatus.CANCELLED)
    return UploadOut.of(upload)
