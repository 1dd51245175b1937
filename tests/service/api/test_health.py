"""/healthz, /readyz, /metrics, and the error shape of requests that match no route."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.helpers.api import Backend, Team, assert_error, create_job, make_settings


def test_healthz(client: TestClient):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_database_and_broker(client: TestClient):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_reports_a_database_that_is_down(tmp_path):
    from service.api.app import create_app

    url = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"  # nothing listens on port 1
    with TestClient(create_app(make_settings(Backend("postgresql", url, tmp_path)))) as client:
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


def test_the_schema_documents_the_codes_the_api_answers(client: TestClient):
    """FastAPI documented 200 and 422 everywhere; the API answers 400, 401, 404, 409, 413, 503 and
    never 422: those are in the schema, each with the error body."""
    schema = client.get("/openapi.json").json()
    operations = {
        (method.upper(), path): op
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
    }
    assert all("422" not in op["responses"] for op in operations.values())
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    expected = {
        ("POST", "/v1/fine_tuning/jobs"): {"200", "400", "401", "409", "503"},
        ("GET", "/v1/fine_tuning/jobs/{job_id}"): {"200", "401", "404", "503"},
        ("POST", "/v1/fine_tuning/jobs/{job_id}/cancel"): {"200", "401", "404", "409", "503"},
        ("POST", "/v1/files"): {"200", "400", "401", "413", "503"},
        ("DELETE", "/v1/files/{file_id}"): {"200", "401", "404", "409", "503"},
        ("POST", "/v1/teams"): {"200", "400", "401", "403", "409", "503"},
        ("GET", "/healthz"): {"200"},
    }
    for key, statuses in expected.items():
        assert set(operations[key]["responses"]) == statuses, key
    error = operations[("POST", "/v1/files")]["responses"]["413"]["content"]["application/json"]
    assert error["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    detail = schema["components"]["schemas"]["ErrorDetail"]["properties"]
    assert set(detail) == {"code", "message", "param", "type"}
