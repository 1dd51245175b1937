"""Tiny seeded models and batches for the math tests: built from configs, no downloads."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

VOCAB = 64


def tiny_llama_config(**overrides) -> LlamaConfig:
    values = dict(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        max_position_embeddings=64,
    )
    return LlamaConfig(**{**values, **overrides})


def make_tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_llama_config())


def make_batches(n_batches: int = 3, batch_size: int = 2, length: int = 12, seed: int = 1):
    """Causal-LM batches of equal-length rows with every token labelled (so per-token means agree
    however the rows are split across batches or processes)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (n_batches * batch_size, length), generator=generator)
    return [
        {"input_ids": ids[i : i + batch_size], "labels": ids[i : i + batch_size]}
        for i in range(0, len(ids), batch_size)
    ]


@pytest.fixture
def tiny_llama() -> LlamaForCausalLM:
    return make_tiny_llama()


@pytest.fixture
def batches():
    return make_batches()
