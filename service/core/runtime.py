"""What the domain services use besides a database session: the settings, the store, the job queue."""

from __future__ import annotations

from dataclasses import dataclass

from service.core.queue import JobQueue, make_celery
from service.core.settings import Settings
from service.core.storage import Storage


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    storage: Storage
    queue: JobQueue

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        return cls(settings, Storage(settings.storage_url), JobQueue(make_celery(settings)))
