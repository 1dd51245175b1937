"""A directory of the store as a streamed ``.tar.gz``: written as it is sent, never whole in memory."""

from __future__ import annotations

import tarfile
import time
import zlib
from collections.abc import Iterator

from service.core.storage import Storage

_BLOCK = tarfile.BLOCKSIZE


def _member_header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _tar_stream(store: Storage, prefix: str, root_name: str) -> Iterator[bytes]:
    mtime = int(time.time())
    for relative, size in store.list_files(prefix):
        yield _member_header(f"{root_name}/{relative}", size, mtime)
        sent = 0
        for chunk in store.iter_bytes(f"{prefix}/{relative}"):
            sent += len(chunk)
            yield chunk
        if sent != size:  # the header already promised ``size`` bytes; a mismatch corrupts the tar
            raise OSError(f"{prefix}/{relative} changed while it was being sent")
        yield b"\0" * ((-size) % _BLOCK)
    yield b"\0" * (2 * _BLOCK)  # end-of-archive marker


def stream_tar_gz(store: Storage, prefix: str, root_name: str) -> Iterator[bytes]:
    """Gzip-compressed tar of every file under ``prefix``, each placed under ``root_name/``."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: gzip framing
    for piece in _tar_stream(store, prefix, root_name):
        compressed = compressor.compress(piece)
        if compressed:
            yield compressed
    yield compressor.flush()
