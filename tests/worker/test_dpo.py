"""Preference tuning through the service: a DPO job on SmolLM2 (real worker, tiny data) probes the DPO
loss, reports reward metrics, and leaves an adapter that PEFT loads and that prefers held-out chosen
answers more than the base does; an SFT job's adapter is a DPO job's start and its reference."""

from __future__ import annotations

import math

import pytest
import torch
from peft import PeftModel

from gora import load_base_model
from gora.data.encoding import build_dataset
from gora.data.preference import preference_collator
from gora.train.preference import completion_logps
from tests.helpers.api import jsonl, upload
from tests.helpers.jobs import (
    checkpoint_steps,
    download_adapter,
    events,
    instruction_rows,
    preference_rows,
    submit,
    wait_for,
)
from tests.helpers.models import SMOLLM, session_cache_dir, smollm_tokenizer

pytestmark = pytest.mark.slow


def dpo_body(training: str, **hyperparameters) -> dict:
    settings = {
        "n_epochs": 1,
        "batch_size": 4,
        "max_steps": 6,
        "max_seq_length": 96,
        "log_every_steps": 1,
        "checkpoint_every_steps": 3,
        "learning_rate_multiplier": 2.5,  # 5e-5 for GoRA: at 1e-4 its DPO loss diverges (bench)
        **hyperparameters,
    }
    return {
        "model": SMOLLM,
        "training_file": training,
        "method": {"type": "dpo", "dpo": {"hyperparameters": settings}},
    }


def held_out_margin(model, tokenizer) -> float:
    """Mean log π(chosen) − log π(rejected) over pairs no job trained on."""
    dataset, _ = build_dataset(
        preference_rows(range(50, 58)), "preference", tokenizer, "causal_lm", 96
    )
    batch = preference_collator(tokenizer.pad_token_id)([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        chosen, rejected = completion_logps(model.eval(), batch).chunk(2)
    return float((chosen - rejected).mean())


def test_a_dpo_job_prefers_held_out_chosen_answers_more_than_the_base(
    stack, team, worker, tmp_path
):
    training = upload(stack.client, team, jsonl(preference_rows(range(1, 25))))
    assert (training["format"], training["rows"]) == ("preference", 24)
    validation = upload(stack.client, team, jsonl(preference_rows(range(30, 38))), "valid.jsonl")
    body = {
        **dpo_body(training["id"]),
        "validation_file": validation["id"],
        "adapter": {"type": "gora", "r_ref": 4, "target_modules": ["q_proj", "v_proj"],
                    "probe_steps": 2},
    }  # fmt: skip
    created = stack.client.post("/v1/fine_tuning/jobs", json=body, headers=team.headers)
    assert created.status_code == 200, created.text
    job = created.json()
    assert job["method"]["type"] == "dpo"
    assert job["method"]["dpo"]["hyperparameters"]["beta"] == 0.1  # "auto": OpenAI's default
    done = wait_for(stack.client, team, job["id"], {"succeeded"}, timeout_s=300)
    assert done["trained_tokens"] > 0

    log = events(stack.client, team, job["id"])
    phases = [e["data"]["phase"] for e in log if (e.get("data") or {}).get("phase")]
    assert phases == ["loading", "probing", "training", "exporting"]
    training_metrics = [e for e in log if e["type"] == "metrics" and "loss" in e["data"]]
    assert [e["data"]["step"] for e in training_metrics] == [1, 2, 3, 4, 5, 6]
    for event in training_metrics:
        assert 0 <= event["data"]["reward_accuracy"] <= 1
        assert "reward margin=" in event["message"]
    valid = [e["data"] for e in log if e["type"] == "metrics" and "valid_loss" in e["data"]]
    assert valid and all("valid_reward_accuracy" in v for v in valid)
    assert checkpoint_steps(stack.client, team, job["id"]) == [3, 6]
    allocation = stack.client.get(
        f"/v1/fine_tuning/jobs/{job['id']}/allocation", headers=team.headers
    ).json()
    assert allocation["probe"]["steps"] == 2  # the probe measured DPO's loss: ln 2 at the start
    assert allocation["probe"]["mean_loss"] == pytest.approx(math.log(2), abs=1e-4)

    tokenizer = smollm_tokenizer()
    base, _ = load_base_model(SMOLLM, "causal_lm", cache_dir=str(session_cache_dir()))
    before = held_out_margin(base, tokenizer)
    (config,) = download_adapter(stack.client, team, job["id"], tmp_path).rglob(
        "adapter_config.json"
    )
    adapter = PeftModel.from_pretrained(base, str(config.parent))
    after = held_out_margin(adapter, tokenizer)
    assert after > before + 0.5, (before, after)


def test_an_sft_adapter_starts_a_dpo_job_and_is_its_reference(stack, team, worker):
    sft = submit(stack.client, team, instruction_rows(16))
    wait_for(stack.client, team, sft["id"], {"succeeded"})
    training = upload(stack.client, team, jsonl(preference_rows(range(1, 9))))
    body = {**dpo_body(training["id"], max_steps=2), "from_checkpoint": sft["id"]}
    created = stack.client.post("/v1/fine_tuning/jobs", json=body, headers=team.headers)
    assert created.status_code == 200, created.text
    done = wait_for(stack.client, team, created.json()["id"], {"succeeded"})

    log = events(stack.client, team, done["id"])
    assert any(e["message"].startswith(f"Warm start from {sft['id']}") for e in log)
    first = next(e["data"] for e in log if e["type"] == "metrics" and e["data"].get("step") == 1)
    # The policy starts at its reference (the SFT adapter), so the first pairs' loss is ln 2;
    # against the base it would be whatever SFT moved the answers by.
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-4)


def test_a_supervised_job_refuses_preference_rows_and_dpo_refuses_chat(stack, team):
    preference = upload(stack.client, team, jsonl(preference_rows(range(1, 5))))
    chat = upload(stack.client, team, jsonl(instruction_rows(4)))
    wrong = [
        ({"model": SMOLLM, "training_file": preference["id"]}, "method 'dpo'"),
        (dpo_body(chat["id"]), "preference rows"),
    ]
    for body, message in wrong:
        response = stack.client.post("/v1/fine_tuning/jobs", json=body, headers=team.headers)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "training_file" and message in error["message"]
    mixed = {**dpo_body(preference["id"]), "hyperparameters": {"n_epochs": 1}}
    response = stack.client.post("/v1/fine_tuning/jobs", json=mixed, headers=team.headers)
    assert response.status_code == 400 and response.json()["error"]["param"] == "hyperparameters"
    beta = dpo_body(preference["id"], beta=0)
    response = stack.client.post("/v1/fine_tuning/jobs", json=beta, headers=team.headers)
    assert response.status_code == 400, response.text
    assert "beta" in response.json()["error"]["param"]
