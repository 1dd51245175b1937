"""The FastAPI application: ``create_app()`` wires settings, database, store, queue and routers."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.auth import KeyCache
from service.broker import JobQueue, make_celery
from service.db import Database
from service.errors import install_error_handlers
from service.files.router import router as files_router
from service.health.router import router as health_router
from service.jobs.router import router as jobs_router
from service.metrics import Metrics, MetricsMiddleware
from service.models_router import router as models_router
from service.runtime import Runtime
from service.settings import Settings, get_settings
from service.storage import Storage
from service.teams.router import router as teams_router


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
    database = Database(settings.database_url)
    runtime = Runtime(
        settings=settings,
        database=database,
        storage=Storage(settings.storage_url),
        queue=JobQueue(make_celery(settings)),
        key_cache=KeyCache(settings.auth_cache_ttl_s),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        _freeze_startup_objects()
        yield
        await database.reads.close()
        database.dispose()

    app = FastAPI(
        title="GoRA fine-tuning service",
        version="0.1.0",
        description="OpenAI-shaped fine-tuning API running GoRA (gradient-driven adaptive LoRA).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.storage = runtime.storage
    app.state.runtime = runtime
    app.state.metrics = Metrics(database)
    install_error_handlers(app)
    # Routes are matched in order: the probes first, then the jobs router, whose job status is
    # the endpoint clients poll (no two routers share a path, so the order changes nothing else).
    for router in (health_router, jobs_router, teams_router, files_router, models_router):
        app.include_router(router)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
