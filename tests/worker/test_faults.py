"""Cancel, a killed training process, a killed worker, bad jobs: each ends where the design says."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from service.core.storage import Storage, job_key
from tests.helpers.jobs import (
    SHORT,
    SPARE_POOL,
    classification_rows,
    events,
    instruction_rows,
    submit,
    wait_for,
    wait_for_event,
)

pytestmark = pytest.mark.slow


def longer(max_steps: int, checkpoint_every: int = 100) -> dict:
    hp = {**SHORT["hyperparameters"], "n_epochs": 10, "batch_size": 2}
    return {**hp, "max_steps": max_steps, "checkpoint_every_steps": checkpoint_every}


def training_pid(stack, team, job_id: str) -> int:
    """The job's child process, once it trains (its pid is in the loading event)."""
    wait_for_event(stack.client, team, job_id, lambda e: e["type"] == "metrics")
    loading = next(
        e for e in events(stack.client, team, job_id) if (e.get("data") or {}).get("pid")
    )
    return loading["data"]["pid"]


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes: it holds no memory and runs nothing.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_cancel_mid_training_stops_within_10s(stack, team, worker):
    job = submit(stack.client, team, instruction_rows(16), hyperparameters=longer(200))
    pid = training_pid(stack, team, job["id"])
    asked = time.monotonic()
    response = stack.client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=team.headers)
    assert response.status_code == 200, response.text
    wait_for(stack.client, team, job["id"], {"cancelled"}, timeout_s=15)
    assert time.monotonic() - asked < 10
    deadline = time.monotonic() + 5
    while is_alive(pid):
        assert time.monotonic() < deadline, "the training process outlived the cancel"
        time.sleep(0.1)
    assert "cancelled" in events(stack.client, team, job["id"])[-1]["message"]


def test_killed_child_fails_with_internal_code_and_log_tail(stack, team, worker):
    job = submit(stack.client, team, instruction_rows(16), hyperparameters=longer(200))
    os.kill(training_pid(stack, team, job["id"]), signal.SIGKILL)
    failed = wait_for(stack.client, team, job["id"], {"failed"}, timeout_s=30)
    assert failed["error"]["code"] == "internal_error"
    last = events(stack.client, team, job["id"])[-1]
    assert last["level"] == "error" and "signal 9" in last["message"]
    assert "Training:" in last["data"]["log_tail"]  # the child's own log lines


def test_bad_jobs_fail_with_user_codes(stack, team, worker):
    models_dir = stack.settings.models_dir
    (models_dir / "broken").mkdir(parents=True, exist_ok=True)
    (models_dir / "broken" / "config.json").write_text('{"model_type": "llama"}')
    rows = instruction_rows(8)
    cases = {
        "user_target_modules_not_found": submit(
            stack.client, team, rows, adapter={**SHORT["adapter"], "target_modules": ["nope"]}
        ),
        "user_bad_data": submit(
            stack.client,
            team,
            rows,
            hyperparameters={**SHORT["hyperparameters"], "max_seq_length": 16},
        ),
        "user_model_not_loadable": submit(stack.client, team, rows, model="broken"),
    }
    for code, job in cases.items():
        failed = wait_for(stack.client, team, job["id"], {"failed"}, timeout_s=120)
        assert failed["error"]["code"] == code, failed["error"]
        assert failed["error"]["param"] and failed["error"]["message"]
    assert (
        "max_seq_length"
        in wait_for(stack.client, team, cases["user_bad_data"]["id"], {"failed"})["error"][
            "message"
        ]
    )


def test_killed_worker_job_resumes_on_another(stack, team, start_worker):
    first = start_worker()
    job = submit(
        stack.client,
        team,
        instruction_rows(16),
        hyperparameters=longer(6, checkpoint_every=2),
        gpu={"pool": SPARE_POOL},
    )
    wait_for_event(stack.client, team, job["id"], lambda e: "Checkpoint saved" in e["message"])
    first.kill()
    start_worker()  # its reconciler finds the stale heartbeat and sends the job again
    done = wait_for(stack.client, team, job["id"], {"succeeded"}, timeout_s=240)
    log = [e["message"] for e in events(stack.client, team, job["id"])]
    assert any(m.startswith("Requeued") for m in log), log
    assert any(m.startswith("Resuming from checkpoint") for m in log), log
    assert done["trained_tokens"] > 0
    # The resumed attempt re-runs the steps the lost one ran past its checkpoint: each step's
    # metrics are still recorded once, and metrics.jsonl holds every step of both attempts.
    steps = [
        e["data"]["step"]
        for e in events(stack.client, team, job["id"])
        if "loss" in (e.get("data") or {})
    ]
    assert steps == [1, 2, 3, 4, 5, 6], steps
    storage = Storage(stack.settings.storage_url)
    with storage.open_read(job_key(job["id"], "metrics.jsonl")) as handle:
        assert [json.loads(line)["step"] for line in handle.read().splitlines()] == steps


def test_three_jobs_two_workers_one_job_each_at_a_time(stack, team, start_worker):
    from service.core.jobs import repository

    start_worker(), start_worker()
    adapter = {"type": "gora", "r_ref": 4, "target_modules": ["query", "value"], "probe_steps": 2}
    jobs = [
        submit(
            stack.client,
            team,
            classification_rows(),
            model="minilm-l6",
            adapter=adapter,
            gpu={"pool": SPARE_POOL},
        )
        for _ in range(3)
    ]
    pending = {job["id"] for job in jobs}
    deadline = time.monotonic() + 240
    while pending:
        with stack.database.transaction() as session:
            holders = [
                j.worker_id.split("/")[1]
                for status in ("running", "cancelling")
                for j in repository.jobs_in_status(session, status, pool=SPARE_POOL)
            ]
        assert len(holders) == len(set(holders)) <= 2, holders
        for job_id in list(pending):
            status = stack.client.get(
                f"/v1/fine_tuning/jobs/{job_id}", headers=team.headers
            ).json()["status"]
            assert status not in ("failed", "cancelled"), events(stack.client, team, job_id)
            if status == "succeeded":
                pending.discard(job_id)
        assert time.monotonic() < deadline
        time.sleep(0.3)


def job_statuses(stack, team, jobs) -> list[str]:
    return [
        stack.client.get(f"/v1/fine_tuning/jobs/{j['id']}", headers=team.headers).json()["status"]
        for j in jobs
    ]


def test_team_limit_holds_a_job_until_one_ends(stack, start_worker):
    from service.core.jobs import repository
    from service.core.teams.models import Team
    from tests.helpers.api import new_team

    limited = new_team(stack.client, stack.admin)
    with stack.database.transaction() as session:
        session.get(Team, limited.id).max_running_jobs = 1
    start_worker(), start_worker()
    adapter = {"type": "gora", "r_ref": 4, "target_modules": ["query", "value"], "probe_steps": 2}
    rows, pool = classification_rows(), {"pool": SPARE_POOL}
    jobs = [
        submit(stack.client, limited, rows, model="minilm-l6", adapter=adapter, gpu=pool)
        for _ in range(2)
    ]
    deadline = time.monotonic() + 180
    while (statuses := job_statuses(stack, limited, jobs)) != ["succeeded", "succeeded"]:
        with stack.database.transaction() as session:
            assert repository.running_count_for_team(session, limited.id) <= 1
        assert "failed" not in statuses and time.monotonic() < deadline, statuses
        time.sleep(0.2)
