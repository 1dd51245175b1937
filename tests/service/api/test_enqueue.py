"""Jobs reach the broker after commit, on their pool's queue; a broker that is down loses no job."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.core.queue import RUN_JOB_TASK, queue_for_pool
from tests.helpers.api import (
    TEST_POOL,
    Backend,
    Team,
    assert_error,
    create_job,
    make_settings,
    new_team,
)

CLOSED_PORT_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def _task(envelope: dict) -> dict:
    body = json.loads(base64.b64decode(envelope["body"]))
    return {"task": envelope["headers"]["task"], "args": body[0]}


def queued_messages(backend: Backend, queue: str) -> list[dict]:
    """The task messages waiting in a queue: a list named after it in Redis, or, with the
    filesystem transport (embedded mode), files named ``<time>_<uuid>.<queue>.msg``."""
    if backend.broker_url.startswith("redis"):
        broker = redis.Redis.from_url(backend.broker_url)
        try:
            return [_task(json.loads(raw)) for raw in broker.lrange(queue, 0, -1)]
        finally:
            broker.close()
    folder = backend.data_dir / "broker" / "messages"
    files = sorted(folder.glob(f"*.{queue}.msg"))
    return [_task(json.loads(path.read_bytes())) for path in files]


def test_a_new_job_lands_on_its_pool_queue(client: TestClient, team: Team, backend: Backend):
    job = create_job(client, team, gpu={"pool": TEST_POOL, "count": 1})
    assert queue_for_pool(TEST_POOL) == f"gpu.{TEST_POOL}"
    messages = queued_messages(backend, f"gpu.{TEST_POOL}")
    assert {"task": RUN_JOB_TASK, "args": [job["id"]]} in messages


def test_cpu_jobs_go_to_the_cpu_queue():
    assert queue_for_pool("cpu") == "cpu"
    assert queue_for_pool("a100") == "gpu.a100"


def test_refused_jobs_send_nothing(client: TestClient, team: Team, backend: Backend):
    before = len(queued_messages(backend, f"gpu.{TEST_POOL}"))
    body = {"model": "unknown-model", "training_file": "file-x", "gpu": {"pool": TEST_POOL}}
    assert_error(client.post("/v1/fine_tuning/jobs", json=body, headers=team.headers), 400, "model")
    assert len(queued_messages(backend, f"gpu.{TEST_POOL}")) == before


@pytest.fixture
def broker_down_client(backend: Backend) -> Iterator[TestClient]:
    settings = make_settings(backend, broker_url=CLOSED_PORT_BROKER)
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_failed_enqueue_leaves_the_job_queued(broker_down_client: TestClient, admin: dict):
    team = new_team(broker_down_client, admin)
    started = time.monotonic()
    job = create_job(broker_down_client, team)
    assert time.monotonic() - started < 10  # fails fast instead of hanging the request
    assert job["status"] == "queued"
    stored = broker_down_client.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=team.headers)
    assert stored.json()["status"] == "queued"
    events = broker_down_client.get(
        f"/v1/fine_tuning/jobs/{job['id']}/events", headers=team.headers
    ).json()["data"]
    assert events[0]["level"] == "warn" and "stays queued" in events[0]["message"]


def test_readyz_reports_a_broker_that_is_down(broker_down_client: TestClient):
    response = broker_down_client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("unreachable")
    assert body["error"]["code"] == "not_ready" and "broker" in body["error"]["message"]
