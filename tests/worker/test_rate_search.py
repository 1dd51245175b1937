"""learning_rate_multiplier "search" through a real worker: the job tries rates on validation loss,
keeps the best and continues it, ending where a plain job at that rate ends; and the collapse guard
retries a job whose classifier answers one class at half its rate."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.api import jsonl, upload
from tests.helpers.jobs import adapter_weights, classification_rows, events, submit, wait_for
from tests.helpers.models import MINILM

pytestmark = pytest.mark.slow
ADAPTER = {"type": "gora", "r_ref": 2, "target_modules": ["query", "value"], "probe_steps": 2}
RUN = {"n_epochs": 4, "batch_size": 4, "log_every_steps": 1, "checkpoint_every_steps": 100}


def test_a_searched_job_chooses_a_rate_and_ends_as_a_plain_job_at_it(stack, team, worker, tmp_path):
    validation = upload(stack.client, team, jsonl(classification_rows()), "valid.jsonl")["id"]
    fields = {"model": MINILM, "adapter": ADAPTER, "seed": 3, "validation_file": validation}
    # 16 steps are few: a budget of 3 plain jobs lets three rates run two rungs (1.75 would not).
    search = {"learning_rate_multiplier": "search", "search_budget": 3.0}
    searched = submit(stack.client, team, classification_rows(), **fields,
                      hyperparameters={**RUN, **search})  # fmt: skip
    candidates = searched["hyperparameters"]["learning_rate_search"]["candidates"]
    assert candidates == [1e-4, 2e-4, 5e-4]  # around the classifier's default, 2e-4
    done = wait_for(stack.client, team, searched["id"], {"succeeded"}, timeout_s=300)

    record = done["learning_rate_search"]
    assert record["candidates"] == candidates and record["chosen"] in candidates
    assert sorted(t["status"] for t in record["trials"]) == ["chosen", "dropped", "dropped"]
    assert all(t["scores"] for t in record["trials"]) and 1 < record["cost"] <= 3.0
    assert record["rung_steps"] == [2, 15]  # 12 % of the run, then the latest the budget allows
    multiplier = record["chosen"] / 2e-4
    assert done["hyperparameters"]["learning_rate"] == record["chosen"]
    assert done["hyperparameters"]["learning_rate_multiplier"] == pytest.approx(multiplier)
    assert done["method"]["supervised"]["hyperparameters"]["learning_rate"] == record["chosen"]
    log = events(stack.client, team, searched["id"])
    messages = [e["message"] for e in log]
    assert any(m.startswith("Learning-rate search: trying 0.0001, 0.0002, 0.0005 (")
               for m in messages)  # fmt: skip
    scored = [e for e in log if e["type"] == "search" and "valid_loss" in e["data"]]
    assert len(scored) == 3 + 2  # three trials at the first rung, two at the last
    assert all(0 <= e["data"]["valid_accuracy"] <= 1 for e in scored)  # a classifier's, reported
    assert any(m.startswith(f"Learning-rate search chose {record['chosen']:g}") for m in messages)
    steps = [e["data"]["step"] for e in log if e["type"] == "metrics" and "loss" in e["data"]]
    assert steps == list(range(1, 17))  # the chosen trial's steps, then the rest: each once

    # The chosen trial's steps were kept: a plain job at the chosen rate ends with the same adapter.
    plain = submit(stack.client, team, classification_rows(), **fields,
                   hyperparameters={**RUN, "learning_rate_multiplier": multiplier})  # fmt: skip
    wait_for(stack.client, team, plain["id"], {"succeeded"}, timeout_s=300)
    want = adapter_weights(stack, team, plain["id"], tmp_path / "plain")
    got = adapter_weights(stack, team, searched["id"], tmp_path / "searched")
    assert want.keys() == got.keys()
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, atol=1e-5, rtol=1e-4)


def test_a_short_job_without_a_validation_file_holds_out_examples_and_skips_the_search(
    stack, team, worker
):
    rows = classification_rows() * 2  # 32 rows: 8 held out, 24 train in 6 steps
    job = submit(stack.client, team, rows, model=MINILM, adapter=ADAPTER,
                 hyperparameters={**RUN, "n_epochs": 1, "learning_rate_multiplier": "search"})  # fmt: skip
    done = wait_for(stack.client, team, job["id"], {"succeeded"}, timeout_s=300)
    messages = [e["message"] for e in events(stack.client, team, job["id"])]
    assert any(m.startswith("No validation_file: 8 of the training examples are held out")
               for m in messages), messages  # fmt: skip
    # Six steps cannot try three rates within 1.75 plain jobs: the default rate, and said so.
    assert any(m.startswith("Learning-rate search skipped: 6 steps are too few") for m in messages)
    record = done["learning_rate_search"]
    assert record["chosen"] == 2e-4 and record["trial_steps"] == 0 and record["cost"] == 1.0


def test_a_collapsed_classifier_is_retried_once_at_half_the_rate(stack, team, worker):
    # At 100x its default rate (2e-2) the classifier answers one class for every example after
    # its 24 steps (a classifier is judged from 20 steps: before, one class is where it starts).
    job = submit(stack.client, team, classification_rows(), model=MINILM, adapter=ADAPTER, seed=1,
                 hyperparameters={**RUN, "n_epochs": 6, "learning_rate_multiplier": 100.0})  # fmt: skip
    done = wait_for(stack.client, team, job["id"], {"succeeded", "failed"}, timeout_s=300)
    log = events(stack.client, team, job["id"])
    warned = [e for e in log if (e.get("data") or {}).get("code") == "training_collapsed"]
    assert len(warned) == 1 and warned[0]["level"] == "warn", [e["message"] for e in log]
    assert "retrying once at 0.01 from the initial adapter" in warned[0]["message"]
    assert done["hyperparameters"]["learning_rate"] == pytest.approx(1e-2)  # halved, recorded
    retried = [e["data"] for e in log if e["type"] == "metrics" and e["data"].get("run") == 1]
    # The retry's steps from 1, each once (to 24, or to where a divergence stopped it).
    assert retried and [d["step"] for d in retried] == list(range(1, len(retried) + 1))
    if done["status"] == "succeeded":
        assert len(retried) == 24
    if done["status"] == "failed":
        assert "after a retry at half the rate" in done["error"]["message"]
        assert done["error"]["param"] == "hyperparameters.learning_rate_multiplier"


def test_search_settings_are_checked_when_the_job_is_made(stack, team):
    file_id = upload(stack.client, team, jsonl(classification_rows()))["id"]
    cases = [
        ({"learning_rate_multiplier": 1.0, "search_budget": 2.0}, "hyperparameters.search_budget"),
        ({"learning_rate_multiplier": "search", "search_budget": 0.5}, "search_budget"),
        ({"learning_rate_multiplier": "searching"}, "learning_rate_multiplier"),
    ]
    for hyperparameters, param in cases:
        body = {"model": MINILM, "training_file": file_id, "hyperparameters": hyperparameters}
        response = stack.client.post("/v1/fine_tuning/jobs", json=body, headers=team.headers)
        assert response.status_code == 400, response.text
        assert param in response.json()["error"]["param"], response.json()
