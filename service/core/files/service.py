"""Storing, validating, listing and deleting a team's datasets."""

from __future__ import annotations

from sqlalchemy.orm import Session

from gora.data.formats import FileReport, validate_lines
from service.core import ids, storage
from service.core.db import after_commit
from service.core.errors import Conflict, InvalidRequest, NotFound
from service.core.files import repository
from service.core.files.models import PURPOSE_FINE_TUNE, PURPOSE_RESULTS, FileStatus, StoredFile
from service.core.jobs import repository as jobs_repository
from service.core.storage import Storage

MAX_REPORTED_ERRORS = 10
MAX_FILENAME = 255


def check_purpose(purpose: str | None) -> None:
    if purpose != PURPOSE_FINE_TUNE:
        raise InvalidRequest(
            f"purpose must be {PURPOSE_FINE_TUNE!r}; got {purpose!r}", param="purpose"
        )


def clean_filename(name: str) -> str:
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


def check_upload(store: Storage, file_id: str) -> FileReport:
    """Validates a stored upload line by line (reads the store: run it off the event loop)."""
    return validate_lines(
        store.read_lines(storage.file_key(file_id)), max_errors=MAX_REPORTED_ERRORS
    )


def record_upload(
    session: Session,
    team_id: str,
    file_id: str,
    filename: str | None,
    size: int,
    report: FileReport,
) -> StoredFile:
    """The file's row: what its bytes are and what ``check_upload`` found in them."""
    row = StoredFile(
        id=file_id,
        team_id=team_id,
        filename=clean_filename(filename or ""),
        purpose=PURPOSE_FINE_TUNE,
        bytes=size,
        status=FileStatus.PROCESSED if report.ok else FileStatus.ERROR,
        status_details=_summary(report),
        data_format=report.format,
        rows=report.rows,
        labels=report.labels,
        errors=[error.as_dict() for error in report.errors],
        storage_key=storage.file_key(file_id),
    )
    repository.add(session, row)
    return row


def record_result(
    session: Session, team_id: str, file_id: str, filename: str, size: int, rows: int
) -> StoredFile:
    """The row of a file a job wrote (its bytes already stored under ``files/<id>``)."""
    row = StoredFile(
        id=file_id,
        team_id=team_id,
        filename=filename,
        purpose=PURPOSE_RESULTS,
        bytes=size,
        status=FileStatus.PROCESSED,
        rows=rows,
        storage_key=storage.file_key(file_id),
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
