"""The domain's errors: what went wrong, for a person, and the field to fix (``param``).

The core raises these and knows nothing of HTTP; the API maps each class to a status code and the
``{"error": {code, message, param, type}}`` body in one place (``service.api.errors``).
"""

from __future__ import annotations


class DomainError(Exception):
    """An error the caller can act on. ``param`` names the offending field when there is one."""

    code = "invalid_request"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(DomainError):
    pass


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class Unavailable(DomainError):
    """A dependency (the database) cannot be reached; the same request may succeed later."""

    code = "unavailable"
