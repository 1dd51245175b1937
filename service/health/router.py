"""Liveness, readiness and metrics: unauthenticated, for load balancers and Prometheus."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from service.errors import error_body
from service.runtime import Runtime

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers; says nothing about its dependencies (see /readyz)."""
    return {"status": "ok"}


def _check_dependencies(runtime: Runtime) -> dict[str, str]:
    checks: dict[str, str] = {}
    try:
        with runtime.database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        runtime.queue.ping()
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"unreachable: {type(exc).__name__}"
    return checks


@router.get(
    "/readyz",
    responses={503: {"description": "The database or the broker cannot be reached"}},
)
async def readyz(request: Request) -> Any:
    checks = await run_in_threadpool(_check_dependencies, request.app.state.runtime)
    failing = [name for name, state in checks.items() if state != "ok"]
    if not failing:
        return {"status": "ok", "checks": checks}
    message = "; ".join(f"{name} {checks[name]}" for name in failing)
    body = error_body("not_ready", message, None, "server_error") | {"checks": checks}
    return JSONResponse(body, status_code=503)


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    exposition = request.app.state.metrics.exposition()
    return Response(exposition, media_type="text/plain; version=0.0.4; charset=utf-8")
