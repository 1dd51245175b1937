"""``/v1/pools``: the GPU pools, their workers online and the team's jobs in each (the dashboard's
Pools page, and anyone deciding where to send a job)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from service.api.auth import CurrentTeam
from service.api.db import DbSession
from service.api.deps import State
from service.api.routing import api_router
from service.core.workers.service import pool_overview

router = api_router(prefix="/v1", tags=["pools"])


class WorkerOut(BaseModel):
    id: str
    host: str
    gpus: list[Any]
    started_at: int | None
    last_heartbeat_at: int | None


class TeamJobsOut(BaseModel):
    running: int
    queued: int
    max_running_jobs: int | None


class PoolOut(BaseModel):
    id: str
    object: str = "pool"
    workers: list[WorkerOut]
    team: TeamJobsOut


class PoolList(BaseModel):
    object: str = "list"
    data: list[PoolOut]


@router.get(
    "/pools",
    response_model=PoolList,
    description="Each pool this server knows: the workers online in it (a presence stamp within "
    "GORA_WORKER_ONLINE_WITHIN_S), their GPUs and last heartbeat, and your team's running and "
    "queued jobs there against its limit.",
)
async def list_pools(team: CurrentTeam, session: DbSession, state: State) -> PoolList:
    pools = await session.run_sync(pool_overview, state.runtime.settings, team.id)
    return PoolList(data=[PoolOut(**p) for p in pools])
