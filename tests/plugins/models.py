"""Fixtures of tiny seeded models and batches (tests/helpers/models.py builds them)."""

from __future__ import annotations

import pytest
from transformers import LlamaForCausalLM

from tests.helpers.models import make_batches, make_tiny_llama


@pytest.fixture
def tiny_llama() -> LlamaForCausalLM:
    return make_tiny_llama()


@pytest.fixture
def batches():
    return make_batches()
