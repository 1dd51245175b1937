"""Each benchmarked method as "a trainable PeftModel over a fresh base", at LoRA r_ref's budget.

GoRA and plain LoRA go through ``gora.get_gora_model`` (so they differ only in what GoRA changes);
PEFT's peers are built with PEFT's own API on the same exact target modules. Every method then
trains with the same recipe (``gora.train``: LoRA+ 16x, head 16x, cosine), so the comparison is
initialisation and rank allocation, not optimiser settings.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from peft import EvaConfig, LoraConfig, LoraGAConfig, get_peft_model, initialize_lora_eva_weights
from peft.tuners.lora.loraga import preprocess_loraga

from bench.quality.settings import TaskSettings
from gora import GoraConfig, get_gora_model, load_base_model
from gora.adapters import infer_task_type
from gora.data.loading import make_batches
from gora.targets import resolve_targets

# Why a peer is not run: shown by the runner and in docs/benchmarks.md.
SKIPPED = {
    "adalora": "needs update_and_allocate() between backward and zero_grad on every step; the shared "
    "recipe (gora.train, on transformers' Trainer) has no hook there, so it could not train under "
    "the same recipe as the others",
    "full": "gora.train refuses a model without LoRA parameters (by design: it builds LoRA+ groups); "
    "a separate loop would not be the same recipe",
}


@dataclass
class BuiltModel:
    model: Any
    tokenizer: Any
    init_s: float  # probing / preprocessing / SVD time before training (0 for LoRA)
    allocation: dict[str, Any] | None = None  # GoRA's report
    extra: dict[str, Any] = field(default_factory=dict)


def load_base(settings: TaskSettings, labels: list[str], seed: int):
    if settings.hf_task == "sequence_classification":
        return load_base_model(settings.model, settings.hf_task, label_names=labels, seed=seed)
    return load_base_model(settings.model, settings.hf_task, seed=seed)


def gora_config(method: str, settings: TaskSettings, seed: int) -> GoraConfig:
    common = {
        "r_ref": settings.r_ref,
        "alpha": settings.alpha,
        "target_modules": _targets(settings),
        "probe_steps": settings.probe_steps,
        "seed": seed,
    }
    if method == "lora":
        return GoraConfig(type="lora", **common)
    if method == "gora":
        return GoraConfig(type="gora", **common)
    if method == "gora_gamma0":  # allocation only: B = 0
        return GoraConfig(type="gora", gamma=0.0, **common)
    if method == "gora_fixed_rank":  # initialisation only: every rank r_ref
        return GoraConfig(type="gora", r_min=settings.r_ref, r_max=settings.r_ref, **common)
    raise ValueError(f"{method!r} is not a GoRA/LoRA method")


def _targets(settings: TaskSettings) -> str | list[str]:
    return settings.targets if isinstance(settings.targets, str) else list(settings.targets)


def build(method, settings, base, tokenizer, seed, train_ds, collator) -> BuiltModel:
    """``base`` fresh from ``load_base``; ``train_ds`` gives the probe / preprocessing batches."""
    if method in SKIPPED:
        raise NotImplementedError(f"{method}: {SKIPPED[method]}")
    torch.manual_seed(seed)
    batches = make_batches(train_ds, collator, settings.batch_size, seed=seed)
    started = time.perf_counter()
    if method in ("lora", "gora", "gora_gamma0", "gora_fixed_rank"):
        model = get_gora_model(base, gora_config(method, settings, seed), batches)
        report = model.gora_report
        init_s = report.probe.get("seconds", 0.0) if report.probe else 0.0
        allocation = report.to_dict() if method != "lora" else None
        return BuiltModel(model, tokenizer, init_s, allocation)
    model = _build_peer(method, base, settings, batches)
    return BuiltModel(model, tokenizer, time.perf_counter() - started)


def _peer_config(method: str, base, settings: TaskSettings) -> LoraConfig:
    names = sorted(resolve_targets(base, _targets(settings)))
    init = {
        "pissa": "pissa_niter_4",  # fast randomised SVD, PEFT's recommended form
        "lora_ga": "lora_ga",
        "eva": "eva",
    }[method]
    extra: dict[str, Any] = {}
    if method == "lora_ga":
        extra["lora_ga_config"] = LoraGAConfig()
    if method == "eva":
        # rho = 1: no rank redistribution, so EVA stays exactly at LoRA's parameter budget.
        # Class labels are one per row, not per token: EVA's token mask must not read them.
        per_token_labels = settings.hf_task == "causal_lm"
        extra["eva_config"] = EvaConfig(rho=1.0, use_label_mask=per_token_labels)
    return LoraConfig(
        r=settings.r_ref,
        lora_alpha=settings.alpha,
        target_modules=names,
        init_lora_weights=init,
        task_type=infer_task_type(base),
        **extra,
    )


def _build_peer(method: str, base, settings: TaskSettings, batches):
    config = _peer_config(method, base, settings)
    if method == "lora_ga":
        preprocess_loraga(base, config, _gradient_steps(base, batches, settings.probe_steps))
        return get_peft_model(base, config)
    if method == "eva":
        model = get_peft_model(base, config, low_cpu_mem_usage=True)
        probe = list(itertools.islice(batches, settings.probe_steps))
        initialize_lora_eva_weights(
            model, probe, prepare_layer_inputs_fn=_eva_layer_inputs, show_progress_bar=False
        )
        return model
    return get_peft_model(base, config)


def _eva_layer_inputs(layer_input, token_index, layer_name: str) -> torch.Tensor:
    """PEFT's token selection, except for 2-D inputs (BERT's pooler sees one vector per row)."""
    if isinstance(layer_input, tuple | list):
        layer_input = layer_input[0]
    if layer_input.dim() == 2:
        return layer_input.contiguous()  # a strided slice of the sequence; EVA views it
    return layer_input[token_index.T.unbind()]


def _gradient_steps(base, batches, steps: int):
    """LoRA-GA's train_step: forward/backward over the same number of batches as GoRA's probe."""

    def train_step() -> None:
        for batch in itertools.islice(batches, steps):
            with torch.enable_grad():
                base(**batch).loss.backward()

    return train_step


def trainable_params(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
