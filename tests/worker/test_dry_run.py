"""A dry run probes on a real worker and ends with its allocation and a preview (parameters against
LoRA's, tokens, steps, a duration from the pool's measured throughput), training nothing; later jobs
with the same model, data and probe settings reuse that probe, whatever their γ or r_ref."""

from __future__ import annotations

import pytest

from tests.helpers.jobs import classification_rows, events, submit, wait_for
from tests.helpers.models import MINILM

pytestmark = pytest.mark.slow
ADAPTER = {"type": "gora", "r_ref": 4, "target_modules": ["query", "value"], "probe_steps": 2,
           "gamma": 0.05, "seed": 11}  # fmt: skip
REUSED = "Probe reused: an earlier job of this team probed the same model, data and probe settings"


def allocation(stack, team, job_id: str) -> dict:
    url = f"/v1/fine_tuning/jobs/{job_id}/allocation"
    response = stack.client.get(url, headers=team.headers)
    assert response.status_code == 200, response.text
    return response.json()


def messages(stack, team, job_id: str) -> list[str]:
    return [e["message"] for e in events(stack.client, team, job_id)]


def test_a_dry_run_previews_and_its_probe_serves_a_sweep(stack, team, worker):
    rows = classification_rows()
    first = submit(stack.client, team, rows, model=MINILM, adapter=ADAPTER)
    wait_for(stack.client, team, first["id"], {"succeeded"})
    assert REUSED not in messages(stack, team, first["id"])  # the first one probes

    dry = submit(stack.client, team, rows, model=MINILM, adapter=ADAPTER, dry_run=True)
    assert dry["dry_run"] is True
    done = wait_for(stack.client, team, dry["id"], {"succeeded"})
    log = messages(stack, team, dry["id"])
    assert REUSED in log and not any(m.startswith("Training:") for m in log), log
    preview, report = done["preview"], allocation(stack, team, dry["id"])
    assert report["probe"]["reused"] is True
    assert [x["rank"] for x in report["layers"]] == [
        x["rank"] for x in allocation(stack, team, first["id"])["layers"]
    ]
    assert preview["adapter_params"] == report["totals"]["allocated"]
    assert preview["lora_params_at_r_ref"] == report["totals"]["budget"]
    assert preview["trainable_params"] > preview["adapter_params"]  # plus the classifier head
    assert preview["examples"] == len(rows) and preview["steps"] == 3  # SHORT's max_steps
    # Measured on this pool by the first job: a duration, from a real tokens/s.
    assert preview["throughput"]["measured_reports"] >= 1
    assert preview["estimated_duration_s"] > 0
    assert done["fine_tuned_model"] is None and done["result_files"] == []
    adapter = stack.client.get(f"/v1/fine_tuning/jobs/{dry['id']}/adapter", headers=team.headers)
    assert adapter.status_code == 404  # nothing was trained

    # A sweep: other γ and r_ref, the same probe (its gradients serve both).
    sweep = {**ADAPTER, "gamma": 0.2, "r_ref": 8}
    second = submit(stack.client, team, rows, model=MINILM, adapter=sweep)
    wait_for(stack.client, team, second["id"], {"succeeded"})
    assert REUSED in messages(stack, team, second["id"])
    budget = allocation(stack, team, second["id"])["totals"]["budget"]
    assert budget == 2 * report["totals"]["budget"]
    # Other data: a probe of its own.
    other = submit(stack.client, team, rows[:12], model=MINILM, adapter=ADAPTER, dry_run=True)
    wait_for(stack.client, team, other["id"], {"succeeded"})
    assert REUSED not in messages(stack, team, other["id"])
