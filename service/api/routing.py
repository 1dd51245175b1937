"""The routers' route class: a request body is parsed so that no JSON a client can send is a 500.

FastAPI parses bodies with ``json.loads``, which raises more than ``JSONDecodeError``: bytes that are
not UTF-8 (``UnicodeDecodeError``), an integer longer than Python's 4,300-digit limit
(``ValueError``), nesting deep enough to exhaust the parser's recursion (``RecursionError``). FastAPI
answers those with a bare "error parsing the body". Here each becomes a ``JSONDecodeError`` (FastAPI
turns it into a validation error our handler names), and an over-long integer is parsed as
``OversizedInteger`` so that the field it was sent for fails validation by name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

# Python refuses to convert longer digit strings to int (sys.get_int_max_str_digits).
MAX_INTEGER_DIGITS = 4300


class OversizedInteger(float):
    """An integer literal too long to convert: infinite as a number (so every bounded or integer
    field refuses it), and it remembers how many digits it had for the error message."""

    digits: int

    def __new__(cls, literal: str) -> OversizedInteger:
        value = super().__new__(cls, -math.inf if literal.startswith("-") else math.inf)
        value.digits = len(literal.lstrip("-"))
        return value


def _parse_int(literal: str) -> int | float:
    if len(literal.lstrip("-")) > MAX_INTEGER_DIGITS:
        return OversizedInteger(literal)
    return int(literal)


def parse_json_body(body: bytes) -> Any:
    """The body as JSON; every way it can fail is a ``JSONDecodeError`` saying why."""
    try:
        text = body.decode("utf-8")  # JSON bodies are UTF-8 (RFC 8259)
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(f"not UTF-8 text (byte {exc.start})", "", 0) from None
    try:
        return json.loads(text, parse_int=_parse_int)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None


class _JsonBodyRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json_body(await self.body())
        return self._json


class JsonBodyRoute(APIRoute):
    """Routes with a body read it through ``parse_json_body``; the others are untouched."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def handle(request: Request) -> Response:
            return await handler(_JsonBodyRequest(request.scope, request.receive))

        return handle


def api_router(**options: Any) -> APIRouter:
    return APIRouter(route_class=JsonBodyRoute, **options)
