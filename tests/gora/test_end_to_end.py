"""The whole library path on the bundled pretrained models: probe -> allocate -> init -> train -> save,
then PEFT's own loader on an untouched base reproduces the trained model's outputs exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from gora import GoraConfig, get_gora_model, load_base_model, save_adapter
from gora.data.encoding import build_dataset
from gora.data.formats import read_jsonl
from gora.data.loading import collator_for, make_batches
from gora.train import TrainingConfig, train
from tests.helpers.models import MINILM, SMOLLM, session_cache_dir

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "instructions.jsonl"


def run_and_reload(task, load, rows, fmt, cfg, tmp_path, probe_batch=4):
    base, tokenizer = load()
    dataset, _ = build_dataset(rows, fmt, tokenizer, task, max_length=64)
    collator = collator_for(tokenizer)
    model = get_gora_model(base, cfg, make_batches(dataset, collator, probe_batch, seed=0))
    config = TrainingConfig(learning_rate=2e-4, n_epochs=1, max_steps=3, batch_size=4)
    result = train(model, dataset, collator, config)
    assert result.steps == 3 and result.trained_tokens > 0
    save_adapter(model, tmp_path)
    batch = collator([dataset[i] for i in range(3)])
    batch.pop("labels")
    model.eval()
    with torch.no_grad():
        expected = model(**batch).logits
    fresh, _ = load()
    reloaded = PeftModel.from_pretrained(fresh, tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, expected)
    return model, json.loads((tmp_path / "gora_allocation.json").read_text())


def test_smollm2_gora_job_reloads_exactly(tmp_path):
    fmt, rows = read_jsonl(str(EXAMPLES))
    cfg = GoraConfig(r_ref=4, target_modules=["q_proj", "v_proj"], probe_steps=2)

    def load():
        return load_base_model(SMOLLM, "causal_lm", cache_dir=str(session_cache_dir()))

    _, report = run_and_reload("causal_lm", load, rows[:24], fmt, cfg, tmp_path)
    assert len(report["layers"]) == 60  # 30 blocks x (q_proj, v_proj)
    assert report["totals"]["allocated"] <= report["totals"]["budget"]
    assert (report["probe"]["steps"], report["probe"]["samples"]) == (2, 8)
    assert 0 < report["probe"]["mean_loss"] < 10
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    for layer in report["layers"]:
        assert config["rank_pattern"].get(layer["name"], config["r"]) == layer["rank"]


def test_minilm_classification_gora_reloads_with_its_head(tmp_path):
    topics = {
        "sport": "The team won the match and the striker scored",
        "money": "Shares fell as the bank cut rates",
    }
    rows = [
        {"text": f"{text} ({i})", "label": label}
        for i in range(8)
        for label, text in topics.items()
    ]
    cfg = GoraConfig(r_ref=4, target_modules=["query", "value"], probe_steps=2)

    def load():
        return load_base_model(MINILM, "sequence_classification", label_names=sorted(topics))

    model, report = run_and_reload(
        "sequence_classification", load, rows, "classification", cfg, tmp_path
    )
    assert len(report["layers"]) == 12  # 6 blocks x (query, value)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("classifier" in n for n in trainable), "PEFT trains the new head (modules_to_save)"
