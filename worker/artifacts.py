"""Moving a job's files between the worker's local work directory and the artifact store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from service.core.storage import Storage, job_key


def upload_dir(storage: Storage, local: Path, key: str) -> None:
    """Copies every file under ``local`` to ``key/`` (replacing what a previous attempt left)."""
    storage.delete(key)
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        upload_file(storage, path, f"{key}/{path.relative_to(local).as_posix()}")


def upload_file(storage: Storage, local: Path, key: str) -> None:
    with open(local, "rb") as source, storage.open_write(key) as target:
        while chunk := source.read(1024 * 1024):
            target.write(chunk)


def upload_bytes(storage: Storage, key: str, content: bytes) -> None:
    with storage.open_write(key) as target:
        target.write(content)


def upload_json(storage: Storage, key: str, value: Any) -> None:
    upload_bytes(storage, key, json.dumps(value).encode())


def upload_jsonl(storage: Storage, key: str, rows: list[Any]) -> None:
    upload_bytes(storage, key, b"".join(json.dumps(row).encode() + b"\n" for row in rows))


def download_dir(storage: Storage, key: str, local: Path) -> Path:
    for relative, _size in storage.list_files(key):
        target = local / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with storage.open_read(f"{key}/{relative}") as source, open(target, "wb") as out:
            while chunk := source.read(1024 * 1024):
                out.write(chunk)
    return local


def download_file(storage: Storage, key: str, local: Path) -> Path:
    local.parent.mkdir(parents=True, exist_ok=True)
    with storage.open_read(key) as source, open(local, "wb") as out:
        while chunk := source.read(1024 * 1024):
            out.write(chunk)
    return local


def checkpoint_key(job_id: str, step: int) -> str:
    return job_key(job_id, "checkpoints", f"step-{step}")
