"""The bundled models for tests, converted once per test session.

Plain functions cached per process rather than fixtures: test_models.py and test_encoding.py both need
the converted SmolLM2, and a fixture imported into two modules would run once in each.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

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
