"""A job submitted through the API runs on a real worker to ``succeeded``, and what it leaves behind
(allocation, checkpoints, metrics, the adapter) agrees with itself and reloads in PEFT."""

from __future__ import annotations

import csv
import io
import json
import tarfile

import openai
import pytest
import torch
from peft import PeftModel
from transformers import AutoConfig

from gora import load_base_model
from service.core.storage import Storage, adapter_key, job_key
from tests.helpers.jobs import (
    checkpoint_steps,
    classification_rows,
    download_adapter,
    events,
    instruction_rows,
    submit,
    wait_for,
)
from tests.helpers.models import MINILM, SMOLLM, session_cache_dir

pytestmark = pytest.mark.slow


def recorded_outputs(stack, job_id: str) -> dict:
    storage = Storage(stack.settings.storage_url)
    with storage.open_read(job_key(job_id, "reference_outputs.json")) as handle:
        return json.load(handle)


def reloaded_logits(base, adapter_dir, input_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(adapter logits, base logits) of the last position, computed in this process."""
    torch.set_num_threads(1)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    batch = {
        "input_ids": torch.tensor([input_ids]),
        "attention_mask": torch.ones(1, len(input_ids)),
    }
    with torch.no_grad():
        tuned = model(**batch).logits[0]
        with model.disable_adapter():
            plain = model(**batch).logits[0]
    pick = (lambda t: t[-1]) if tuned.dim() == 2 else (lambda t: t)
    return pick(tuned), pick(plain)


def check_reload(stack, team, job_id, base, tmp_path) -> None:
    adapter_dir = download_adapter(stack.client, team, job_id, tmp_path) / f"{job_id}-peft"
    recorded = recorded_outputs(stack, job_id)
    tuned, plain = reloaded_logits(base, adapter_dir, recorded["input_ids"])
    expected = torch.tensor(recorded["logits"])
    torch.testing.assert_close(tuned, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(plain, expected, atol=1e-3), "the adapter changed nothing"
    return adapter_dir


def test_smollm2_gora_job_end_to_end(stack, team, worker, tmp_path):
    job = submit(stack.client, team, instruction_rows(16))
    done = wait_for(stack.client, team, job["id"], {"succeeded"})
    assert done["trained_tokens"] > 0 and done["finished_at"] is not None
    assert len(done["result_files"]) == 1 and done["estimated_finish"] is None
    log = events(stack.client, team, job["id"])
    phases = [e["data"]["phase"] for e in log if (e.get("data") or {}).get("phase")]
    assert phases == ["loading", "probing", "training", "exporting"]
    metrics = [e["data"] for e in log if e["type"] == "metrics"]
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert all({"loss", "learning_rate", "tokens_per_s", "epoch"} <= set(m) for m in metrics)
    assert all(0 <= m["accuracy"] <= 1 for m in metrics)  # per trained token
    assert checkpoint_steps(stack.client, team, job["id"]) == [2, 3]

    allocation = stack.client.get(
        f"/v1/fine_tuning/jobs/{job['id']}/allocation", headers=team.headers
    ).json()
    storage = Storage(stack.settings.storage_url)
    with storage.open_read(f"{adapter_key(job['id'], 'peft')}/gora_allocation.json") as handle:
        stored = json.load(handle)
    assert allocation["layers"] == stored["layers"] and allocation["totals"] == stored["totals"]
    assert len(stored["layers"]) == 60

    base, _ = load_base_model(SMOLLM, "causal_lm", cache_dir=str(session_cache_dir()))
    adapter_dir = check_reload(stack, team, job["id"], base, tmp_path)
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    for layer in stored["layers"]:
        assert config["rank_pattern"].get(layer["name"], config["r"]) == layer["rank"]


def test_minilm_classification_job_with_validation(stack, team, worker, tmp_path):
    from tests.helpers.api import jsonl, upload

    rows = classification_rows()
    validation = upload(stack.client, team, jsonl(rows[:4]), "valid.jsonl")["id"]
    adapter = {"type": "gora", "r_ref": 4, "target_modules": ["query", "value"], "probe_steps": 2}
    job = submit(
        stack.client, team, rows, model=MINILM, adapter=adapter, validation_file=validation
    )
    done = wait_for(stack.client, team, job["id"], {"succeeded"})
    openai_client = openai.OpenAI(
        base_url=f"{stack.client.base_url}/v1", api_key=team.key, http_client=stack.client
    )
    # Each checkpoint carries OpenAI's metrics, validation included (it is evaluated before it
    # is saved), and its own adapter.
    checkpoints = openai_client.fine_tuning.jobs.checkpoints.list(job["id"]).data
    assert [c.step_number for c in checkpoints] == [3, 2]
    for checkpoint in checkpoints:
        metrics = checkpoint.metrics
        assert metrics.step == checkpoint.step_number and metrics.train_loss > 0
        assert metrics.valid_loss > 0 and 0 <= metrics.valid_mean_token_accuracy <= 1
        assert 0 <= metrics.train_mean_token_accuracy <= 1
        assert checkpoint.fine_tuned_model_checkpoint.endswith(
            f"ckpt-step-{checkpoint.step_number}"
        )
    # The result file, through OpenAI's own client: one row per step, valid columns at the
    # evaluated steps (each checkpoint, 2 and 3).
    (result_file,) = done["result_files"]
    assert openai_client.files.retrieve(result_file).filename == "step_metrics.csv"
    table = list(csv.DictReader(io.StringIO(openai_client.files.content(result_file).text)))
    assert [row["step"] for row in table] == ["1", "2", "3"]
    assert [bool(row["valid_loss"]) for row in table] == [False, True, True]
    by_step = {c.step_number: c.metrics for c in checkpoints}
    assert float(table[1]["valid_loss"]) == pytest.approx(by_step[2].valid_loss, rel=1e-5)

    # The archive names its labels: a fresh base that knows none reads them from config.json.
    adapter_dir = download_adapter(stack.client, team, job["id"], tmp_path) / f"{job['id']}-peft"
    labels = AutoConfig.from_pretrained(adapter_dir)
    assert labels.id2label == {0: "money", 1: "sport"}  # sorted, as the service sorts them
    allocation = stack.client.get(
        f"/v1/fine_tuning/jobs/{job['id']}/allocation", headers=team.headers
    ).json()
    assert allocation["config"]["label2id"] == {"money": 0, "sport": 1}
    base, _ = load_base_model(MINILM, "sequence_classification", label_names=["x", "y"])
    base.config.id2label, base.config.label2id = labels.id2label, labels.label2id
    check_reload(stack, team, job["id"], base, tmp_path)

    # A checkpoint's adapter loads in PEFT like the final one, and differs from it.
    step_2 = next(c for c in checkpoints if c.step_number == 2)
    response = stack.client.get(
        f"/v1/fine_tuning/jobs/{job['id']}/checkpoints/{step_2.id}/adapter", headers=team.headers
    )
    assert response.status_code == 200, response.text
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
        archive.extractall(tmp_path / "ckpt", filter="data")
    recorded = recorded_outputs(stack, job["id"])
    base, _ = load_base_model(MINILM, "sequence_classification", label_names=["money", "sport"])
    early, _ = reloaded_logits(
        base, tmp_path / "ckpt" / f"{job['id']}-step-2-peft", recorded["input_ids"]
    )
    assert not torch.allclose(early, torch.tensor(recorded["logits"]), atol=1e-6)


def test_plain_lora_job(stack, team, worker, tmp_path):
    adapter = {"type": "lora", "r_ref": 4, "target_modules": ["q_proj", "v_proj"]}
    job = submit(stack.client, team, instruction_rows(8), adapter=adapter)
    wait_for(stack.client, team, job["id"], {"succeeded"})
    allocation = stack.client.get(
        f"/v1/fine_tuning/jobs/{job['id']}/allocation", headers=team.headers
    ).json()
    assert {layer["rank"] for layer in allocation["layers"]} == {4}
    base, _ = load_base_model(SMOLLM, "causal_lm", cache_dir=str(session_cache_dir()))
    check_reload(stack, team, job["id"], base, tmp_path)
