"""Storing, validating, listing and deleting a team's datasets."""

from __future__ import annotations

from sqlalchemy.orm import Session

from gora.data.formats import FileReport, validate_lines
from service import ids, storage
from service.db import after_commit
from service.errors import Conflict, InvalidRequest, NotFound
from service.files import repository
from service.files.models import FileStatus, StoredFile
from service.files.schemas import PURPOSE_FINE_TUNE
from service.files.upload import UploadedForm
from service.jobs import repository as jobs_repository
from service.storage import Storage

MAX_REPORTED_ERRORS = 10
MAX_FILENAME = 255


def check_purpose(purpose: str | None) -> None:
    if purpose != PURPOSE_FINE_TUNE:
        raise InvalidRequest(
            f"purpose must be {PURPOSE_FINE_TUNE!r}; got {purpose!r}", param="purpose"
        )


def _clean_filename(name: str) -> str:
    # Only the last path component, without control characters (PostgreSQL refuses NUL).
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable())
    return base[:MAX_FILENAME] or "upload.jsonl"


def _summary(report: FileReport) -> str | None:
    if report.ok:
        return None
    shown = "; ".join(str(error) for error in report.errors[:3])
    more = len(report.errors) - 3
    return f"{shown}" + (f"; and {more} more (see errors)" if more > 0 else "")


def record_upload(
    session: Session, store: Storage, team_id: str, file_id: str, form: UploadedForm
) -> StoredFile:
    """Validates the stored upload line by line and records what was found."""
    key = storage.file_key(file_id)
    report = validate_lines(store.read_lines(key), max_errors=MAX_REPORTED_ERRORS)
    row = StoredFile(
        id=file_id,
        team_id=team_id,
        filename=_clean_filename(form.filename or ""),
        purpose=PURPOSE_FINE_TUNE,
        bytes=form.file_bytes,
        status=FileStatus.PROCESSED if report.ok else FileStatus.ERROR,
        status_details=_summary(report),
        data_format=report.format,
        rows=report.rows,
        labels=report.labels,
        errors=[error.as_dict() for error in report.errors],
        storage_key=key,
    )
    repository.add(session, row)
    return row


def get_file(session: Session, team_id: str, file_id: str, param: str = "file_id") -> StoredFile:
    row = repository.get_for_team(session, team_id, file_id)
    if row is None:
        raise NotFound(f"no file with id {file_id!r}", param=param, code="file_not_found")
    return row


def list_files(
    session: Session, team_id: str, after: str | None, limit: int, purpose: str | None, order: str
) -> tuple[list[StoredFile], bool]:
    cursor = None
    if after is not None:
        cursor = repository.get_for_team(session, team_id, after)
        if cursor is None:
            raise InvalidRequest(f"no file with id {after!r} to list after", param="after")
    return repository.list_for_team(session, team_id, cursor, limit, purpose, order == "desc")


def delete_file(session: Session, store: Storage, team_id: str, file_id: str) -> None:
    row = get_file(session, team_id, file_id)
    users = jobs_repository.active_jobs_using_file(session, file_id)
    if users:
        raise Conflict(
            f"file {file_id} is used by job {users[0]}, which has not finished; "
            "cancel the job or wait for it",
            param="file_id",
            code="file_in_use",
        )
    repository.mark_deleted(session, row.id)
    # The bytes go only once the row says "deleted": a rolled-back request loses nothing.
    after_commit(session, lambda: store.delete(row.storage_key))


def new_file_id() -> str:
    return ids.new_id(ids.FILE)
