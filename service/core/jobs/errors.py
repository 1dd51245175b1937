"""Why a job failed: ``JobError`` is the one way to say it (``job.error`` is its ``as_dict()``).

``user_*`` codes (and ``out_of_memory``) say the submitter must change something, named by ``param``;
the others are the service's faults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    USER_BAD_DATA = "user_bad_data"
    USER_MODEL_NOT_LOADABLE = "user_model_not_loadable"
    USER_TARGET_MODULES_NOT_FOUND = "user_target_modules_not_found"
    USER_BAD_CONFIG = "user_bad_config"
    INTERNAL_ERROR = "internal_error"
    WORKER_LOST = "worker_lost"
    OUT_OF_MEMORY = "out_of_memory"


OUT_OF_MEMORY_ADVICE = (
    "lower hyperparameters.batch_size (each step then holds fewer rows) or "
    "hyperparameters.max_seq_length, or give the job more GPUs"
)


@dataclass(frozen=True)
class JobError:
    code: ErrorCode
    message: str
    param: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "code": self.code.value}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> JobError:
        return cls(ErrorCode(values["code"]), values["message"], values.get("param"))

    @classmethod
    def internal(cls, message: str) -> JobError:
        return cls(ErrorCode.INTERNAL_ERROR, message)

    @classmethod
    def out_of_memory(cls, detail: str = "") -> JobError:
        """A device that ran out of memory: the submitter can fix it, and the message says how."""
        where = f" ({detail})" if detail else ""
        return cls(
            ErrorCode.OUT_OF_MEMORY,
            f"the GPU ran out of memory{where}: {OUT_OF_MEMORY_ADVICE}",
            "hyperparameters.batch_size",
        )


class JobUserError(Exception):
    """Raised inside a job for a fault in what was submitted; the job fails with ``error``."""

    def __init__(self, code: ErrorCode, message: str, param: str | None = None):
        super().__init__(message)
        self.error = JobError(code, message, param)
