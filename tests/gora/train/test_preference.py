"""Preference tuning (DPO): the encoding of pairs, the probe of DPO's loss, and TRL's trainer in the recipe.

A tiny seeded Llama over SmolLM2's tokenizer (its chat template renders the pairs), so the math runs
in seconds; the service test (tests/worker/test_dpo.py) runs the bundled model end to end.
"""

from __future__ import annotations

import math

import pytest
import torch
from peft import PeftModel
from transformers import LlamaForCausalLM

from gora import GoraConfig, get_gora_model, save_adapter
from gora.adapters import target_layers
from gora.data.encoding import build_dataset
from gora.data.formats import DataFormatError
from gora.data.loading import make_batches
from gora.data.preference import preference_collator
from gora.probe import probe_gradients
from gora.train import TrainingCallbacks, TrainingConfig, train
from gora.train.preference import REFERENCE_ADAPTER, completion_logps, dpo_probe_loss
from tests.helpers.models import smollm_tokenizer, tiny_llama_config

pytestmark = pytest.mark.slow  # SmolLM2's tokenizer: the bundled model's GGUF, converted once
BETA = 0.5


def pair(question: str, good: str, bad: str) -> dict:
    return {
        "input": {"messages": [{"role": "user", "content": question}]},
        "preferred_output": [{"role": "assistant", "content": good}],
        "non_preferred_output": [{"role": "assistant", "content": bad}],
    }


ROWS = [pair(f"What is {a}+{b}?", str(a + b), "I do not know") for a in range(2, 6) for b in (1, 2)]


@pytest.fixture(scope="module")
def tokenizer():
    return smollm_tokenizer()


@pytest.fixture(scope="module")
def dataset(tokenizer):
    encoded, _ = build_dataset(ROWS, "preference", tokenizer, "causal_lm", 128)
    return encoded


def tiny_base(tokenizer, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(
        tiny_llama_config(vocab_size=len(tokenizer), max_position_embeddings=128)
    )


def mean_margin(model, dataset, collator) -> float:
    """Mean log π(chosen) − log π(rejected) over the pairs."""
    batch = collator([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        chosen, rejected = completion_logps(model, batch).chunk(2)
    return float((chosen - rejected).mean())


def test_a_pair_encodes_as_prompt_and_two_answers(tokenizer):
    encoded, stats = build_dataset(ROWS[:1], "preference", tokenizer, "causal_lm", 128)
    example = encoded[0]
    assert tokenizer.decode(example["prompt_ids"]).endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(example["chosen_ids"]) == "3<|im_end|>"
    assert tokenizer.decode(example["rejected_ids"]) == "I do not know<|im_end|>"
    assert stats.trained_tokens == len(example["chosen_ids"]) + len(example["rejected_ids"])


def test_a_prompt_longer_than_max_length_drops_the_pair(tokenizer):
    long = pair("word " * 200, "yes", "no")
    encoded, stats = build_dataset([ROWS[0], long], "preference", tokenizer, "causal_lm", 64)
    assert len(encoded) == 1 and stats.dropped == 1 and stats.dropped_lines == [2]


def test_preference_rows_need_a_causal_lm(tokenizer):
    with pytest.raises(ValueError, match="causal LM"):
        build_dataset(ROWS, "preference", tokenizer, "sequence_classification", 64)
    with pytest.raises(DataFormatError, match="line 1"):
        build_dataset([{"text": "x"}], "preference", tokenizer, "causal_lm", 64)


def test_the_probe_measures_the_gradient_dpo_starts_from(tokenizer, dataset):
    """At the probe the model is its own reference, so ∂L/∂W = −β/2 · ∂(log π(c) − log π(r))/∂W."""
    base = tiny_base(tokenizer)
    collator = preference_collator(tokenizer.pad_token_id)
    cfg = GoraConfig(r_ref=4, probe_steps=2)
    names = list(target_layers(base, cfg))
    batches = list(make_batches(dataset, collator, 4, seed=0))[:2]
    probe = probe_gradients(base, names, batches, 2, loss_fn=dpo_probe_loss(BETA))
    assert probe.mean_loss == pytest.approx(math.log(2))

    modules = dict(base.named_modules())
    weights = [modules[name].weight for name in names]
    expected = [torch.zeros_like(w) for w in weights]
    for batch in batches:
        chosen, rejected = completion_logps(base, batch).chunk(2)
        grads = torch.autograd.grad((chosen - rejected).mean(), weights)
        for total, grad in zip(expected, grads, strict=True):
            total += -BETA / 2 * grad / len(batches)
    for name, want in zip(names, expected, strict=True):
        assert torch.allclose(probe.gradients[name], want, atol=1e-6, rtol=1e-4), name


class Recorder(TrainingCallbacks):
    def __init__(self):
        self.metrics, self.evals = [], []

    def on_metrics(self, metrics):
        self.metrics.append(metrics)

    def on_eval(self, result):
        self.evals.append(result)


def dpo_config(**overrides) -> TrainingConfig:
    values = dict(
        objective="dpo",
        beta=BETA,
        learning_rate=5e-3,
        n_epochs=6,
        batch_size=4,
        log_every=2,
        eval_every=6,
        warmup_ratio=0.0,
    )
    return TrainingConfig(**{**values, **overrides}).resolve(
        adapter_type="lora", task="causal_lm", n_examples=len(ROWS)
    )


@pytest.mark.parametrize("adapter_type", ["lora", "gora"])
def test_dpo_training_prefers_the_chosen_answers_more_than_the_base(
    tokenizer, dataset, adapter_type, tmp_path
):
    base = tiny_base(tokenizer)
    collator = preference_collator(tokenizer.pad_token_id)
    cfg = GoraConfig(type=adapter_type, r_ref=4, probe_steps=2)
    probe = None
    if cfg.is_gora:
        batches = make_batches(dataset, collator, 4, seed=0)
        probe = probe_gradients(
            base, target_layers(base, cfg), batches, 2, loss_fn=dpo_probe_loss(BETA)
        )
    model = get_gora_model(base, cfg, probe=probe)
    with model.disable_adapter():
        base_margin = mean_margin(model, dataset, collator)
    recorder = Recorder()
    result = train(
        model, dataset, collator, dpo_config(), recorder, dataset, processing_class=tokenizer
    )

    # The first step's loss: ln 2 when the policy starts at its reference (LoRA's B = 0); below it
    # for GoRA, whose init is one descent step of the loss its probe measured.
    if adapter_type == "lora":
        assert result.losses[0] == pytest.approx(math.log(2), abs=1e-6)
    else:
        assert result.losses[0] < math.log(2)
    assert mean_margin(model, dataset, collator) > base_margin + 0.5
    last = recorder.metrics[-1]
    assert last.reward_accuracy is not None and last.reward_accuracy > 0.5
    assert last.reward_margin > 0 and last.trained_tokens > 0
    assert recorder.evals and recorder.evals[-1].reward_accuracy is not None
    # The reference adapter is gone after training: the export holds the policy alone.
    assert list(model.peft_config) == ["default"]
    out = save_adapter(model, tmp_path / "adapter")
    assert not (out / REFERENCE_ADAPTER).exists()
    reloaded = PeftModel.from_pretrained(tiny_base(tokenizer), str(out))
    assert mean_margin(reloaded, dataset, collator) == pytest.approx(
        mean_margin(model, dataset, collator), abs=1e-4
    )


def perturbed_lora(tokenizer):
    """A LoRA model whose adapter is not the base (B != 0), and its adapter's state dict."""
    model = get_gora_model(tiny_base(tokenizer), GoraConfig(type="lora", r_ref=4))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05, generator=torch.Generator().manual_seed(3))
    state = {
        k.replace(".default", ""): v.detach().clone()
        for k, v in model.state_dict().items()
        if "lora_" in k
    }
    return model, state


@pytest.mark.parametrize("reference", ["start", "base"])
def test_the_reference_adapter_is_the_one_given(tokenizer, dataset, reference):
    """From an adapter already trained (SFT → DPO), the reference is that adapter: the first step
    sees log-ratios of zero. Given other weights (here the base's: B = 0), those are the reference,
    whatever the policy starts from (a resumed job's policy is its checkpoint)."""
    collator = preference_collator(tokenizer.pad_token_id)
    model, start = perturbed_lora(tokenizer)
    given = start
    if reference == "base":
        given = {k: torch.zeros_like(v) if "lora_B" in k else v for k, v in start.items()}
    config = dpo_config(n_epochs=1, eval_every=None)
    result = train(
        model, dataset, collator, config, processing_class=tokenizer, reference_adapter=given
    )
    if reference == "start":
        assert result.losses[0] == pytest.approx(math.log(2), abs=1e-5)
    else:
        assert abs(result.losses[0] - math.log(2)) > 1e-3
    trained = {k.replace(".default", ""): v for k, v in model.state_dict().items() if "lora_B" in k}
    assert any(not torch.equal(v, start[k]) for k, v in trained.items()), "the policy trained"
