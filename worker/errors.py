"""Failures that are the submitter's to fix, with the error code and the field to change."""

from __future__ import annotations

from service.jobs.lifecycle import ErrorCode


class JobUserError(Exception):
    """Raised inside a job for a fault in what was submitted; the job fails with ``code``."""

    def __init__(self, code: ErrorCode, message: str, param: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param

    def as_error(self) -> dict[str, str | None]:
        return {"code": self.code.value, "message": self.message, "param": self.param}
