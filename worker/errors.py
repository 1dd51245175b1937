"""Failures that are the submitter's to fix, with the error code and the field to change."""

from __future__ import annotations

from service.core.jobs.lifecycle import ErrorCode


class JobUserError(Exception):
    """Raised inside a job for a fault in what was submitted; the job fails with ``code``."""

    def __init__(self, code: ErrorCode, message: str, param: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param

    def as_error(self) -> dict[str, str | None]:
        return {"code": self.code.value, "message": self.message, "param": self.param}


OUT_OF_MEMORY_ADVICE = (
    "lower hyperparameters.batch_size (each step then holds fewer rows) or "
    "hyperparameters.max_seq_length, or give the job more GPUs"
)


def out_of_memory_error(detail: str = "") -> dict[str, str | None]:
    """The job error for a device that ran out of memory: the submitter can fix it, and how."""
    where = f" ({detail})" if detail else ""
    return {
        "code": ErrorCode.OUT_OF_MEMORY.value,
        "message": f"the GPU ran out of memory{where}: {OUT_OF_MEMORY_ADVICE}",
        "param": "hyperparameters.batch_size",
    }
