"""Every table, imported in one place so that ``Base.metadata`` is complete (Alembic reads it)."""

from service.db import Base
from service.files.models import StoredFile
from service.jobs.models import (
    AllocationLayer,
    Checkpoint,
    IdempotencyKey,
    Job,
    JobAllocation,
    JobEvent,
)
from service.teams.models import ApiKey, Team

__all__ = [
    "AllocationLayer",
    "ApiKey",
    "Base",
    "Checkpoint",
    "IdempotencyKey",
    "Job",
    "JobAllocation",
    "JobEvent",
    "StoredFile",
    "Team",
]
