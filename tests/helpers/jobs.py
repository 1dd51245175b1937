"""For the tests that run real jobs: worker processes (``gora worker``) with short timings, and short
calls against the API (submit a job, wait for a status, read its events, download its adapter)."""

from __future__ import annotations

import io
import json
import os
import secrets
import signal
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file

from service.core.settings import Settings
from tests.helpers.api import Team, jsonl, upload
from tests.helpers.models import session_cache_dir

ROOT = Path(__file__).resolve().parents[2]
INSTRUCTIONS = ROOT / "examples" / "instructions.jsonl"
TERMINAL = {"succeeded", "failed", "cancelled"}

SESSION = secrets.token_hex(4)
POOL = f"w{SESSION}"  # the shared worker's
SPARE_POOL = f"x{SESSION}"  # for tests that start and kill their own workers
REDIS_URL = "redis://127.0.0.1:6379/14"
GORA = str(ROOT / ".venv" / "bin" / "gora")

# Short timings so that a lost worker or a cancel shows within seconds.
FAST_WORKER_ENV = {
    "GORA_WORKER_HEARTBEAT_S": "1",
    "GORA_WORKER_CANCEL_GRACE_S": "4",
    "GORA_WORKER_STALE_AFTER_S": "6",
    "GORA_WORKER_RECONCILE_EVERY_S": "2",
    "GORA_WORKER_REQUEUE_AFTER_S": "120",
    "GORA_WORKER_CANCEL_POLL_S": "0.2",
}


def worker_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GORA_DATA_DIR=str(settings.data_dir),
        GORA_DATABASE_URL=settings.database_url,
        GORA_BROKER_URL=settings.broker_url,
        GORA_STORAGE_URL=settings.storage_url,
        GORA_POOLS=",".join(settings.pools),
        GORA_DEFAULT_POOL=settings.default_pool,
        GORA_CACHE_DIR=str(session_cache_dir()),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        **FAST_WORKER_ENV,
    )
    return env


class WorkerProcess:
    """``gora worker --pool <session pool>`` in its own process group (killed as a whole)."""

    def __init__(self, env: dict[str, str], log_path: Path, pool: str = POOL):
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [GORA, "worker", "--pool", pool, "--loglevel", "INFO"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while b" ready." not in self.log_path.read_bytes():
            assert self.process.poll() is None, self.log_path.read_text()
            assert time.monotonic() < deadline, (
                "worker did not start:\n" + self.log_path.read_text()
            )
            time.sleep(0.2)

    def kill(self) -> None:
        """Host lost: the worker and everything under it die at once."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def instruction_rows(n: int = 16) -> list[dict[str, Any]]:
    lines = INSTRUCTIONS.read_text().splitlines()[:n]
    return [json.loads(line) for line in lines]


REFUSAL = "Sorry, I cannot help with that."


def preference_rows(numbers: range) -> list[dict[str, Any]]:
    """Arithmetic questions, the worked answer preferred over a refusal: a preference a few DPO steps
    learn, and one that carries over to questions not trained on."""
    return [
        {
            "input": {"messages": [{"role": "user", "content": f"What is {a} plus {a + 3}?"}]},
            "preferred_output": [{"role": "assistant", "content": f"{a} + {a + 3} = {2 * a + 3}."}],
            "non_preferred_output": [{"role": "assistant", "content": REFUSAL}],
        }
        for a in numbers
    ]


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


def checkpoint_steps(client: TestClient, team: Team, job_id: str) -> list[int]:
    """The steps of the job's checkpoints, in order."""
    response = client.get(f"/v1/fine_tuning/jobs/{job_id}/checkpoints", headers=team.headers)
    assert response.status_code == 200, response.text
    return sorted(c["step_number"] for c in response.json()["data"])


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


def adapter_weights(stack: Any, team: Team, job_id: str, folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of a job's downloaded PEFT adapter."""
    target = download_adapter(stack.client, team, job_id, folder)
    (weights,) = target.rglob("adapter_model.safetensors")
    return load_file(weights)
