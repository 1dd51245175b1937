"""Webhooks: a team's endpoints get each job notice POSTed, signed as Standard Webhooks says, retried
with backoff, with a delivery log; checked against a real receiver on loopback and verified with the
spec's own library (``standardwebhooks``), not with our signing code."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.helpers.api import Team, assert_error, create_job
from tests.helpers.webhooks import Receiver


@pytest.fixture
def receiver_factory() -> Iterator:
    started: list[Receiver] = []

    def start(statuses: list[int]) -> Receiver:
        started.append(Receiver(statuses).start())
        return started[-1]

    yield start
    for receiver in started:
        receiver.stop()


def register(client: TestClient, team: Team, url: str, **fields) -> dict:
    response = client.post("/v1/webhooks", json={"url": url, **fields}, headers=team.headers)
    assert response.status_code == 200, response.text
    return response.json()


def deliveries(client: TestClient, team: Team, hook_id: str) -> list[dict]:
    response = client.get(f"/v1/webhooks/{hook_id}/deliveries", headers=team.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def wait_for_delivery(client, team, hook_id, status: str, timeout_s: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        log = deliveries(client, team, hook_id)
        if log and log[0]["status"] == status:
            return log[0]
        assert time.monotonic() < deadline, log
        time.sleep(0.05)


def test_a_notice_is_signed_retried_and_logged(client: TestClient, team: Team, receiver_factory):
    receiver = receiver_factory([500, 204])  # the first attempt fails, the retry lands
    hook = register(client, team, receiver.url)
    assert hook["secret"].startswith("whsec_") and hook["events"] == [
        "fine_tuning.job.succeeded",
        "fine_tuning.job.failed",
        "fine_tuning.job.cancelled",
        "fine_tuning.job.paused",
    ]
    job = create_job(client, team)
    client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=team.headers)

    (first_headers, first_body), (headers, body) = receiver.wait(2)
    verifier = Webhook(hook["secret"])
    for attempt_headers, attempt_body in ((first_headers, first_body), (headers, body)):
        payload = verifier.verify(attempt_body, attempt_headers)
        assert payload["type"] == "fine_tuning.job.cancelled" and payload["object"] == "event"
        assert payload["data"] == {"id": job["id"], "status": "cancelled"}
    assert first_headers["webhook-id"] == headers["webhook-id"] == payload["id"]  # one message
    assert first_body == body
    with pytest.raises(WebhookVerificationError):
        verifier.verify(body.replace(b"cancelled", b"succeeded"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(body, headers)

    logged = wait_for_delivery(client, team, hook["id"], "succeeded")
    assert logged["id"] == headers["webhook-id"] and logged["fine_tuning_job_id"] == job["id"]
    assert (logged["attempts"], logged["response_status"], logged["next_attempt_at"]) == (
        2,
        204,
        None,
    )
    assert logged["event_type"] == "fine_tuning.job.cancelled" and logged["delivered_at"]


def test_a_delivery_that_never_lands_ends_failed(client: TestClient, team: Team, receiver_factory):
    receiver = receiver_factory([503])
    hook = register(client, team, receiver.url)
    job = create_job(client, team)
    client.post(f"/v1/fine_tuning/jobs/{job['id']}/pause", headers=team.headers)
    logged = wait_for_delivery(client, team, hook["id"], "failed")
    # One attempt more than the waits in the schedule (0.2 s, 0.2 s in the tests), then no more.
    assert logged["attempts"] == 3 and logged["response_status"] == 503
    assert "HTTP 503" in logged["last_error"] and logged["next_attempt_at"] is None
    assert [json.loads(b)["type"] for _, b in receiver.received] == ["fine_tuning.job.paused"] * 3
    time.sleep(0.5)
    assert len(receiver.received) == 3


def test_an_endpoint_gets_only_the_events_it_asked_for(
    client: TestClient, team: Team, receiver_factory
):
    everything, only_success = receiver_factory([200]), receiver_factory([200])
    register(client, team, everything.url)
    narrow = register(client, team, only_success.url, events=["fine_tuning.job.succeeded"])
    job = create_job(client, team)
    client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=team.headers)
    everything.wait(1)
    time.sleep(0.5)
    assert only_success.received == [] and deliveries(client, team, narrow["id"]) == []


def test_endpoints_are_the_teams_own_and_bad_ones_are_named(
    client: TestClient, team: Team, other_team: Team
):
    hook = register(client, team, "https://example.test/hook")
    retrieved = client.get(f"/v1/webhooks/{hook['id']}", headers=team.headers).json()
    assert retrieved["secret"] is None and retrieved["url"] == "https://example.test/hook"
    listed = client.get("/v1/webhooks", headers=team.headers).json()
    assert [h["id"] for h in listed["data"]] == [hook["id"]]
    assert client.get("/v1/webhooks", headers=other_team.headers).json()["data"] == []
    for method in ("get", "delete"):
        response = getattr(client, method)(f"/v1/webhooks/{hook['id']}", headers=other_team.headers)
        assert_error(response, 404, "webhook_id", "webhook_not_found")
    for url in ("ftp://example.test/x", "not a url", "http://"):
        assert_error(
            client.post("/v1/webhooks", json={"url": url}, headers=team.headers), 400, "url"
        )
    bad_events = {"url": "https://example.test/h", "events": ["fine_tuning.job.started"]}
    error = assert_error(
        client.post("/v1/webhooks", json=bad_events, headers=team.headers), 400, "events"
    )
    assert "fine_tuning.job.succeeded" in error["message"]
    deleted = client.delete(f"/v1/webhooks/{hook['id']}", headers=team.headers)
    assert deleted.json() == {"id": hook["id"], "object": "webhook_endpoint", "deleted": True}
    assert_error(client.get(f"/v1/webhooks/{hook['id']}", headers=team.headers), 404, "webhook_id")
