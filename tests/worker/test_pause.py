"""Pause and resume through a real worker: the job checkpoints where it pauses, frees its worker,
and resumed it ends with the loss curve and the adapter of the same job never paused; a supervised
job and a DPO job alike (a resume after a crash takes the same path: the latest checkpoint)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.jobs import (
    SHORT,
    adapter_weights,
    events,
    get_job,
    instruction_rows,
    preference_rows,
    submit,
    wait_for,
    wait_for_event,
)

pytestmark = pytest.mark.slow
STEPS = 8
HYPERPARAMETERS = {**SHORT["hyperparameters"], "n_epochs": 10, "batch_size": 2,
                   "max_steps": STEPS, "checkpoint_every_steps": 100}  # fmt: skip


def losses(stack, team, job_id: str) -> list[tuple[int, float]]:
    return [
        (e["data"]["step"], e["data"]["loss"])
        for e in events(stack.client, team, job_id)
        if e["type"] == "metrics" and "loss" in (e.get("data") or {})
    ]


def rows_and_fields(method: str) -> tuple[list, dict]:
    """A supervised job's rows and fields, or a DPO job's (its hyperparameters under method)."""
    if method == "supervised":
        return instruction_rows(16), {"hyperparameters": HYPERPARAMETERS}
    dpo = {"type": "dpo", "dpo": {"hyperparameters": HYPERPARAMETERS}}
    return preference_rows(range(1, 17)), {"hyperparameters": None, "method": dpo}


@pytest.mark.parametrize("method", ["supervised", "dpo"])
def test_a_paused_job_resumes_to_what_it_would_have_been(stack, team, worker, tmp_path, method):
    rows, fields = rows_and_fields(method)
    plain = submit(stack.client, team, rows, seed=5, **fields)
    wait_for(stack.client, team, plain["id"], {"succeeded"})

    job = submit(stack.client, team, rows, seed=5, **fields)
    wait_for_event(
        stack.client,
        team,
        job["id"],
        lambda e: (e.get("data") or {}).get("step") == 2 and e["type"] == "metrics",
    )
    asked = stack.client.post(f"/v1/fine_tuning/jobs/{job['id']}/pause", headers=team.headers)
    assert asked.status_code == 200 and asked.json()["status"] in ("pausing", "paused")
    paused = wait_for(stack.client, team, job["id"], {"paused"}, timeout_s=60)
    assert paused["finished_at"] is None
    log = [e["message"] for e in events(stack.client, team, job["id"])]
    notes = [m for m in log if m.startswith("Job paused at step")]
    assert len(notes) == 1, "\n".join(log)
    step = int(notes[0].split()[4].rstrip(";"))
    assert 2 <= step < STEPS
    checkpoints = stack.client.get(
        f"/v1/fine_tuning/jobs/{job['id']}/checkpoints", headers=team.headers
    ).json()["data"]
    assert [c["step_number"] for c in checkpoints] == [step]  # saved where it paused

    resumed = stack.client.post(f"/v1/fine_tuning/jobs/{job['id']}/resume", headers=team.headers)
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    done = wait_for(stack.client, team, job["id"], {"succeeded"})
    log = [e["message"] for e in events(stack.client, team, job["id"])]
    assert any(m == f"Resuming from checkpoint checkpoint-{step}" for m in log), log
    assert get_job(stack.client, team, job["id"])["trained_tokens"] == done["trained_tokens"]

    reference, after = losses(stack, team, plain["id"]), losses(stack, team, job["id"])
    assert [s for s, _ in after] == list(range(1, STEPS + 1))  # each step once, none twice
    assert [loss for _, loss in after] == pytest.approx([loss for _, loss in reference], rel=1e-4)
    expected = adapter_weights(stack, team, plain["id"], tmp_path / "plain")
    got = adapter_weights(stack, team, job["id"], tmp_path / "paused")
    assert expected.keys() == got.keys()
    for name, tensor in expected.items():
        assert torch.allclose(got[name], tensor, atol=1e-5), name
