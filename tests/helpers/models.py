"""Models for tests: tiny seeded ones built from configs (no downloads) for the math, and the bundled
pretrained ones, converted once per test session.

Plain functions cached per process rather than fixtures: several test packages need the converted
SmolLM2, and a fixture imported into two modules would run once in each.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from gora.model_registry import bundled_path
from gora.models import converted_gguf_dir, prepare_tokenizer

SMOLLM = "smollm2-135m"
MINILM = "minilm-l6"


@functools.cache
def session_cache_dir() -> Path:
    """A fresh cache for this session: the tests exercise the conversion, not a user's cache."""
    root = Path(tempfile.mkdtemp(prefix="gora-test-cache-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


@functools.cache
def smollm_dir() -> Path:
    """SmolLM2's GGUF converted into the session cache (~20 s, once)."""
    return converted_gguf_dir(SMOLLM, session_cache_dir())


@functools.cache
def smollm_tokenizer():
    from transformers import AutoTokenizer

    return prepare_tokenizer(AutoTokenizer.from_pretrained(smollm_dir()))


def minilm_tokenizer():
    """A fresh copy of the bundled MiniLM's BERT tokenizer (tests may change it; loads in ~0.1 s)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(bundled_path(MINILM))


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
