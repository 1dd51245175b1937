"""``gora up``: the API and a CPU worker on one machine (SQLite, filesystem broker), submit to download."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import tarfile
import time

import httpx
import pytest

from tests.helpers.api import ADMIN_TOKEN, jsonl
from tests.helpers.jobs import FAST_WORKER_ENV, GORA, ROOT, classification_rows
from tests.helpers.live_server import free_port
from tests.helpers.models import session_cache_dir

pytestmark = pytest.mark.slow
ADAPTER = {"type": "gora", "r_ref": 4, "target_modules": ["query", "value"], "probe_steps": 2}


def embedded_env(data_dir) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GORA_")}
    env.update(
        GORA_DATA_DIR=str(data_dir),
        GORA_ADMIN_TOKEN=ADMIN_TOKEN,
        GORA_CACHE_DIR=str(session_cache_dir()),
        OMP_NUM_THREADS="1",
        **FAST_WORKER_ENV,
    )
    return env


def wait_healthy(http: httpx.Client, process: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        assert process.poll() is None, "gora up exited"
        try:
            if http.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "gora up did not come up"
        time.sleep(0.3)


def submit_and_download(http: httpx.Client) -> bytes:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    team = http.post("/v1/teams", json={"name": "embedded"}, headers=admin).json()
    key = http.post(f"/v1/teams/{team['id']}/api_keys", headers=admin).json()["key"]
    http.headers["Authorization"] = f"Bearer {key}"
    files = {"file": ("train.jsonl", jsonl(classification_rows()), "application/jsonl")}
    uploaded = http.post("/v1/files", files=files, data={"purpose": "fine-tune"}).json()
    body = {
        "model": "minilm-l6",
        "training_file": uploaded["id"],
        "hyperparameters": {"n_epochs": 1, "batch_size": 4, "max_steps": 3, "max_seq_length": 64},
        "adapter": ADAPTER,
    }
    job = http.post("/v1/fine_tuning/jobs", json=body).json()
    deadline = time.monotonic() + 150
    while (status := http.get(f"/v1/fine_tuning/jobs/{job['id']}").json()["status"]) != "succeeded":
        assert status not in ("failed", "cancelled"), http.get(
            f"/v1/fine_tuning/jobs/{job['id']}/events"
        ).json()
        assert time.monotonic() < deadline
        time.sleep(0.3)
    return http.get(f"/v1/fine_tuning/jobs/{job['id']}/adapter").content


def test_gora_up_runs_a_job_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [GORA, "up", "--port", str(port)],
        env=embedded_env(tmp_path),
        cwd=ROOT,
        start_new_session=True,
        stdout=open(tmp_path / "up.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            wait_healthy(http, process)
            archive = submit_and_download(http)
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            assert any(n.endswith("adapter_model.safetensors") for n in tar.getnames())
        assert (tmp_path / "gora.db").is_file() and (tmp_path / "broker").is_dir()
        process.send_signal(signal.SIGINT)
        process.wait(30)
        deadline = time.monotonic() + 20
        while group_alive(process.pid):  # the worker and its pool went with it
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()[-3000:]
            time.sleep(0.2)
    finally:
        if group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
