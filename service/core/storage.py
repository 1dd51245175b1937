"""The artifact store: one root given as a URL (``file:///…`` by default, any fsspec URL for shared storage).

Layout (design.md, "Storage"), as keys relative to the root:

- ``files/<file id>``: an uploaded dataset, as uploaded.
- ``jobs/<job id>/adapter/peft/``: the PEFT adapter (``adapter_config.json``, ``adapter_model.safetensors``).
- ``jobs/<job id>/adapter/uniform/``: the same adapter with one rank for every module.
- ``jobs/<job id>/checkpoints/step-<n>/``, ``jobs/<job id>/gora_allocation.json``,
  ``jobs/<job id>/metrics.jsonl``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

CHUNK_BYTES = 1024 * 1024


def file_key(file_id: str) -> str:
    return f"files/{file_id}"


def probe_cache_key(team_id: str, key: str) -> str:
    """A team's kept probe (worker/probe_cache.py): per team, so no key tells of another's data."""
    return f"probe-cache/{team_id}/{key}.safetensors"


def upload_prefix(upload_id: str) -> str:
    return f"uploads/{upload_id}"


def upload_part_key(upload_id: str, part_id: str) -> str:
    return f"{upload_prefix(upload_id)}/{part_id}"


def job_key(job_id: str, *parts: str) -> str:
    return "/".join(("jobs", job_id, *parts))


def adapter_key(job_id: str, adapter_format: str) -> str:
    """``adapter_format``: ``peft`` (per-module ranks) or ``uniform`` (one rank, for older servers)."""
    return job_key(job_id, "adapter", adapter_format)


def checkpoint_adapter_key(job_id: str, step: int, adapter_format: str) -> str:
    """A checkpoint's adapter, exported like the final one (beside the checkpoint itself, under
    its own prefix, so that a resume that lists ``checkpoints/`` finds only training state)."""
    return job_key(job_id, "checkpoint-adapters", f"step-{step}", adapter_format)


class Storage:
    def __init__(self, url: str):
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")

    def path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def open_write(self, key: str) -> IO[bytes]:
        if isinstance(self.fs, LocalFileSystem):
            self.fs.makedirs(self.path(key).rsplit("/", 1)[0], exist_ok=True)
        return self.fs.open(self.path(key), "wb")

    def open_read(self, key: str) -> IO[bytes]:
        return self.fs.open(self.path(key), "rb")

    def read_lines(self, key: str) -> Iterator[bytes]:
        with self.open_read(key) as handle:
            yield from handle

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self.path(key)))

    def delete(self, key: str) -> None:
        if self.fs.exists(self.path(key)):
            self.fs.rm(self.path(key), recursive=True)

    def list_files(self, prefix: str) -> list[tuple[str, int]]:
        """(key relative to ``prefix``, size) of every file under ``prefix``, sorted by key."""
        base = self.path(prefix).rstrip("/")
        if not self.fs.isdir(base):
            return []
        found: dict[str, Any] = self.fs.find(base, detail=True)
        strip = len(self.fs._strip_protocol(base)) + 1
        entries = [
            (self.fs._strip_protocol(name)[strip:], int(info.get("size") or 0))
            for name, info in found.items()
            if info.get("type") == "file"
        ]
        return sorted(entries)

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        with self.open_read(key) as handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk
