"""schemathesis over the OpenAPI schema: generated requests, valid and invalid, never get a 5xx, and
every status they get is one the schema documents for that operation (never FastAPI's 422).

The cases come from schemathesis' Hypothesis strategies, one operation at a time, a few examples each
(the whole run stays within seconds). schemathesis' own pytest plugin is not used: its collection
hooks do not work with this project's pytest.
"""

from __future__ import annotations

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.helpers.api import new_team

EXAMPLES_PER_OPERATION = 15
ADMIN_PATHS = ("/v1/teams", "/v1/api_keys")
STREAMS = ("/events/stream",)  # a stream stays open until its job ends: random ids answer 404


def _operations(app: FastAPI) -> list:
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [result.ok() for result in loaded.get_all_operations()]


def _check_operation(operation, mode, headers: dict[str, str]) -> None:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases every run: a failure reproduces
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        if case.path.endswith(STREAMS):
            case.path_parameters = {"job_id": "ftjob-doesnotexist"}
        response = case.call(headers=headers)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300} -> "
            f"{response.status_code}: {response.text[:300]}"
        )
        documented = operation.definition.raw["responses"]
        assert str(response.status_code) in documented, (
            f"{case.method} {case.formatted_path} -> {response.status_code}, documented: "
            f"{sorted(documented)}"
        )
        if response.status_code >= 400:
            error = response.json()["error"]
            assert error["message"] and "code" in error and "param" in error

    try:
        run()
    except Unsatisfiable:
        # Negative mode on an operation with nothing to get wrong (no parameters, no body).
        assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_generated_requests_never_get_a_5xx(
    app: FastAPI, client: TestClient, admin: dict[str, str], mode: str
):
    team = new_team(client, admin)
    generation_mode = schemathesis.GenerationMode(mode)
    operations = _operations(app)
    assert len(operations) >= 18  # every endpoint is in the schema
    for operation in operations:
        headers = admin if operation.path.startswith(ADMIN_PATHS) else team.headers
        _check_operation(operation, generation_mode, headers)
