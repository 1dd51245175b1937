"""OpenAI's Uploads: create, add parts (each streamed to the store by the API), complete into a
file (the parts concatenated in the given order, the md5 checked, every line validated like a
single-request upload), cancel; pending uploads past their expiry are swept, parts and all."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from service.core import ids, storage
from service.core.clock import utcnow
from service.core.db import after_commit
from service.core.errors import Conflict, InvalidRequest, NotFound
from service.core.files import service as files
from service.core.files.models import StoredFile, Upload, UploadPart, UploadStatus
from service.core.settings import Settings
from service.core.storage import Storage


def create_upload(
    session: Session,
    settings: Settings,
    team_id: str,
    *,
    filename: str,
    purpose: str,
    mime_type: str,
    size: int,
) -> Upload:
    files.check_purpose(purpose)
    limit = settings.max_chunked_upload_bytes
    if not 1 <= size <= limit:
        raise InvalidRequest(f"bytes must be between 1 and {limit}; got {size}", param="bytes")
    now = utcnow()
    row = Upload(
        id=ids.new_id(ids.UPLOAD),
        team_id=team_id,
        filename=files.clean_filename(filename),
        purpose=purpose,
        mime_type=mime_type,
        bytes=size,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.upload_ttl_s),
    )
    session.add(row)
    session.flush()
    return row


def get_upload(session: Session, team_id: str, upload_id: str) -> Upload:
    row = session.get(Upload, upload_id) if ids.is_id(ids.UPLOAD, upload_id) else None
    if row is None or row.team_id != team_id:
        raise NotFound(
            f"no upload with id {upload_id!r}", param="upload_id", code="upload_not_found"
        )
    return row


def pending_upload(session: Session, team_id: str, upload_id: str) -> Upload:
    """The upload, if parts may still be added to it or it may be completed."""
    row = get_upload(session, team_id, upload_id)
    if row.status == UploadStatus.PENDING and row.expires_at <= utcnow():
        raise Conflict(
            f"upload {row.id} expired at its deadline; create a new upload",
            param="upload_id",
            code="upload_expired",
        )
    if row.status != UploadStatus.PENDING:
        raise Conflict(
            f"upload {row.id} is {row.status}; only a pending upload takes parts or completes",
            param="upload_id",
            code="upload_not_pending",
        )
    return row


def new_part_id() -> str:
    return ids.new_id(ids.UPLOAD_PART)


def record_part(session: Session, upload: Upload, part_id: str, size: int) -> UploadPart:
    """The part's row, if the upload is still pending now that its bytes are stored (a cancel or
    the sweep may have ended it meanwhile: then the caller drops the bytes)."""
    locked = session.get(Upload, upload.id, with_for_update=True, populate_existing=True)
    if locked is None or locked.status != UploadStatus.PENDING:
        raise Conflict(
            f"upload {upload.id} ended while the part was sent", param="upload_id",
            code="upload_not_pending",
        )  # fmt: skip
    row = UploadPart(
        id=part_id,
        upload_id=upload.id,
        bytes=size,
        storage_key=storage.upload_part_key(upload.id, part_id),
    )
    session.add(row)
    session.flush()
    return row


def ordered_parts(
    session: Session, upload: Upload, part_ids: list[str], md5: str | None
) -> list[UploadPart]:
    """The parts to assemble, in the client's order, checked: each one of this upload, none twice,
    and their sizes summing to the bytes declared at create."""
    if not part_ids or len(set(part_ids)) != len(part_ids):
        raise InvalidRequest("part_ids must list this upload's parts, each once", param="part_ids")
    if md5 is not None and (len(md5) != 32 or any(c not in "0123456789abcdefABCDEF" for c in md5)):
        raise InvalidRequest("md5 must be 32 hexadecimal digits", param="md5")
    found = {
        part.id: part
        for part in session.scalars(select(UploadPart).where(UploadPart.upload_id == upload.id))
    }
    unknown = [p for p in part_ids if p not in found]
    if unknown:
        raise InvalidRequest(
            f"part {unknown[0]!r} is not a part of upload {upload.id}", param="part_ids"
        )
    total = sum(found[p].bytes for p in part_ids)
    if total != upload.bytes:
        raise InvalidRequest(
            f"the parts hold {total} bytes but the upload was created for {upload.bytes}",
            param="part_ids",
        )
    return [found[p] for p in part_ids]


def assemble(store: Storage, parts: list[UploadPart], file_id: str, md5: str | None) -> None:
    """The parts, in order, copied into ``files/<file_id>`` chunk by chunk (blocking: run it off the
    event loop); a wrong md5 leaves nothing."""
    digest = hashlib.md5(usedforsecurity=False)
    key = storage.file_key(file_id)
    with store.open_write(key) as target:
        for part in parts:
            for chunk in store.iter_bytes(part.storage_key):
                digest.update(chunk)
                target.write(chunk)
    if md5 is not None and digest.hexdigest() != md5.lower():
        store.delete(key)
        raise InvalidRequest(
            f"the assembled file's md5 is {digest.hexdigest()}, not {md5.lower()}; check the part "
            "order and contents",
            param="md5",
        )


def finish(session: Session, upload: Upload, file_row: StoredFile) -> bool:
    """pending → completed with its file, unless another request moved it first."""
    moved = session.execute(
        update(Upload)
        .where(Upload.id == upload.id, Upload.status == UploadStatus.PENDING)
        .values(status=UploadStatus.COMPLETED, file_id=file_row.id)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if moved == 1:  # the loaded object says so too, without another UPDATE at flush
        set_committed_value(upload, "status", UploadStatus.COMPLETED)
        set_committed_value(upload, "file_id", file_row.id)
    return moved == 1


def end(session: Session, store: Storage, upload: Upload, status: str) -> None:
    """Cancelled or expired: the upload keeps its row, its parts go."""
    upload.status = status
    delete_parts(session, store, upload)


def delete_parts(session: Session, store: Storage, upload: Upload) -> None:
    """The parts' rows, and their bytes once that commits (a completed upload's bytes now live in
    its file)."""
    for part in session.scalars(select(UploadPart).where(UploadPart.upload_id == upload.id)):
        session.delete(part)
    session.flush()
    prefix = storage.upload_prefix(upload.id)
    after_commit(session, lambda: store.delete(prefix))


def sweep_expired(session: Session, store: Storage) -> int:
    """Pending uploads past their expiry become ``expired`` and leave nothing in the store."""
    query = select(Upload).where(
        Upload.status == UploadStatus.PENDING, Upload.expires_at <= utcnow()
    )
    rows = list(session.scalars(query.limit(100).with_for_update(skip_locked=True)))
    for row in rows:
        end(session, store, row, UploadStatus.EXPIRED)
    return len(rows)
