"""load_base_model and the model registry: aliases, local directories, GGUF conversion, hub errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

import gora.models as models
from gora.model_registry import BUNDLED, ModelLoadError, bundled_path, resolve_model_source
from gora.models import converted_gguf_dir, load_base_model
from tests.helpers.models import MINILM, SMOLLM, minilm_tokenizer, session_cache_dir, smollm_dir

PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=minilm_tokenizer().vocab_size,
    )
    return LlamaForCausalLM(config)


# --- registry (torch-free) -----------------------------------------------------------------------


def test_bundled_aliases_resolve_to_installed_files():
    assert BUNDLED[SMOLLM].task == "causal_lm"
    assert BUNDLED[MINILM].task == "sequence_classification"
    smollm = resolve_model_source(SMOLLM)
    assert (smollm.kind, smollm.gguf_file) == ("gguf", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert (Path(smollm.path) / smollm.gguf_file).is_file()
    minilm = resolve_model_source(MINILM)
    assert minilm.kind == "local" and (Path(minilm.path) / "config.json").is_file()
    assert "bundled model 'minilm-l6'" in minilm.description


def test_registry_does_not_import_torch():
    code = (
        "import sys; from gora.model_registry import resolve_model_source, BUNDLED; "
        "[resolve_model_source(n) for n in BUNDLED]; "
        "resolve_model_source('owner/name'); print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_local_paths_resolve_by_what_they_hold(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "m.gguf").write_bytes(b"GGUF")
    source = resolve_model_source(str(tmp_path / "one"))
    assert (source.kind, source.gguf_file) == ("gguf", "m.gguf")
    assert resolve_model_source(str(tmp_path / "one" / "m.gguf")).path == str(tmp_path / "one")
    (tmp_path / "one" / "n.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError, match=r"several GGUF files \(m.gguf, n.gguf\)"):
        resolve_model_source(str(tmp_path / "one"))
    with pytest.raises(ModelLoadError, match="no such file or directory"):
        resolve_model_source(str(tmp_path / "missing"))
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"must be a \.gguf"):
        resolve_model_source(str(tmp_path / "weights.bin"))


@pytest.mark.parametrize("name", ["not a model!", "a/b/c", "owner/-bad", "x..y", "bad-/x"])
def test_names_that_cannot_be_models_fail_without_network(name):
    with pytest.raises(ModelLoadError):
        resolve_model_source(name)


# --- argument checks -----------------------------------------------------------------------------


def test_unknown_task_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"task='translation'.*causal_lm, sequence_classification"):
        load_base_model(SMOLLM, "translation")


def test_classification_needs_consistent_labels():
    with pytest.raises(ValueError, match="needs num_labels >= 2 or at least two label_names"):
        load_base_model(MINILM, "sequence_classification")
    with pytest.raises(ValueError, match="num_labels=3 but label_names has 2"):
        load_base_model(MINILM, "sequence_classification", num_labels=3, label_names=["a", "b"])
    with pytest.raises(ValueError, match="must be distinct"):
        load_base_model(MINILM, "sequence_classification", label_names=["a", "a"])
    with pytest.raises(ValueError, match="are for task='sequence_classification'"):
        load_base_model(SMOLLM, "causal_lm", num_labels=2)


def test_encoder_alias_refuses_causal_lm():
    with pytest.raises(ModelLoadError, match="use task='sequence_classification'"):
        load_base_model(MINILM, "causal_lm")


# --- hub ids: a clear error, quickly -------------------------------------------------------------


@pytest.mark.parametrize("offline", ["1", ""])
def test_unknown_hub_model_fails_fast_and_says_why(monkeypatch, offline):
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        load_base_model("gora-tests/no-such-model")
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert "neither a bundled model (minilm-l6, smollm2-135m) nor a local directory" in message
    # Offline: says so. Online here: the hub is unreachable (or, where reachable, has no such model).
    assert "HF_HUB_OFFLINE is set" in message if offline else "Hugging Face" in message
    assert elapsed < 15, f"took {elapsed:.1f} s"  # transformers' own retries take ~25 s offline


# --- local directories ---------------------------------------------------------------------------


def test_local_directory_loads_with_dtype_and_training_padding(tmp_path):
    model = tiny_llama()
    model.save_pretrained(tmp_path)
    minilm_tokenizer().save_pretrained(tmp_path)
    loaded, tokenizer = load_base_model(str(tmp_path))
    assert isinstance(loaded, LlamaForCausalLM) and loaded.dtype == torch.float32
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    assert tokenizer.padding_side == "right" and tokenizer.pad_token == "[PAD]"
    assert loaded.config.pad_token_id == tokenizer.pad_token_id
    half, _ = load_base_model(str(tmp_path), dtype="bfloat16")
    assert half.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="not a torch dtype"):
        load_base_model(str(tmp_path), dtype="float33")


def test_missing_pad_token_becomes_eos():
    tokenizer = minilm_tokenizer()
    tokenizer.pad_token = None
    tokenizer.eos_token = "[SEP]"
    tokenizer.padding_side = "left"
    models.prepare_tokenizer(tokenizer)
    assert (tokenizer.pad_token, tokenizer.padding_side) == ("[SEP]", "right")


# --- GGUF conversion: atomic and cached (fake reader, fast) --------------------------------------


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """A .gguf whose 'reading' returns a tiny quantized-flagged llama; counts the reads."""
    gguf = tmp_path / "src" / "tiny.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF fake")
    reads = []
    tokenizer = minilm_tokenizer()

    def read_model(path, gguf_file, dtype):
        reads.append(Path(path) / gguf_file)
        model = tiny_llama()
        model.config.quantization_config = {"quant_method": "gguf"}
        return model

    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", read_model)
    monkeypatch.setattr(models.AutoTokenizer, "from_pretrained", lambda *a, **k: tokenizer)
    return gguf, reads


def test_conversion_writes_a_plain_model_once(fake_gguf, tmp_path):
    gguf, reads = fake_gguf
    target = converted_gguf_dir(str(gguf), tmp_path / "cache")
    assert target.parent == tmp_path / "cache" / "models" and target.name.startswith("tiny-")
    assert "quantization_config" not in json.loads((target / "config.json").read_text())
    assert json.loads((target / "gora_source.json").read_text())["gguf"] == str(gguf.resolve())
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no staging left
    with safe_open(target / "model.safetensors", "pt") as weights:
        assert torch.equal(weights.get_tensor("lm_head.weight"), tiny_llama().lm_head.weight)
    assert converted_gguf_dir(str(gguf), tmp_path / "cache") == target
    assert len(reads) == 1


def test_changed_gguf_gets_a_new_cache_entry(fake_gguf, tmp_path):
    gguf, reads = fake_gguf
    first = converted_gguf_dir(str(gguf), tmp_path / "cache")
    gguf.write_bytes(b"GGUF fake, re-quantized")
    assert converted_gguf_dir(str(gguf), tmp_path / "cache") != first
    assert len(reads) == 2


def test_concurrent_conversion_keeps_the_winner(fake_gguf, tmp_path, monkeypatch):
    gguf, _ = fake_gguf
    save = LlamaForCausalLM.save_pretrained
    target_box = []

    def save_while_another_process_finishes(self, directory, **kwargs):
        save(self, directory, **kwargs)
        target_box[0].mkdir(parents=True)  # the other process renamed its copy in first
        (target_box[0] / "config.json").write_text("{}")

    source = resolve_model_source(str(gguf))
    target_box.append(tmp_path / "cache" / "models" / f"tiny-{models._fingerprint(gguf)}")
    monkeypatch.setattr(LlamaForCausalLM, "save_pretrained", save_while_another_process_finishes)
    assert converted_gguf_dir(source, tmp_path / "cache") == target_box[0]
    assert (target_box[0] / "config.json").read_text() == "{}"
    assert [p.name for p in target_box[0].parent.iterdir()] == [target_box[0].name]


def test_failed_conversion_leaves_nothing(fake_gguf, tmp_path, monkeypatch):
    gguf, _ = fake_gguf

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(LlamaForCausalLM, "save_pretrained", fail)
    with pytest.raises(OSError, match="disk full"):
        converted_gguf_dir(str(gguf), tmp_path / "cache")
    assert list((tmp_path / "cache" / "models").iterdir()) == []


# --- the bundled models (slow) -------------------------------------------------------------------


@pytest.fixture(scope="session")
def gguf_reference():
    """The GGUF read directly by transformers: its tokenizer and its logits on PROMPT (the
    reference for the converted copy). The model itself is not kept."""
    source = resolve_model_source(SMOLLM)
    direct = AutoModelForCausalLM.from_pretrained(source.path, gguf_file=source.gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file)
    ids = tokenizer(PROMPT, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return tokenizer, direct(ids).logits


@pytest.mark.slow
def test_converted_smollm_matches_the_gguf(gguf_reference):
    _, gguf_logits = gguf_reference
    model, tokenizer = load_base_model(SMOLLM, cache_dir=str(session_cache_dir()))
    assert getattr(model.config, "quantization_config", None) is None
    assert model.dtype == torch.float32 and model.lm_head.weight is model.model.embed_tokens.weight
    ids = tokenizer(PROMPT, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == gguf_logits.shape == (1, ids.shape[1], 49152)
    torch.testing.assert_close(logits, gguf_logits, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_converted_smollm_keeps_the_tokenizer_and_chat_template(gguf_reference):
    original, _ = gguf_reference
    _, tokenizer = load_base_model(SMOLLM, cache_dir=str(session_cache_dir()))
    assert (smollm_dir() / "chat_template.jinja").is_file()
    assert tokenizer.chat_template == original.chat_template
    assert "<|im_start|>" in tokenizer.chat_template
    text = original.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    assert tokenizer(text)["input_ids"] == original(text)["input_ids"]
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.padding_side) == (
        "<|im_end|>",
        "<|im_end|>",
        "right",
    )


@pytest.mark.slow
def test_second_load_reads_the_cache(monkeypatch):
    weights = smollm_dir() / "model.safetensors"
    written = weights.stat().st_mtime_ns

    def no_conversion(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(models, "_convert_gguf", no_conversion)
    started = time.monotonic()
    model, _ = load_base_model(SMOLLM, cache_dir=str(session_cache_dir()))
    assert time.monotonic() - started < 10  # the GGUF reader alone takes ~15-20 s
    assert weights.stat().st_mtime_ns == written
    assert model.config.num_hidden_layers == 30


@pytest.mark.slow
def test_smollm_as_classifier_gets_a_score_head():
    model, tokenizer = load_base_model(
        SMOLLM,
        "sequence_classification",
        label_names=["no", "yes"],
        cache_dir=str(session_cache_dir()),
    )
    assert tuple(model.score.weight.shape) == (2, 576)
    assert model.config.pad_token_id == tokenizer.pad_token_id == 2


@pytest.mark.slow
def test_minilm_gets_a_seeded_classifier_head_of_the_right_size():
    names = ["business", "sports", "tech"]
    model, tokenizer = load_base_model(MINILM, "sequence_classification", label_names=names)
    assert (model.classifier.in_features, model.classifier.out_features) == (384, 3)
    assert model.config.id2label == {0: "business", 1: "sports", 2: "tech"}
    assert model.config.label2id == {"business": 0, "sports": 1, "tech": 2}
    assert model.config.problem_type == "single_label_classification"
    with safe_open(bundled_path(MINILM) / "model.safetensors", "pt") as weights:
        key = next(k for k in weights.keys() if k.endswith("query.weight"))  # noqa: SIM118
        layer = model.bert.get_submodule(key.removeprefix("bert.").removesuffix(".weight"))
        assert torch.equal(layer.weight, weights.get_tensor(key))
    again, _ = load_base_model(MINILM, "sequence_classification", label_names=names)
    other, _ = load_base_model(MINILM, "sequence_classification", label_names=names, seed=1)
    assert torch.equal(model.classifier.weight, again.classifier.weight)
    assert not torch.equal(model.classifier.weight, other.classifier.weight)
    batch = tokenizer(["a match", "a merger"], padding=True, return_tensors="pt")
    loss = model(**batch, labels=torch.tensor([1, 0])).loss
    assert torch.isfinite(loss) and 0.5 < loss.item() < 2.0  # about ln 3 for a fresh head
