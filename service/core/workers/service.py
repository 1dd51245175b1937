"""The pools as a team sees them: the workers online in each, with their GPUs and last heartbeat,
and the team's running and queued jobs there against the team's limit."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.core.clock import to_unix, utcnow
from service.core.jobs.lifecycle import HOLDING, JobStatus
from service.core.jobs.models import Job
from service.core.settings import Settings
from service.core.teams.models import Team
from service.core.workers import repository


def pool_overview(session: Session, settings: Settings, team_id: str) -> list[dict[str, Any]]:
    now = utcnow()
    workers = repository.online(session, now - timedelta(seconds=settings.worker_online_within_s))
    holding = [JobStatus(s).value for s in HOLDING]
    rows = session.execute(
        select(Job.pool, Job.status, func.count())
        .where(Job.team_id == team_id, Job.status.in_([*holding, JobStatus.QUEUED.value]))
        .group_by(Job.pool, Job.status)
    ).all()
    running, queued = Counter(), Counter()
    for pool, status, count in rows:
        (queued if status == JobStatus.QUEUED.value else running)[pool] += count
    team = session.get(Team, team_id)
    limit = team.max_running_jobs if team is not None else None
    return [
        {
            "id": pool,
            "object": "pool",
            "workers": [
                {
                    "id": w.id,
                    "host": w.host,
                    "gpus": w.gpus,
                    "started_at": to_unix(w.started_at),
                    "last_heartbeat_at": to_unix(w.last_seen_at),
                }
                for w in workers
                if w.pool == pool
            ],
            "team": {"running": running[pool], "queued": queued[pool], "max_running_jobs": limit},
        }
        for pool in settings.pools
    ]
