"""The OpenAPI schema with the status codes the API really answers, each with the error body.

FastAPI documents a 422 for every operation with parameters; this API never answers 422 (a bad
request is a 400 naming the field). The schema is rewritten once: the 422s go, and each operation
gets the errors it can meet, from what it declares (parameters, a body, security, a path id), plus
what its route declares itself (409, 413).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
# Paths that answer without the database: /healthz (and /readyz, which reports it as a 503 itself).
NO_DATABASE = {"/healthz", "/readyz"}


class ErrorDetail(BaseModel):
    code: str
    message: str
    param: str | None
    type: str


class ErrorResponse(BaseModel):
    """Every error: ``{"error": {code, message, param, type}}`` (service.api.errors)."""

    error: ErrorDetail


def error_response(description: str) -> dict[str, Any]:
    """A ``responses`` entry for a route's own errors (409, 413)."""
    return {"description": description, "model": ErrorResponse}


def _errors_of(path: str, operation: dict[str, Any]) -> dict[str, str]:
    errors = {}
    # A path id that names nothing is a 404, not a 400: only a body, a query or a header can be.
    queried = [p for p in operation.get("parameters", []) if p.get("in") != "path"]
    if queried or operation.get("requestBody"):
        errors["400"] = "A field is missing or invalid: `param` names it"
    if operation.get("security"):
        errors["401"] = "No API key (or admin token), or a wrong one"
        if "admin" in operation.get("tags", []):
            errors["403"] = "Admin endpoints are disabled: the server has no GORA_ADMIN_TOKEN"
    if "{" in path:
        errors["404"] = "No such object for this team (another team's id answers the same)"
    if path not in NO_DATABASE:
        errors["503"] = "The database cannot be reached; retry after the Retry-After seconds"
    return errors


def _rewrite(schema: dict[str, Any]) -> dict[str, Any]:
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, description in _errors_of(path, operation).items():
                responses.setdefault(
                    status,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": ERROR_REF}},
                    },
                )
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update(_error_schemas())
    return schema


def _error_schemas() -> dict[str, Any]:
    definition = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    return {**definition.pop("$defs", {}), "ErrorResponse": definition}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = _rewrite(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
