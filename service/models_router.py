"""``GET /v1/models``: the base models a job may name (OpenAI's model list shape)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.auth import CurrentTeam
from service.jobs.catalog import available_models
from service.runtime import CurrentRuntime

router = APIRouter(prefix="/v1", tags=["models"])


@router.get("/models")
def list_models(_: CurrentTeam, runtime: CurrentRuntime) -> dict[str, Any]:
    models = [
        {"object": "model", "created": 0, "owned_by": "gora", **model}
        for model in available_models(runtime.settings)
    ]
    return {"object": "list", "data": models}
