"""Liveness, readiness and metrics: unauthenticated, for load balancers and Prometheus."""

from __future__ import annotations

from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from service.api.db import DbSession
from service.api.deps import AppState, State
from service.api.errors import error_body
from service.api.routing import api_router
from service.core.jobs import repository as jobs_repository

router = api_router(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers; says nothing about its dependencies (see /readyz)."""
    return {"status": "ok"}


async def _check_dependencies(state: AppState) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        async with state.database.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        await run_in_threadpool(state.runtime.queue.ping)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"unreachable: {type(exc).__name__}"
    return checks


@router.get(
    "/readyz",
    responses={503: {"description": "The database or the broker cannot be reached"}},
)
async def readyz(state: State) -> Any:
    checks = await _check_dependencies(state)
    failing = [name for name, status in checks.items() if status != "ok"]
    if not failing:
        return {"status": "ok", "checks": checks}
    message = "; ".join(f"{name} {checks[name]}" for name in failing)
    body = error_body("not_ready", message, None, "server_error") | {"checks": checks}
    return JSONResponse(body, status_code=503)


@router.get("/metrics", response_class=Response)
async def metrics(session: DbSession, state: State) -> Response:
    job_counts = await session.run_sync(jobs_repository.count_by_status)
    exposition = state.metrics.exposition(job_counts)
    return Response(exposition, media_type="text/plain; version=0.0.4; charset=utf-8")
