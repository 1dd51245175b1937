"""The quality benchmark's non-LoRA baselines on a tiny seeded model: what trains, at which rate,
and how AdaLoRA's parameters are counted once its budget has pruned ranks."""

from __future__ import annotations

import torch
from peft import get_peft_model
from transformers import LlamaForSequenceClassification

from bench.quality.methods import (
    _adalora_config,
    _adalora_role,
    _full_finetuning_role,
    trainable_params,
)
from bench.quality.settings import R8
from tests.helpers.models import tiny_llama_config


def tiny_classifier() -> LlamaForSequenceClassification:
    torch.manual_seed(0)
    return LlamaForSequenceClassification(tiny_llama_config(num_labels=3, pad_token_id=0))


def test_full_finetuning_trains_the_head_at_the_head_rate_and_the_rest_at_the_base_rate():
    model = tiny_classifier()
    roles = {name: _full_finetuning_role(name) for name, _ in model.named_parameters()}
    assert roles["score.weight"] == "head"
    assert {r for n, r in roles.items() if not n.startswith("score.")} == {"base"}


def test_adalora_starts_above_the_budget_and_counts_only_the_ranks_it_keeps():
    base = tiny_classifier()
    model = get_peft_model(base, _adalora_config(base, R8, steps=100))
    layers = [m for m in model.modules() if hasattr(m, "lora_E") and "default" in m.lora_E]
    assert layers and all(m.lora_E["default"].shape[0] == 12 for m in layers)  # 1.5 x r_ref 8
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert {_adalora_role(n) for n in names if ".lora_E." in n} == {"lora_A"}  # as PEFT's LoRA+
    assert {_adalora_role(n) for n in names if ".lora_B." in n} == {"lora_B"}

    before = trainable_params(model)
    assert before == sum(p.numel() for p in model.parameters() if p.requires_grad)
    # What AdaLoRA's budget records once it has pruned: the ranks each layer keeps.
    name = "model.layers.0.self_attn.q_proj.lora_E.default"
    model.peft_config["default"].rank_pattern = {name: [False] * 4 + [True] * 8}
    assert trainable_params(model) == before - 4 * (32 + 32 + 1)


def _tried(scores: dict[float, float]) -> dict[float, dict]:
    return {lr: {"lr": lr, "valid": v, "diverged": False} for lr, v in scores.items()}


def test_the_search_steps_past_an_edge_best_at_most_twice():
    from bench.quality.run import ladder_step, next_rate

    assert [ladder_step(x, down=True) for x in (1e-4, 2e-4, 5e-4)] == [5e-5, 1e-4, 2e-4]
    assert [ladder_step(x, down=False) for x in (1e-4, 2e-4, 5e-4)] == [2e-4, 5e-4, 1e-3]
    grid = (1e-4, 2e-4, 5e-4, 1e-3)
    assert next_rate(grid, _tried({1e-4: 0.9})) == 2e-4  # the grid first
    assert next_rate(grid, _tried({1e-4: 0.8, 2e-4: 0.9, 5e-4: 0.5, 1e-3: 0.5})) is None
    low = {1e-4: 0.9, 2e-4: 0.8, 5e-4: 0.5, 1e-3: 0.5}
    assert next_rate(grid, _tried(low)) == 5e-5
    assert next_rate(grid, _tried({**low, 5e-5: 0.95})) == 2e-5
    assert next_rate(grid, _tried({**low, 5e-5: 0.95, 2e-5: 0.97})) is None  # two steps at most
    assert next_rate(grid, _tried({**low, 5e-5: 0.85})) is None  # 1e-4 is now inside
    high = {1e-4: 0.5, 2e-4: 0.6, 5e-4: 0.7, 1e-3: 0.8}
    assert next_rate(grid, _tried(high)) == 2e-3
