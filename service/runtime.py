"""What a request may use besides its database session: settings, the store, the job queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from service.auth import KeyCache
from service.broker import JobQueue
from service.db import Database
from service.settings import Settings
from service.storage import Storage


@dataclass
class Runtime:
    settings: Settings
    database: Database
    storage: Storage
    queue: JobQueue
    key_cache: KeyCache


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


CurrentRuntime = Annotated[Runtime, Depends(_runtime)]
