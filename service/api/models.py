"""``GET /v1/models``: the base models a job may name (OpenAI's model list shape)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool

from service.api.auth import CurrentTeam
from service.api.deps import State
from service.api.routing import api_router
from service.core.jobs.catalog import available_models

router = api_router(prefix="/v1", tags=["models"])


@router.get("/models")
async def list_models(_: CurrentTeam, state: State) -> dict[str, Any]:
    # The models directory is read from disk: off the event loop.
    found = await run_in_threadpool(available_models, state.runtime.settings)
    models = [{"object": "model", "created": 0, "owned_by": "gora", **model} for model in found]
    return {"object": "list", "data": models}
