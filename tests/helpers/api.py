"""Helpers the service tests share: sample datasets and short calls against the API."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

CHAT = [
    {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
    for i in range(6)
]
PROMPT_COMPLETION = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(4)]
TEXT = [{"text": f"some text {i}"} for i in range(3)]
CLASSIFICATION = [{"text": f"review {i}", "label": "pos" if i % 2 else "neg"} for i in range(4)]


def jsonl(rows: list[Any]) -> bytes:
    return b"\n".join(json.dumps(row).encode() for row in rows) + b"\n"


@dataclass
class Team:
    id: str
    key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def upload(
    client: TestClient, team: Team, content: bytes, filename: str = "train.jsonl"
) -> dict[str, Any]:
    response = client.post(
        "/v1/files",
        files={"file": (filename, content, "application/jsonl")},
        data={"purpose": "fine-tune"},
        headers=team.headers,
    )
    assert response.status_code == 200, response.text
    return response.json()


def create_job(client: TestClient, team: Team, **fields: Any) -> dict[str, Any]:
    if "training_file" not in fields:
        fields["training_file"] = upload(client, team, jsonl(CHAT))["id"]
    body = {"model": "smollm2-135m", **fields}
    response = client.post("/v1/fine_tuning/jobs", json=body, headers=team.headers)
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response: Any, status: int, param: str | None, code: str | None = None) -> dict:
    """The response is the API's error shape with this status and, when given, param and code."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"code", "message", "param"}
    assert error["message"]
    assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return error
