"""Every failure as ``{"error": {code, message, param, type}}``, mapped in one place.

The core raises ``service.core.errors`` (no HTTP in them); the HTTP layer adds the three that only it
meets (authentication, permission, body size). ``install_error_handlers`` maps each by its class, and
FastAPI's request validation errors and unknown routes to the same JSON shape, so clients parse one
format for every failure.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.routing import OversizedInteger
from service.core.db import DATABASE_UNREACHABLE
from service.core.errors import Conflict, DomainError, InvalidRequest, NotFound, Unavailable

log = logging.getLogger(__name__)

# Seconds a client is told to wait before retrying a 503.
RETRY_AFTER_S = 5


class AuthenticationFailed(DomainError):
    code = "invalid_api_key"


class PermissionDenied(DomainError):
    code = "permission_denied"


class PayloadTooLarge(DomainError):
    code = "file_too_large"


# Each error class's HTTP status and OpenAI's error "type"; a subclass answers as its nearest base.
_HTTP: dict[type[DomainError], tuple[int, str]] = {
    InvalidRequest: (400, "invalid_request_error"),
    AuthenticationFailed: (401, "authentication_error"),
    PermissionDenied: (403, "permission_error"),
    NotFound: (404, "not_found_error"),
    Conflict: (409, "invalid_request_error"),
    PayloadTooLarge: (413, "invalid_request_error"),
    Unavailable: (503, "server_error"),
}


def http_status(exc: DomainError) -> tuple[int, str]:
    """(status code, error type) of a domain error."""
    for cls in type(exc).__mro__:
        if cls in _HTTP:
            return _HTTP[cls]
    return 400, "invalid_request_error"


def error_body(code: str, message: str, param: str | None, kind: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "param": param, "type": kind}}


_TYPE_TAGS = {"int", "float", "str", "bool", "list", "dict", "none"}
_TAG_PREFIXES = ("function-", "literal[", "constrained-", "json-or-python[", "tagged-union[")


def _param_from_location(location: tuple[Any, ...]) -> str | None:
    """("body", "hyperparameters", "n_epochs") -> "hyperparameters.n_epochs"; the source is dropped."""
    parts = [str(p) for p in location[1:]] if len(location) > 1 else [str(p) for p in location]
    # Pydantic adds the union member or validator tag ("int", "literal['auto']") to the location.
    parts = [p for p in parts if p not in _TYPE_TAGS and not p.startswith(_TAG_PREFIXES)]
    return ".".join(parts) or None


def _validation_message(errors: list[dict[str, Any]], param: str | None) -> str:
    first = errors[0]
    if first.get("type") == "json_invalid":
        position = first["loc"][-1] if len(first.get("loc", ())) > 1 else 0
        where = f" (at character {position})" if position else ""
        return f"the request body is not valid JSON: {first.get('ctx', {}).get('error')}{where}"
    if isinstance(first.get("input"), OversizedInteger):
        return f"{param}: an integer of {first['input'].digits} digits is far out of range"
    # A union ("auto" or an integer) fails once per member: say all that would have been accepted.
    same_field = [e for e in errors if _param_from_location(tuple(e.get("loc", ()))) == param]
    messages = list(dict.fromkeys(str(e.get("msg", "invalid")) for e in same_field))
    message = " or ".join(
        [messages[0], *(m.removeprefix("Input should be ") for m in messages[1:])]
    )
    return f"{param}: {message}" if param else message


async def _validation_response(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors()) or [{"loc": (), "msg": "invalid request"}]
    if errors[0].get("type") == "json_invalid":  # the body as a whole: no field to name
        code, param = "invalid_json", None
    else:
        code, param = "invalid_request", _param_from_location(tuple(errors[0].get("loc", ())))
    message = _validation_message(errors, param)
    return JSONResponse(error_body(code, message, param, "invalid_request_error"), status_code=400)


async def _domain_error_response(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    status, kind = http_status(exc)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    body = error_body(exc.code, exc.message, exc.param, kind)
    return JSONResponse(body, status_code=status, headers=headers)


async def _database_error_response(request: Request, exc: Exception) -> JSONResponse:
    """The database is down, restarting or out of connections: a 503 the client may retry."""
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    unavailable = Unavailable(
        "the database cannot be reached; retry in a few seconds", code="database_unavailable"
    )
    return await _domain_error_response(request, unavailable)


async def _http_error_response(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "http_error")
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return JSONResponse(
        error_body(code, str(exc.detail), None, kind),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _internal_error_response(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        error_body("internal_error", "internal server error", None, "server_error"), status_code=500
    )


def install_error_handlers(app: FastAPI) -> None:
    # Async handlers: Starlette runs a sync one in a worker thread.
    app.add_exception_handler(DomainError, _domain_error_response)
    app.add_exception_handler(RequestValidationError, _validation_response)
    app.add_exception_handler(StarletteHTTPException, _http_error_response)
    for error in DATABASE_UNREACHABLE:
        app.add_exception_handler(error, _database_error_response)
    app.add_exception_handler(Exception, _internal_error_response)
