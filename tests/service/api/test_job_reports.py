"""What a run leaves behind, as the worker will write it: events (listed and streamed), checkpoints,
the per-layer allocation (JSON and heatmap) and the adapter archive."""

from __future__ import annotations

import io
import json
import re
import tarfile
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from PIL import Image

from service.api.jobs.heatmap import split_layer_name
from service.core import storage
from service.core.db import Database
from service.core.jobs import repository
from service.core.jobs.lifecycle import JobPhase, JobStatus
from service.core.runtime import Runtime
from tests.helpers.api import Team, allocation_report, assert_error, create_job

JOBS = "/v1/fine_tuning/jobs"


def test_events_list_newest_first_with_cursor(client: TestClient, team: Team, database: Database):
    job = create_job(client, team)
    with database.transaction() as session:
        for step in range(1, 6):
            repository.add_event(
                session,
                job["id"],
                f"Step {step}",
                type="metrics",
                data={"step": step, "loss": 1.0 / step},
            )
    url = f"{JOBS}/{job['id']}/events"
    page = client.get(f"{url}?limit=3", headers=team.headers).json()
    assert [e["message"] for e in page["data"]] == ["Step 5", "Step 4", "Step 3"]
    assert page["has_more"] is True
    event = page["data"][0]
    assert event["object"] == "fine_tuning.job.event" and event["type"] == "metrics"
    assert event["data"] == {"step": 5, "loss": 0.2} and event["level"] == "info"
    rest = client.get(f"{url}?after={page['data'][-1]['id']}", headers=team.headers).json()
    assert [e["message"] for e in rest["data"]][:2] == ["Step 2", "Step 1"]
    assert rest["has_more"] is False
    assert len(rest["data"]) == 4  # and the two events of the job's creation
    assert_error(client.get(f"{url}?after=ftevent-999999999", headers=team.headers), 400, "after")
    assert_error(client.get(f"{url}?after=bogus", headers=team.headers), 400, "after")


def test_event_ids_tell_nothing_of_other_teams(
    client: TestClient, team: Team, other_team: Team, database: Database
):
    """Event ids are random, not one sequence over every team's events: a team cannot count the
    others' activity from them, nor use another job's event as a cursor."""
    mine, theirs = create_job(client, team), create_job(client, other_team)
    with database.transaction() as session:
        for _ in range(3):
            repository.add_event(session, theirs["id"], "busy elsewhere")
    url = f"{JOBS}/{mine['id']}/events"
    ids = [e["id"] for e in client.get(url, headers=team.headers).json()["data"]]
    assert len(ids) == 2 and all(re.fullmatch(r"ftevent-[A-Za-z0-9]{24}", i) for i in ids)
    their_ids = client.get(f"{JOBS}/{theirs['id']}/events", headers=other_team.headers).json()
    foreign = their_ids["data"][0]["id"]
    assert_error(client.get(f"{url}?after={foreign}", headers=team.headers), 400, "after")
    stream = client.get(f"{url}/stream?after={foreign}", headers=team.headers)
    assert_error(stream, 400, "after")


def _frames(text: str) -> list[dict]:
    frames = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        frames.append(fields)
    return frames


def test_event_stream_sends_all_then_ends(client: TestClient, team: Team, database: Database):
    job = create_job(client, team)
    with database.transaction() as session:
        repository.add_event(session, job["id"], "Probing 1/3")
    client.post(f"{JOBS}/{job['id']}/cancel", headers=team.headers)
    response = client.get(f"{JOBS}/{job['id']}/events/stream", headers=team.headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = _frames(response.text)
    messages = [json.loads(f["data"])["message"] for f in frames if f.get("event") == "message"]
    assert messages[-2:] == ["Probing 1/3", "Job cancelled before it started"]
    assert frames[-1]["event"] == "end"
    assert json.loads(frames[-1]["data"]) == {"status": "cancelled"}
    # Resuming after an event sends only the later ones.
    resume_id = frames[-3]["id"]
    resumed = client.get(
        f"{JOBS}/{job['id']}/events/stream", headers={**team.headers, "Last-Event-ID": resume_id}
    )
    later = [json.loads(f["data"])["message"] for f in _frames(resumed.text) if "id" in f]
    assert later == ["Job cancelled before it started"]
    bad = client.get(f"{JOBS}/{job['id']}/events/stream?after=nope", headers=team.headers)
    assert_error(bad, 400, "after")


def test_event_stream_follows_a_running_job(client: TestClient, team: Team, database: Database):
    """Events written while the client listens arrive, and the stream ends when the job does."""
    import threading
    import time

    job = create_job(client, team)
    with database.transaction() as session:
        assert repository.claim(session, job["id"], "w1")

    def worker() -> None:
        for step in (1, 2):
            time.sleep(0.2)
            with database.transaction() as session:
                repository.add_event(session, job["id"], f"step {step}", type="metrics")
        with database.transaction() as session:
            repository.add_event(session, job["id"], "done")
            repository.transition(
                session, job["id"], expected=JobStatus.RUNNING, to=JobStatus.SUCCEEDED
            )

    thread = threading.Thread(target=worker)
    thread.start()
    response = client.get(f"{JOBS}/{job['id']}/events/stream", headers=team.headers)
    thread.join()
    frames = _frames(response.text)
    messages = [json.loads(f["data"])["message"] for f in frames if "id" in f]
    assert messages[-3:] == ["step 1", "step 2", "done"]
    assert json.loads(frames[-1]["data"]) == {"status": "succeeded"}


def test_checkpoints(client: TestClient, team: Team, database: Database):
    job = create_job(client, team, suffix="ck")
    url = f"{JOBS}/{job['id']}/checkpoints"
    assert client.get(url, headers=team.headers).json() == {
        "object": "list",
        "data": [],
        "has_more": False,
        "first_id": None,
        "last_id": None,
    }
    with database.transaction() as session:
        for step in (10, 20, 30):
            key = f"jobs/{job['id']}/checkpoints/step-{step}"
            repository.add_checkpoint(session, job["id"], step, key, {"train_loss": 1 / step})
    page = client.get(f"{url}?limit=2", headers=team.headers).json()
    assert [c["step_number"] for c in page["data"]] == [30, 20] and page["has_more"]
    first = page["data"][0]
    assert first["object"] == "fine_tuning.job.checkpoint"
    assert first["fine_tuning_job_id"] == job["id"]
    assert first["metrics"] == {"step": 30, "train_loss": 1 / 30}
    assert first["fine_tuned_model_checkpoint"].endswith(f"{job['id']}:ckpt-step-30")
    rest = client.get(f"{url}?after={page['last_id']}", headers=team.headers).json()
    assert [c["step_number"] for c in rest["data"]] == [10]
    assert_error(client.get(f"{url}?after=ftckpt-nope", headers=team.headers), 400, "after")


def test_allocation_before_and_after_probing(client: TestClient, team: Team, database: Database):
    job = create_job(client, team)
    url = f"{JOBS}/{job['id']}/allocation"
    error = assert_error(
        client.get(url, headers=team.headers), 404, "job_id", "allocation_not_ready"
    )
    assert "probing" in error["message"]
    assert_error(client.get(f"{url}.png", headers=team.headers), 404, "job_id")
    report = allocation_report()
    with database.transaction() as session:
        assert repository.claim(session, job["id"], "w1")
        assert repository.set_phase(session, job["id"], "w1", JobPhase.PROBING)
        repository.save_allocation(session, job["id"], report)
    body = client.get(url, headers=team.headers).json()
    assert body["object"] == "fine_tuning.job.allocation" and body["job_id"] == job["id"]
    assert {k: body[k] for k in report} == report
    job_now = client.get(f"{JOBS}/{job['id']}", headers=team.headers).json()
    assert job_now["adapter_params"] == report["totals"]["allocated"]  # for job lists
    # A restarted job probes again: the new report replaces the old one.
    report["layers"][0]["rank"] = 9
    with database.transaction() as session:
        repository.save_allocation(session, job["id"], report)
    assert client.get(url, headers=team.headers).json()["layers"][0]["rank"] == 9


def test_allocation_heatmap(client: TestClient, team: Team, database: Database):
    job = create_job(client, team)
    with database.transaction() as session:
        repository.save_allocation(session, job["id"], allocation_report(layers=3))
    response = client.get(f"{JOBS}/{job['id']}/allocation.png", headers=team.headers)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content)).convert("RGB")
    assert image.width > 150 and image.height > 60
    colours = {image.getpixel((x, y)) for x in range(image.width) for y in range(image.height)}
    # Distinct ranks get distinct colours: at least the six ranks' fills are present.
    assert len(colours) > 6


def test_layer_names_split_into_index_and_module():
    assert split_layer_name("model.layers.3.self_attn.q_proj") == (3, "self_attn.q_proj")
    assert split_layer_name("encoder.layer.11.attention.self.query") == (11, "attention.self.query")
    assert split_layer_name("score") == (None, "score")


def _write_adapter(
    runtime: Runtime, job_id: str, fmt: str, prefix: str | None = None
) -> dict[str, bytes]:
    files = {
        "adapter_config.json": json.dumps({"r": 8, "init_lora_weights": True}).encode(),
        "adapter_model.safetensors": bytes(range(256)) * 40,
        "extra/gora_allocation.json": b"{}",
    }
    for name, content in files.items():
        key = f"{prefix or f'jobs/{job_id}/adapter/{fmt}'}/{name}"
        with runtime.storage.open_write(key) as handle:
            handle.write(content)
    return files


def test_adapter_download(client: TestClient, team: Team, database: Database):
    runtime: Runtime = client.app.state.gora.runtime  # type: ignore[attr-defined]
    job = create_job(client, team)
    url = f"{JOBS}/{job['id']}/adapter"
    assert_error(client.get(url, headers=team.headers), 404, "job_id", "adapter_not_ready")
    with database.transaction() as session:
        assert repository.claim(session, job["id"], "w1")
        assert repository.transition(
            session, job["id"], expected=JobStatus.RUNNING, to=JobStatus.SUCCEEDED
        )
    assert_error(client.get(url, headers=team.headers), 404, "format", "adapter_not_found")
    files = _write_adapter(runtime, job["id"], "peft")
    response = client.get(url, headers=team.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/gzip"
    assert f"{job['id']}-peft.tar.gz" in response.headers["content-disposition"]
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
        names = sorted(m.name for m in archive.getmembers())
        assert names == sorted(f"{job['id']}-peft/{n}" for n in files)
        for name, content in files.items():
            assert archive.extractfile(f"{job['id']}-peft/{name}").read() == content
    assert_error(client.get(f"{url}?format=uniform", headers=team.headers), 404, "format")
    assert_error(client.get(f"{url}?format=gguf", headers=team.headers), 400, "format")


def test_a_checkpoints_adapter_downloads_in_either_format(
    client: TestClient, team: Team, other_team: Team, database: Database
):
    runtime: Runtime = client.app.state.gora.runtime  # type: ignore[attr-defined]
    job = create_job(client, team)
    with database.transaction() as session:
        key = f"jobs/{job['id']}/checkpoints/step-4"
        checkpoint = repository.add_checkpoint(session, job["id"], 4, key, {"train_loss": 0.5})
        checkpoint_id = checkpoint.id
    url = f"{JOBS}/{job['id']}/checkpoints/{checkpoint_id}/adapter"
    assert_error(client.get(url, headers=team.headers), 404, "format", "adapter_not_found")
    for fmt in ("peft", "uniform"):
        prefix = storage.checkpoint_adapter_key(job["id"], 4, fmt)
        files = _write_adapter(runtime, job["id"], fmt, prefix)
        response = client.get(url, params={"format": fmt}, headers=team.headers)
        assert response.status_code == 200, response.text
        name = f"{job['id']}-step-4-{fmt}"
        assert f"{name}.tar.gz" in response.headers["content-disposition"]
        with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
            assert sorted(m.name for m in archive.getmembers()) == sorted(
                f"{name}/{n}" for n in files
            )
    # The checkpoint works while the job is still running (no wait for the end).
    assert client.get(f"{JOBS}/{job['id']}", headers=team.headers).json()["status"] == "queued"
    missing = f"{JOBS}/{job['id']}/checkpoints/ftckpt-nope/adapter"
    assert_error(client.get(missing, headers=team.headers), 404, "checkpoint_id")
    assert_error(client.get(url, headers=other_team.headers), 404, "job_id")
    assert_error(client.get(f"{url}?format=gguf", headers=team.headers), 400, "format")


def test_estimated_finish_shows_while_the_job_trains(
    client: TestClient, team: Team, database: Database
):
    job = create_job(client, team)
    assert job["estimated_finish"] is None
    finish = datetime(2027, 1, 1, 12, 0, tzinfo=UTC)
    with database.transaction() as session:
        assert repository.claim(session, job["id"], "w1")
        assert repository.record_progress(session, job["id"], "w1", estimated_finish=finish)
    url = f"{JOBS}/{job['id']}"
    assert client.get(url, headers=team.headers).json()["estimated_finish"] == int(
        finish.timestamp()
    )
    with database.transaction() as session:
        assert repository.transition(
            session, job["id"], expected=JobStatus.RUNNING, to=JobStatus.SUCCEEDED
        )
    assert client.get(url, headers=team.headers).json()["estimated_finish"] is None
