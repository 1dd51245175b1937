"""Every table, imported in one place so that ``Base.metadata`` is complete (Alembic reads it)."""

from service.core.db import Base
from service.core.files.models import StoredFile, Upload, UploadPart
from service.core.jobs.models import (
    Checkpoint,
    IdempotencyKey,
    Job,
    JobAllocation,
    JobEvent,
)
from service.core.teams.models import ApiKey, Team
from service.core.webhooks.models import WebhookDelivery, WebhookEndpoint
from service.core.workers.models import Worker

__all__ = [
    "ApiKey",
    "Base",
    "Checkpoint",
    "IdempotencyKey",
    "Job",
    "JobAllocation",
    "JobEvent",
    "StoredFile",
    "Team",
    "Upload",
    "UploadPart",
    "WebhookDelivery",
    "WebhookEndpoint",
    "Worker",
]
