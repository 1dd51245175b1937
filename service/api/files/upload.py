"""A multipart upload read as it arrives: the ``file`` part streams into the store, never into memory.

Starlette's form parser spools a whole upload before the route runs, so a size limit could only be
checked after the bytes were already on disk; reading the stream ourselves stops at the limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import IO

from anyio import to_thread
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.api.errors import PayloadTooLarge
from service.core.errors import InvalidRequest

MAX_FIELD_BYTES = 4096
FILE_FIELD = "file"


@dataclass
class UploadedForm:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    file_bytes: int = 0


class _PartHandler:
    """python-multipart callbacks: route each part to the file sink or to a small field buffer."""

    def __init__(self, open_sink: Callable[[], IO[bytes]], max_file_bytes: int, file_field: str):
        self.open_sink = open_sink
        self.max_file_bytes = max_file_bytes
        self.file_field = file_field
        self.form = UploadedForm()
        self.sink: IO[bytes] | None = None
        self._headers: dict[bytes, bytes] = {}
        self._header_field = b""
        self._header_value = b""
        self._field_name: str | None = None
        self._field_value = bytearray()
        self._in_file = False
        self.complete = False

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._append_header("_header_field", d[s:e]),
            "on_header_value": lambda d, s, e: self._append_header("_header_value", d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _end(self) -> None:
        self.complete = True

    def _part_begin(self) -> None:
        self._headers, self._field_name, self._in_file = {}, None, False
        self._field_value = bytearray()

    def _append_header(self, name: str, data: bytes) -> None:
        setattr(self, name, getattr(self, name) + data)

    def _header_end(self) -> None:
        self._headers[self._header_field.strip().lower()] = self._header_value.strip()
        self._header_field, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == self.file_field and b"filename" in options:
            if self.sink is not None or self.form.filename is not None:
                raise InvalidRequest(
                    f"send exactly one {self.file_field!r} part", param=self.file_field
                )
            self.form.filename = options[b"filename"].decode("utf-8", "replace")
            self.sink = self.open_sink()
            self._in_file = True
        else:
            self._field_name = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._in_file:
            assert self.sink is not None
            self.form.file_bytes += len(chunk)
            if self.form.file_bytes > self.max_file_bytes:
                raise PayloadTooLarge(
                    f"the {self.file_field} is larger than the limit of {self.max_file_bytes} "
                    "bytes",
                    param=self.file_field,
                )
            self.sink.write(chunk)
            return
        self._field_value += chunk
        if len(self._field_value) > MAX_FIELD_BYTES:
            raise InvalidRequest(
                f"form field {self._field_name!r} is longer than {MAX_FIELD_BYTES} bytes",
                param=self._field_name,
            )

    def _part_end(self) -> None:
        if self._in_file:
            self._close_sink()
        elif self._field_name:
            self.form.fields[self._field_name] = self._field_value.decode("utf-8", "replace")

    def _close_sink(self) -> None:
        if self.sink is not None:
            self.sink.close()
            self.sink = None


def multipart_boundary(content_type: str | None, file_field: str = FILE_FIELD) -> bytes:
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        fields = (
            "fields 'file' and 'purpose'" if file_field == FILE_FIELD else f"a {file_field!r} part"
        )
        raise InvalidRequest(f"send multipart/form-data with {fields}", param=file_field)
    return options[b"boundary"]


async def receive_upload(
    chunks: AsyncIterator[bytes],
    content_type: str | None,
    open_sink: Callable[[], IO[bytes]],
    max_file_bytes: int,
    file_field: str = FILE_FIELD,
) -> UploadedForm:
    """Parses the body; the ``file_field`` part (with a filename) goes to ``open_sink()``. Raises
    InvalidRequest or PayloadTooLarge."""
    handler = _PartHandler(open_sink, max_file_bytes, file_field)
    try:
        boundary = multipart_boundary(content_type, file_field)
        parser = MultipartParser(boundary, handler.callbacks())
        async for chunk in chunks:
            # Writing to the store may block (a network filesystem): keep it off the event loop.
            await to_thread.run_sync(parser.write, chunk)
        parser.finalize()
    except FormParserError as exc:
        raise InvalidRequest(f"malformed multipart body: {exc}", param=file_field) from None
    finally:
        handler._close_sink()
    if not handler.complete:
        raise InvalidRequest(
            "the multipart body ended before its closing boundary", param=file_field
        )
    if handler.form.filename is None:
        raise InvalidRequest(
            f"the form has no {file_field!r} part with a filename", param=file_field
        )
    return handler.form
