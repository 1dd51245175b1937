"""The FastAPI application: ``create_app()`` wires settings, database, store, queue and routers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.api.auth import KeyCache, key_lookups
from service.api.dashboard.router import assets as dashboard_assets
from service.api.dashboard.router import router as dashboard_router
from service.api.db import AsyncDatabase
from service.api.deps import AppState
from service.api.errors import install_error_handlers
from service.api.files.router import router as files_router
from service.api.health import router as health_router
from service.api.jobs.polling import job_status_reads
from service.api.jobs.router import router as jobs_router
from service.api.metrics import Metrics, MetricsMiddleware
from service.api.models import router as models_router
from service.api.openapi import install_openapi
from service.api.pools import router as pools_router
from service.api.teams.router import router as teams_router
from service.api.uploads.router import router as uploads_router
from service.api.uploads.sweeper import run_upload_sweeper
from service.api.webhooks.router import router as hooks_router
from service.api.webhooks.sender import run_sender
from service.core.runtime import Runtime
from service.core.settings import Settings, get_settings


def _freeze_startup_objects() -> None:
    """Moves what exists once the app is up (modules, routes, schemas: hundreds of thousands of
    objects) out of the garbage collector's reach. Without it every full collection walks them
    all, a pause of 100+ ms on a loaded machine that stalls every request in flight; requests
    that allocate (job status: rows, dicts, JSON) trigger such collections every few seconds.
    """
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if settings.is_embedded_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = AsyncDatabase(settings.database_url)
    state = AppState(
        runtime=Runtime.from_settings(settings),
        database=database,
        key_cache=KeyCache(settings.auth_cache_ttl_s),
        key_lookups=key_lookups(database),
        metrics=Metrics(),
        job_status=job_status_reads(database),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        _freeze_startup_objects()
        # Beside the requests: the webhook sender and the sweep of expired uploads.
        tasks = [
            asyncio.create_task(run_sender(settings), name="webhook-sender"),
            asyncio.create_task(
                run_upload_sweeper(settings, state.runtime.storage), name="upload-sweeper"
            ),
        ]
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await database.dispose()

    app = FastAPI(
        title="GoRA fine-tuning service",
        version="0.1.0",
        description="OpenAI-shaped fine-tuning API running GoRA (gradient-driven adaptive LoRA).",
        lifespan=lifespan,
    )
    app.state.gora = state
    install_error_handlers(app)
    install_openapi(app)
    # Routes are matched in order: the probes first, then the jobs router, whose job status is
    # the endpoint clients poll (no two routers share a path, so the order changes nothing else).
    routers = (health_router, jobs_router, teams_router, files_router, uploads_router, pools_router)
    for router in (*routers, models_router, hooks_router, dashboard_router):
        app.include_router(router)
    app.mount("/dashboard", dashboard_assets, name="dashboard")
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    return app
