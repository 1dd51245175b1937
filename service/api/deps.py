"""What a route may ask for besides its session (``service.api.db.DbSession``) and its caller
(``service.api.auth``): the app's state and the pagination parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Query, Request

from service.api.db import AsyncDatabase
from service.core.pagination import MAX_LIMIT
from service.core.runtime import Runtime

if TYPE_CHECKING:
    from service.api.auth import KeyCache, TeamIdentity
    from service.api.coalescer import Coalescer
    from service.api.jobs.polling import JobKey
    from service.api.metrics import Metrics


@dataclass
class AppState:
    """Everything the app holds, made once by ``create_app`` (``app.state.gora``)."""

    runtime: Runtime
    database: AsyncDatabase
    key_cache: KeyCache
    key_lookups: Coalescer[str, TeamIdentity]
    metrics: Metrics
    job_status: Coalescer[JobKey, str]


def app_state(request: Request) -> AppState:
    return request.app.state.gora


async def _state(request: Request) -> AppState:  # async: a sync dependency costs a thread hop
    return app_state(request)


State = Annotated[AppState, Depends(_state)]

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="How many items, at most 100")]
After = Annotated[
    str | None, Query(max_length=100, description="The id of the last item of the previous page")
]
