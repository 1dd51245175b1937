"""Short calls against the API for the worker tests: submit a job, wait for a status, read events."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.service.support import Team, jsonl, upload

ROOT = Path(__file__).resolve().parents[2]
INSTRUCTIONS = ROOT / "examples" / "instructions.jsonl"
TERMINAL = {"succeeded", "failed", "cancelled"}


def instruction_rows(n: int = 16) -> list[dict[str, Any]]:
    lines = INSTRUCTIONS.read_text().splitlines()[:n]
    return [json.loads(line) for line in lines]


def classification_rows() -> list[dict[str, Any]]:
    topics = {
        "sport": "The team won the match and the striker scored",
        "money": "Shares fell as the bank cut rates",
    }
    return [
        {"text": f"{text} ({i})", "label": label}
        for i in range(8)
        for label, text in topics.items()
    ]


# A short run: 2 probe batches, 3 training steps of 4 rows of at most 64 tokens.
SHORT = {
    "hyperparameters": {
        "n_epochs": 1,
        "batch_size": 4,
        "max_steps": 3,
        "max_seq_length": 64,
        "log_every_steps": 1,
        "checkpoint_every_steps": 2,
    },
    "adapter": {
        "type": "gora",
        "r_ref": 4,
        "target_modules": ["q_proj", "v_proj"],
        "probe_steps": 2,
    },
}


def submit(
    client: TestClient, team: Team, rows: list[dict[str, Any]], **fields: Any
) -> dict[str, Any]:
    body = {"model": "smollm2-135m", **SHORT, **fields}
    body["training_file"] = upload(client, team, jsonl(rows))["id"]
    response = client.post("/v1/fine_tuning/jobs", json=body, headers=team.headers)
    assert response.status_code == 200, response.text
    return response.json()


def get_job(client: TestClient, team: Team, job_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=team.headers)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(
    client: TestClient, team: Team, job_id: str, statuses: set[str], timeout_s: float = 180
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = get_job(client, team, job_id)
        if job["status"] in statuses:
            return job
        assert job["status"] not in TERMINAL, (job, events(client, team, job_id))
        assert time.monotonic() < deadline, (job, events(client, team, job_id))
        time.sleep(0.2)


def wait_for_event(
    client: TestClient, team: Team, job_id: str, predicate, timeout_s: float = 180
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        for event in events(client, team, job_id):
            if predicate(event):
                return event
        job = get_job(client, team, job_id)
        assert job["status"] not in TERMINAL, (job, events(client, team, job_id))
        assert time.monotonic() < deadline, events(client, team, job_id)
        time.sleep(0.2)


def events(client: TestClient, team: Team, job_id: str) -> list[dict[str, Any]]:
    """All events, oldest first."""
    response = client.get(
        f"/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 100}, headers=team.headers
    )
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["data"]))


def download_adapter(
    client: TestClient, team: Team, job_id: str, target: Path, fmt: str = "peft"
) -> Path:
    response = client.get(
        f"/v1/fine_tuning/jobs/{job_id}/adapter", params={"format": fmt}, headers=team.headers
    )
    assert response.status_code == 200, response.text
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
        archive.extractall(target, filter="data")
    return target
