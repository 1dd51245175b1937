"""``/v1/fine_tuning/jobs``: OpenAI's fine-tuning endpoints plus GoRA's allocation and adapter."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from service.api.auth import CurrentTeam
from service.api.db import DbSession
from service.api.deps import After, AppState, Limit, State, app_state
from service.api.jobs.archive import stream_tar_gz
from service.api.jobs.heatmap import render_heatmap
from service.api.jobs.schemas import AllocationOut, CheckpointOut, EventOut, JobOut
from service.api.jobs.stream import event_stream
from service.api.openapi import error_response
from service.api.routing import api_router
from service.api.schemas import ListPage
from service.core import ids, storage
from service.core.errors import InvalidRequest, NotFound
from service.core.jobs import service
from service.core.jobs.adapter_settings import adapter_settings
from service.core.jobs.lifecycle import JobStatus
from service.core.jobs.spec import JobCreate

router = api_router(prefix="/v1/fine_tuning", tags=["fine_tuning"])

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


# The endpoint clients poll comes first: routes are matched in order.
@router.get("/jobs/{job_id}", response_model=JobOut)
async def retrieve_job(job_id: str, team: CurrentTeam, request: Request) -> Response:
    # Polls at the same moment share one read (service.api.jobs.polling); the JSON goes out as
    # read, since FastAPI would otherwise validate the returned model a second time. The state
    # comes from the request, not a dependency: each dependency costs this hot path ~5 %.
    reads = app_state(request).job_status
    body = await reads.get((job_id, team.id)) if ids.is_id(ids.JOB, job_id) else None
    if body is None:  # unknown, malformed, or another team's id: all alike
        raise NotFound(
            f"no fine-tuning job with id {job_id!r}", param="job_id", code="job_not_found"
        )
    return Response(body, media_type="application/json")


@router.post(
    "/jobs",
    response_model=JobOut,
    responses={409: error_response("The Idempotency-Key was used for a different request")},
)
async def create_job(
    body: JobCreate,
    team: CurrentTeam,
    session: DbSession,
    state: State,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobOut:
    job = await session.run_sync(service.create_job, state.runtime, team.id, body, idempotency_key)
    return JobOut.of(job)


@router.get(
    "/jobs",
    response_model=ListPage[JobOut],
    description="Newest first. Filter with `metadata[key]=value` query parameters. Queued jobs "
    "carry `queue_position` here (1: the next its pool claims).",
)
async def list_jobs(
    request: Request, team: CurrentTeam, session: DbSession, after: After = None, limit: Limit = 20
) -> ListPage[JobOut]:
    metadata = _metadata_filter(request)
    rows, has_more = await session.run_sync(service.list_jobs, team.id, after, limit, metadata)
    places = await session.run_sync(service.queue_positions, rows)
    jobs = [JobOut.of(j).model_copy(update={"queue_position": places.get(j.id)}) for j in rows]
    return ListPage.of(jobs, has_more, [j.id for j in rows])


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobOut,
    responses={409: error_response("The job has finished: only unfinished jobs can be cancelled")},
)
async def cancel_job(job_id: str, team: CurrentTeam, session: DbSession, state: State) -> JobOut:
    return JobOut.of(await session.run_sync(service.cancel_job, state.runtime, team.id, job_id))


@router.post(
    "/jobs/{job_id}/pause",
    response_model=JobOut,
    description="A running job saves a checkpoint at its next step, frees its GPU and is "
    "`paused` (`pausing` until then); a queued one is paused at once.",
    responses={409: error_response("Only queued or running jobs can be paused")},
)
async def pause_job(job_id: str, team: CurrentTeam, session: DbSession, state: State) -> JobOut:
    return JobOut.of(await session.run_sync(service.pause_job, state.runtime, team.id, job_id))


@router.post(
    "/jobs/{job_id}/resume",
    response_model=JobOut,
    description="A paused job is queued again and continues from the checkpoint it paused at.",
    responses={409: error_response("Only paused jobs can be resumed")},
)
async def resume_job(job_id: str, team: CurrentTeam, session: DbSession, state: State) -> JobOut:
    return JobOut.of(await session.run_sync(service.resume_job, state.runtime, team.id, job_id))


@router.get(
    "/adapter_settings",
    description="Each adapter setting (the fields of GoraConfig) with its default and its range "
    "or choices: what a form needs to offer them.",
)
async def get_adapter_settings(team: CurrentTeam) -> dict[str, Any]:
    return {"object": "list", "data": adapter_settings()}


@router.get("/jobs/{job_id}/events", response_model=ListPage[EventOut])
async def list_events(
    job_id: str, team: CurrentTeam, session: DbSession, after: After = None, limit: Limit = 20
) -> ListPage[EventOut]:
    rows, has_more = await session.run_sync(service.list_events, team.id, job_id, after, limit)
    out = [EventOut.of(e) for e in rows]
    return ListPage.of(out, has_more, [e.id for e in out])


@router.get(
    "/jobs/{job_id}/events/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
    description="Server-sent events, oldest first, from after `after` (or Last-Event-ID) until "
    "the job has finished; the last frame is `event: end`.",
)
async def stream_events(
    job_id: str,
    team: CurrentTeam,
    session: DbSession,
    state: State,
    after: After = None,
    last_event_id: Annotated[str | None, Header(max_length=100)] = None,
) -> StreamingResponse:
    resume_from = after or last_event_id
    job, after_seq = await session.run_sync(service.stream_start, team.id, job_id, resume_from)
    poll_s = state.runtime.settings.event_poll_interval_s
    frames = event_stream(state.database, job.id, after_seq, poll_s)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(frames, media_type="text/event-stream", headers=headers)


@router.get("/jobs/{job_id}/checkpoints", response_model=ListPage[CheckpointOut])
async def list_checkpoints(
    job_id: str, team: CurrentTeam, session: DbSession, after: After = None, limit: Limit = 10
) -> ListPage[CheckpointOut]:
    job, rows, has_more = await session.run_sync(
        service.list_checkpoints, team.id, job_id, after, limit
    )
    return ListPage.of([CheckpointOut.of(c, job) for c in rows], has_more, [c.id for c in rows])


@router.get("/jobs/{job_id}/allocation", response_model=AllocationOut)
async def get_allocation(job_id: str, team: CurrentTeam, session: DbSession) -> AllocationOut:
    report = await session.run_sync(service.get_allocation, team.id, job_id)
    return AllocationOut(job_id=job_id, **report)


@router.get(
    "/jobs/{job_id}/allocation.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
    description="Heatmap of the allocated rank by layer index × module kind, with a legend.",
)
async def get_allocation_png(job_id: str, team: CurrentTeam, session: DbSession) -> Response:
    report = await session.run_sync(service.get_allocation, team.id, job_id)
    title = f"{job_id}: {report['adapter_type']} ranks by layer and module"
    return Response(await run_in_threadpool(render_heatmap, report, title), media_type="image/png")


@router.get(
    "/jobs/{job_id}/adapter",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/gzip": {}}}},
    description="The trained adapter as a .tar.gz: `peft` (per-module ranks, loads with "
    "PeftModel.from_pretrained and vLLM) or `uniform` (one rank, for servers that need it).",
)
async def download_adapter(
    job_id: str,
    team: CurrentTeam,
    session: DbSession,
    state: State,
    format: Annotated[Literal["peft", "uniform"], Query()] = "peft",
) -> StreamingResponse:
    job = await session.run_sync(service.get_job, team.id, job_id)
    if job.status != JobStatus.SUCCEEDED:
        raise NotFound(
            f"job {job.id} has no adapter: it is {job.status}; adapters exist once it succeeds",
            param="job_id",
            code="adapter_not_ready",
        )
    prefix = storage.adapter_key(job.id, format)
    return await _adapter_archive(state, prefix, format, f"{job.id}-{format}", f"job {job.id}")


@router.get(
    "/jobs/{job_id}/checkpoints/{checkpoint_id}/adapter",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/gzip": {}}}},
    description="A checkpoint's adapter as a .tar.gz, in the same two formats as the job's.",
)
async def download_checkpoint_adapter(
    job_id: str,
    checkpoint_id: str,
    team: CurrentTeam,
    session: DbSession,
    state: State,
    format: Annotated[Literal["peft", "uniform"], Query()] = "peft",
) -> StreamingResponse:
    row = await session.run_sync(service.get_checkpoint, team.id, job_id, checkpoint_id)
    prefix = storage.checkpoint_adapter_key(row.job_id, row.step, format)
    name = f"{row.job_id}-step-{row.step}-{format}"
    return await _adapter_archive(state, prefix, format, name, f"checkpoint {row.id}")


async def _adapter_archive(
    state: AppState, prefix: str, adapter_format: str, name: str, owner: str
) -> StreamingResponse:
    store = state.runtime.storage
    if not await run_in_threadpool(store.list_files, prefix):
        raise NotFound(
            f"{owner} has no {adapter_format} adapter stored",
            param="format",
            code="adapter_not_found",
        )
    return StreamingResponse(
        stream_tar_gz(store, prefix, name),
        media_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{name}.tar.gz"'},
    )
