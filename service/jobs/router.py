"""``/v1/fine_tuning/jobs``: OpenAI's fine-tuning endpoints plus GoRA's allocation and adapter."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import ARRAY, String, any_, bindparam, select

from service import ids, storage
from service.auth import CurrentTeam, bearer, current_team
from service.db import AsyncReads, Database, DbSession
from service.errors import InvalidRequest, NotFound
from service.jobs import service
from service.jobs.archive import stream_tar_gz
from service.jobs.heatmap import render_heatmap
from service.jobs.lifecycle import JobStatus
from service.jobs.models import Job
from service.jobs.schemas import (
    AllocationOut,
    CheckpointOut,
    EventOut,
    JobCreate,
    JobOut,
    event_seq,
)
from service.jobs.stream import event_stream
from service.pagination import After, Limit
from service.runtime import CurrentRuntime
from service.schemas import ListPage

router = APIRouter(prefix="/v1/fine_tuning", tags=["fine_tuning"])

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="A retried create with the same key returns the first job",
    ),
]
_METADATA_PARAM = re.compile(r"^metadata\[(.+)\]$")
MAX_METADATA_VALUE = 512


def _metadata_filter(request: Request) -> dict[str, str]:
    """``metadata[k]=v`` query parameters (as the openai client sends them) as {k: v}."""
    wanted: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        found = _METADATA_PARAM.match(name)
        if found:
            key = found.group(1)
            if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", key):
                raise InvalidRequest(f"invalid metadata key {key!r}", param=name)
            if len(value) > MAX_METADATA_VALUE or not value.isprintable():
                raise InvalidRequest("metadata values are printable, at most 512 chars", param=name)
            wanted[key] = value
    return wanted


@router.post("/jobs", response_model=JobOut)
def create_job(
    body: JobCreate,
    team: CurrentTeam,
    session: DbSession,
    runtime: CurrentRuntime,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobOut:
    return JobOut.of(service.create_job(session, runtime, team.id, body, idempotency_key))


@router.get(
    "/jobs",
    response_model=ListPage[JobOut],
    description="Newest first. Filter with `metadata[key]=value` query parameters.",
)
def list_jobs(
    request: Request, team: CurrentTeam, session: DbSession, after: After = None, limit: Limit = 20
) -> ListPage[JobOut]:
    rows, has_more = service.list_jobs(session, team.id, after, limit, _metadata_filter(request))
    return ListPage.of([JobOut.of(j) for j in rows], has_more, [j.id for j in rows])


# The columns JobOut.of reads, labelled with the Job attribute names it reads them by, so a row
# stands in for the ORM object. Built (and, on PostgreSQL, compiled) once: this is what clients poll.
_JOB_OUT_COLUMNS = (
    "id", "team_id", "created_at", "error", "fine_tuned_model", "finished_at", "hyperparameters",
    "model", "result_files", "seed", "status", "trained_tokens", "training_file_id",
    "validation_file_id", "user_metadata", "method", "suffix", "phase", "started_at", "adapter",
    "pool", "gpu_count", "priority",
)  # fmt: skip
_JOB_FOR_TEAM = select(*(getattr(Job, name).label(name) for name in _JOB_OUT_COLUMNS)).where(
    Job.id == bindparam("job_id"), Job.team_id == bindparam("team_id")
)
# The same for many (id, team) pairs at once (PostgreSQL); rows are matched to their pair below.
_JOBS_FOR_TEAMS = select(*(getattr(Job, name).label(name) for name in _JOB_OUT_COLUMNS)).where(
    Job.id == any_(bindparam("job_ids", type_=ARRAY(String))),
    Job.team_id == any_(bindparam("team_ids", type_=ARRAY(String))),
)


async def _job_bodies(reads: AsyncReads, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """{(job id, team id): the job's JSON} for those of ``keys`` that exist (one SELECT)."""
    if reads.is_postgresql:
        params = {"job_ids": [k[0] for k in keys], "team_ids": list({k[1] for k in keys})}
        rows = await reads.all(_JOBS_FOR_TEAMS, params)
    else:
        many = [{"job_id": job_id, "team_id": team_id} for job_id, team_id in keys]
        rows = [row for row in await reads.each(_JOB_FOR_TEAM, many) if row is not None]
    # Keyed by the row's own team: a job answers only the team that owns it.
    return {(row.id, row.team_id): JobOut.of(row).model_dump_json() for row in rows}


@router.get(
    "/jobs/{job_id}",
    response_model=JobOut,
    # The same bearer scheme CurrentTeam declares; authenticated in the body (see below).
    openapi_extra={"security": [{"HTTPBearer": []}]},
)
async def retrieve_job(job_id: str, request: Request) -> Response:
    # The endpoint clients poll. An async route with no sync dependency (FastAPI would run one,
    # e.g. CurrentRuntime, in a thread) that awaits an autocommit SELECT on the event loop: no
    # session, no transaction, no threadpool hop on PostgreSQL. Requests polling at the same time
    # share that SELECT (see Coalescer: each one's answer is read after it arrived, never cached),
    # and the JSON goes out as is (FastAPI would otherwise validate the returned model again).
    # The same authentication as CurrentTeam (the same two calls), made here rather than through
    # FastAPI's nested dependency resolution, which costs this endpoint more than its query does.
    team = await current_team(await bearer(request), request)
    database: Database = request.app.state.database
    body = None
    if ids.is_id(ids.JOB, job_id):
        jobs = database.reads.coalesced("job_status", _job_bodies)
        body = await jobs.get((job_id, team.id))
    if body is None:  # unknown, malformed, or another team's id: all alike
        raise NotFound(
            f"no fine-tuning job with id {job_id!r}", param="job_id", code="job_not_found"
        )
    return Response(body, media_type="application/json")


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: str, team: CurrentTeam, session: DbSession) -> JobOut:
    return JobOut.of(service.cancel_job(session, team.id, job_id))


@router.get("/jobs/{job_id}/events", response_model=ListPage[EventOut])
def list_events(
    job_id: str, team: CurrentTeam, session: DbSession, after: After = None, limit: Limit = 20
) -> ListPage[EventOut]:
    rows, has_more = service.list_events(session, team.id, job_id, after, limit)
    out = [EventOut.of(e) for e in rows]
    return ListPage.of(out, has_more, [e.id for e in out])


@router.get(
    "/jobs/{job_id}/events/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
    description="Server-sent events, oldest first, from after `after` (or Last-Event-ID) until "
    "the job has finished; the last frame is `event: end`.",
)
def stream_events(
    job_id: str,
    team: CurrentTeam,
    session: DbSession,
    runtime: CurrentRuntime,
    after: After = None,
    last_event_id: Annotated[str | None, Header(max_length=100)] = None,
) -> StreamingResponse:
    job = service.get_job(session, team.id, job_id)
    resume_from = after or last_event_id
    after_seq = 0
    if resume_from is not None:
        after_seq = event_seq(resume_from) or 0
        if after_seq == 0:
            raise InvalidRequest(f"{resume_from!r} is not an event id", param="after")
    frames = event_stream(
        runtime.database, job.id, after_seq, runtime.settings.event_poll_interval_s
    )
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(frames, media_type="text/event-stream", headers=headers)


@router.get("/jobs/{job_id}/checkpoints", response_model=ListPage[CheckpointOut])
def list_checkpoints(
    job_id: str, team: CurrentTeam, session: DbSession, after: After = None, limit: Limit = 10
) -> ListPage[CheckpointOut]:
    job, rows, has_more = service.list_checkpoints(session, team.id, job_id, after, limit)
    return ListPage.of([CheckpointOut.of(c, job) for c in rows], has_more, [c.id for c in rows])


@router.get("/jobs/{job_id}/allocation", response_model=AllocationOut)
def get_allocation(job_id: str, team: CurrentTeam, session: DbSession) -> AllocationOut:
    report = service.get_allocation(session, team.id, job_id)
    return AllocationOut(job_id=job_id, **report)


@router.get(
    "/jobs/{job_id}/allocation.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
    description="Heatmap of the allocated rank by layer index × module kind, with a legend.",
)
def get_allocation_png(job_id: str, team: CurrentTeam, session: DbSession) -> Response:
    report = service.get_allocation(session, team.id, job_id)
    title = f"{job_id}: {report['adapter_type']} ranks by layer and module"
    return Response(render_heatmap(report, title), media_type="image/png")


@router.get(
    "/jobs/{job_id}/adapter",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/gzip": {}}}},
    description="The trained adapter as a .tar.gz: `peft` (per-module ranks, loads with "
    "PeftModel.from_pretrained and vLLM) or `uniform` (one rank, for servers that need it).",
)
def download_adapter(
    job_id: str,
    team: CurrentTeam,
    session: DbSession,
    runtime: CurrentRuntime,
    format: Annotated[Literal["peft", "uniform"], Query()] = "peft",
) -> StreamingResponse:
    job = service.get_job(session, team.id, job_id)
    if job.status != JobStatus.SUCCEEDED:
        raise NotFound(
            f"job {job.id} has no adapter: it is {job.status}; adapters exist once it succeeds",
            param="job_id",
            code="adapter_not_ready",
        )
    prefix = storage.adapter_key(job.id, format)
    if not runtime.storage.list_files(prefix):
        raise NotFound(
            f"job {job.id} has no {format} adapter stored", param="format", code="adapter_not_found"
        )
    name = f"{job.id}-{format}"
    return StreamingResponse(
        stream_tar_gz(runtime.storage, prefix, name),
        media_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{name}.tar.gz"'},
    )
