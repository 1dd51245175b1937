"""/healthz, /readyz, /metrics, and the error shape of requests that match no route."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.service.conftest import Backend, make_settings
from tests.service.support import Team, assert_error, create_job


def test_healthz(client: TestClient):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_database_and_broker(client: TestClient):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_reports_a_database_that_is_down(tmp_path):
    from service.api.app import create_app

    url = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"  # nothing listens on port 1
    with TestClient(create_app(make_settings(tmp_path, url))) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("unreachable")


def test_metrics_count_requests_by_route_and_jobs_by_status(
    client: TestClient, team: Team, backend: Backend
):
    job = create_job(client, team)
    client.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=team.headers)
    text = client.get("/metrics").text
    route_line = (
        'gora_http_requests_total{method="GET",route="/v1/fine_tuning/jobs/{job_id}",status="200"}'
    )
    assert route_line in text
    assert job["id"] not in text  # the route template, never the raw path
    queued = [line for line in text.splitlines() if line.startswith('gora_jobs{status="queued"}')]
    assert queued and float(queued[0].split()[-1]) >= 1
    assert "gora_http_request_duration_seconds_bucket" in text


def test_unknown_routes_and_methods_use_the_error_shape(client: TestClient):
    assert_error(client.get("/v1/nothing-here"), 404, None, "not_found")
    assert_error(client.put("/healthz"), 405, None, "method_not_allowed")
