"""The API's errors: a small hierarchy, turned into ``{"error": {code, message, param, type}}`` in one place.

Routes and services raise these; ``install_error_handlers`` maps them, FastAPI's request validation
errors and unknown routes to the same JSON shape, so clients parse one format for every failure.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the client can act on. ``param`` names the offending field when there is one."""

    status_code = 400
    code = "invalid_request"
    kind = "invalid_request_error"  # OpenAI's error "type"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.param, self.kind)


class InvalidRequest(ApiError):
    pass


class AuthenticationFailed(ApiError):
    status_code = 401
    code = "invalid_api_key"
    kind = "authentication_error"


class PermissionDenied(ApiError):
    status_code = 403
    code = "permission_denied"
    kind = "permission_error"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"
    kind = "not_found_error"


class Conflict(ApiError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "file_too_large"


class ServiceUnavailable(ApiError):
    status_code = 503
    code = "unavailable"
    kind = "server_error"


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


def _validation_response(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors()) or [{"loc": (), "msg": "invalid request"}]
    param = _param_from_location(tuple(errors[0].get("loc", ())))
    # A union ("auto" or an integer) fails once per member: say all that would have been accepted.
    same_field = [e for e in errors if _param_from_location(tuple(e.get("loc", ()))) == param]
    messages = list(dict.fromkeys(str(e.get("msg", "invalid")) for e in same_field))
    message = " or ".join(
        [messages[0], *(m.removeprefix("Input should be ") for m in messages[1:])]
    )
    if param:
        message = f"{param}: {message}"
    return JSONResponse(
        error_body("invalid_request", message, param, "invalid_request_error"), status_code=400
    )


def _api_error_response(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status_code)


def _http_error_response(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "http_error")
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return JSONResponse(
        error_body(code, str(exc.detail), None, kind),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def _internal_error_response(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        error_body("internal_error", "internal server error", None, "server_error"), status_code=500
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error_response)
    app.add_exception_handler(RequestValidationError, _validation_response)
    app.add_exception_handler(StarletteHTTPException, _http_error_response)
    app.add_exception_handler(Exception, _internal_error_response)
