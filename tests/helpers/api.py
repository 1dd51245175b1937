"""Helpers the tests of the API (and of what runs behind it) share: settings, sample datasets,
short calls against the API."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from gora.report import build_report
from service.core.settings import Settings

SESSION = secrets.token_hex(4)
TEST_POOL = f"t{SESSION}"  # queue gpu.<pool>: no other session sends there
ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
REDIS_URL = "redis://127.0.0.1:6379/13"


@dataclass
class Backend:
    """Where a test app keeps its state: the embedded kind (SQLite and the filesystem broker, no
    server at all) or the team kind (PostgreSQL and Redis)."""

    name: str
    database_url: str
    data_dir: Path

    @property
    def broker_url(self) -> str:
        return "filesystem://" if self.name == "sqlite" else REDIS_URL


def make_settings(backend: Backend, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": backend.data_dir,
        "database_url": backend.database_url,
        "broker_url": backend.broker_url,
        "admin_token": ADMIN_TOKEN,
        "pools": ["cpu", TEST_POOL],
        "default_pool": TEST_POOL,
        "max_upload_bytes": 64 * 1024,
        "max_upload_part_bytes": 32 * 1024,
        "event_poll_interval_s": 0.05,
        "webhook_poll_interval_s": 0.1,
        "webhook_retry_waits_s": [0.2, 0.2],
        "webhook_timeout_s": 2.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


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


def new_team(client: TestClient, admin: dict[str, str] = ADMIN) -> Team:
    name = f"team-{secrets.token_hex(6)}"
    team = client.post("/v1/teams", json={"name": name}, headers=admin)
    assert team.status_code == 200, team.text
    key = client.post(f"/v1/teams/{team.json()['id']}/api_keys", headers=admin)
    assert key.status_code == 200, key.text
    return Team(id=team.json()["id"], key=key.json()["key"], key_id=key.json()["id"])


def allocation_report(layers: int = 3) -> dict:
    """A report as the library writes it (``gora.report.build_report(...).to_dict()``): per layer a
    q_proj of rank 4 + i and a down_proj of rank 16 - 2i."""
    shapes, ranks, importances = {}, {}, {}
    for index in range(layers):
        for module, rank in (("self_attn.q_proj", 4 + index), ("mlp.down_proj", 16 - 2 * index)):
            name = f"model.layers.{index}.{module}"
            shapes[name], ranks[name], importances[name] = (64, 64), rank, 0.1 * (index + 1)
    config = {"type": "gora", "r_ref": 8, "r_min": 4, "r_max": 32}
    probe = {"steps": 3, "samples": 12}
    return build_report("gora", shapes, ranks, config, importances, probe).to_dict()
