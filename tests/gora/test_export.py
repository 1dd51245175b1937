"""Saved adapters: PEFT reload exact, merge within 1e-5, uniform export, the allocation report."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, LlamaForSequenceClassification
from transformers.modeling_outputs import ModelOutput

from gora import GoraConfig, get_gora_model, save_adapter
from gora.export import lora_layers
from tests.helpers.models import make_batches, make_tiny_llama, tiny_llama_config


@pytest.fixture
def trained_model():
    """A GoRA model whose adapters were moved off their init, so B ≠ 0 everywhere and ranks differ."""
    batches = make_batches()
    model = get_gora_model(make_tiny_llama(), GoraConfig(r_ref=4, probe_steps=3), batches)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for batch in batches:
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_peft_reload_reproduces_outputs_exactly(trained_model, tmp_path):
    ids = make_batches(seed=7)[0]["input_ids"]
    expected = logits(trained_model, ids)
    save_adapter(trained_model, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["init_lora_weights"] is True
    assert config["use_rslora"] is True
    ranks = trained_model.gora_report.ranks
    assert len(set(ranks.values())) > 1, "the test needs heterogeneous ranks"
    for name, rank in ranks.items():
        assert config["rank_pattern"].get(name, config["r"]) == rank
    reloaded = PeftModel.from_pretrained(make_tiny_llama(), tmp_path).eval()
    assert torch.equal(logits(reloaded, ids), expected)


def test_merge_and_unload_matches(trained_model, tmp_path):
    ids = make_batches(seed=7)[0]["input_ids"]
    expected = logits(trained_model, ids)
    save_adapter(trained_model, tmp_path)
    merged = PeftModel.from_pretrained(make_tiny_llama(), tmp_path).merge_and_unload().eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    torch.testing.assert_close(logits(merged, ids), expected, atol=1e-5, rtol=0)


def test_uniform_export_has_one_rank_and_the_same_outputs(trained_model, tmp_path):
    ids = make_batches(seed=7)[0]["input_ids"]
    expected = logits(trained_model, ids)
    save_adapter(trained_model, tmp_path, format="uniform")
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    top = max(trained_model.gora_report.ranks.values())
    assert (config["r"], config["lora_alpha"], config["use_rslora"]) == (top, top, False)
    assert config["rank_pattern"] == {} and config["init_lora_weights"] is True
    weights = load_file(tmp_path / "adapter_model.safetensors")
    assert {w.shape[0] for k, w in weights.items() if "lora_A" in k} == {top}
    assert {w.shape[1] for k, w in weights.items() if "lora_B" in k} == {top}
    reloaded = PeftModel.from_pretrained(make_tiny_llama(), tmp_path).eval()
    # Folding s_i into B reorders one multiplication: equal up to float rounding.
    torch.testing.assert_close(logits(reloaded, ids), expected, atol=1e-6, rtol=1e-6)


def test_allocation_report_fields(trained_model, tmp_path):
    save_adapter(trained_model, tmp_path)
    report = json.loads((tmp_path / "gora_allocation.json").read_text())
    layers = report["layers"]
    assert len(layers) == 14
    assert set(layers[0]) == {"name", "d_in", "d_out", "importance", "share", "rank", "params"}
    assert sum(x["share"] for x in layers) == pytest.approx(1.0)
    for x in layers:
        assert x["params"] == x["rank"] * (x["d_in"] + x["d_out"])
    totals = report["totals"]
    assert (
        totals["budget"]
        == totals["lora_params_at_r_ref"]
        == 4 * sum(x["d_in"] + x["d_out"] for x in layers)
    )
    assert totals["allocated"] == sum(x["params"] for x in layers) <= totals["budget"]
    assert report["config"]["r_ref"] == 4 and report["config"]["type"] == "gora"
    assert report["probe"]["steps"] == 3 and report["probe"]["samples"] == 6
    # The saved adapter's trainable parameter count is what the report says.
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert sum(w.numel() for w in saved.values()) == totals["allocated"]


def test_unknown_format_is_named(trained_model, tmp_path):
    with pytest.raises(ValueError, match="format must be one of peft, uniform"):
        save_adapter(trained_model, tmp_path, format="gguf")


class TwoPathModel(nn.Module):
    """A model with a dead branch (its output is multiplied by zero), so that layer's gradient is 0."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.live = nn.Linear(8, 8)
        self.also_live = nn.Linear(8, 8)
        self.dead = nn.Linear(8, 8)

    def forward(self, x, y):
        out = self.also_live(torch.tanh(self.live(x))) + 0.0 * self.dead(x)
        return ModelOutput(loss=((out - y) ** 2).mean())


def test_rank_zero_layers_are_excluded_and_reload(tmp_path):
    generator = torch.Generator().manual_seed(0)
    batches = [
        {"x": torch.randn(4, 8, generator=generator), "y": torch.randn(4, 8, generator=generator)}
    ]
    cfg = GoraConfig(r_ref=2, r_min=0, r_max=8, probe_steps=1, target_modules="all-linear")
    model = get_gora_model(TwoPathModel(), cfg, batches)
    assert model.gora_report.ranks["dead"] == 0
    assert set(lora_layers(model)) == {"live", "also_live"}
    save_adapter(model, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["exclude_modules"] == ["dead"]
    reloaded = PeftModel.from_pretrained(TwoPathModel(), tmp_path)
    assert set(lora_layers(reloaded)) == {"live", "also_live"}
    x = batches[0]["x"]
    with torch.no_grad():
        torch.testing.assert_close(
            reloaded.base_model.model.live(x), model.base_model.model.live(x)
        )


def tiny_classifier(seed: int = 0) -> LlamaForSequenceClassification:
    """Three named classes, in the order the service sorts labels (not alphabetical here)."""
    torch.manual_seed(seed)
    names = ["sport", "money", "grain"]
    config = tiny_llama_config(
        num_labels=3,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        pad_token_id=0,
    )
    return LlamaForSequenceClassification(config)


def test_a_classification_adapter_names_its_labels_on_a_fresh_base(tmp_path):
    batches = [
        {"input_ids": b["input_ids"], "labels": b["input_ids"][:, 0] % 3} for b in make_batches()
    ]
    model = get_gora_model(tiny_classifier(), GoraConfig(r_ref=4, probe_steps=3), batches).eval()
    save_adapter(model, tmp_path)
    report = json.loads((tmp_path / "gora_allocation.json").read_text())
    assert report["config"]["id2label"] == {"0": "sport", "1": "money", "2": "grain"}
    assert report["config"]["label2id"] == {"sport": 0, "money": 1, "grain": 2}
    # A user with only the archive: the label names from the archive's config, a base model
    # that knows no names, PEFT's loader, and predictions read as names.
    labels = AutoConfig.from_pretrained(tmp_path)
    fresh = tiny_classifier()  # the same pretrained weights, its names forgotten
    fresh.config.id2label = {i: f"LABEL_{i}" for i in range(3)}
    assert labels.id2label == {0: "sport", 1: "money", 2: "grain"}
    fresh.config.id2label, fresh.config.label2id = labels.id2label, labels.label2id
    reloaded = PeftModel.from_pretrained(fresh, tmp_path).eval()
    ids = make_batches(seed=7)[0]["input_ids"]
    with torch.no_grad():
        predicted = reloaded(input_ids=ids).logits.argmax(-1)
        expected = model(input_ids=ids).logits.argmax(-1)
    names = [reloaded.config.id2label[int(i)] for i in predicted]
    assert names == [model.config.id2label[int(i)] for i in expected]
    assert set(names) <= {"sport", "money", "grain"}


def test_a_causal_lm_adapter_has_no_label_config(trained_model, tmp_path):
    save_adapter(trained_model, tmp_path)
    assert not (tmp_path / "config.json").exists()
    assert "id2label" not in json.loads((tmp_path / "gora_allocation.json").read_text())["config"]
