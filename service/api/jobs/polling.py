"""The job status clients poll: concurrent polls share one read (``service.api.coalescer``)."""

from __future__ import annotations

from sqlalchemy import select

from service.api.coalescer import Coalescer
from service.api.db import AsyncDatabase
from service.api.jobs.schemas import JobOut
from service.core.jobs.models import Job

JobKey = tuple[str, str]  # (job id, the asking team's id)


def job_status_reads(database: AsyncDatabase) -> Coalescer[JobKey, str]:
    """``await reads.get((job_id, team_id))``: the job's ``JobOut`` JSON, or None for an unknown
    job or another team's."""

    async def bodies(keys: list[JobKey]) -> dict[JobKey, str]:
        query = select(Job).where(Job.id.in_({job_id for job_id, _ in keys}))
        async with database.single_reads() as session:
            jobs = (await session.scalars(query)).all()
        # Keyed by the row's own team: a job answers only the team that owns it.
        return {(job.id, job.team_id): JobOut.of(job).model_dump_json() for job in jobs}

    return Coalescer(bodies)
