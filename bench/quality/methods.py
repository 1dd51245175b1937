"""Each benchmarked method as "a trainable model over a fresh base", at LoRA r_ref's budget.

GoRA and plain LoRA go through ``gora.get_gora_model`` (so they differ only in what GoRA changes);
PEFT's peers are built with PEFT's own API on the same exact target modules. Every method then
trains with the same recipe (``gora.train``'s ``TrainingRecipe``: LoRA+ 16x, head 16x, cosine), so
the comparison is initialisation and rank allocation, not optimiser settings. Two methods need more
from the recipe, and get it through its documented hooks rather than a loop of their own:
AdaLoRA's rank update after every optimizer step (a transformers callback), and full fine-tuning's
learning-rate groups (the pretrained weights at the base rate, the head at 16x).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from peft import (
    AdaLoraConfig,
    EvaConfig,
    LoraConfig,
    LoraGAConfig,
    get_peft_model,
    initialize_lora_eva_weights,
)
from peft.tuners.lora.loraga import preprocess_loraga
from transformers import TrainerCallback

from bench.quality.settings import TaskSettings
from gora import GoraConfig, get_gora_model, load_base_model
from gora.adapters import infer_task_type
from gora.data.loading import make_batches
from gora.targets import resolve_targets
from gora.train.optim import BASE, HEAD, LORA_A, parameter_role

# Why a method is not run on a task: shown by the runner and in docs/benchmarks.md.
SKIPPED = {
    ("arithmetic", "full"): "the issue asks for full fine-tuning as the ceiling of R8 only",
}


@dataclass
class BuiltModel:
    model: Any
    tokenizer: Any
    init_s: float  # probing / preprocessing / SVD time before training (0 for LoRA)
    allocation: dict[str, Any] | None = None  # GoRA's report
    # The optimizer's role of each parameter name (gora.train.optim), when the default does not fit.
    parameter_role: Callable[[str], str] = parameter_role
    trainer_callbacks: list[TrainerCallback] = field(default_factory=list)


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
    if method == "lora_rslora":  # diagnostic: GoRA's α/√r scaling alone (every rank r_ref, B = 0)
        fixed = {**common, "probe_steps": 1}  # the probe decides nothing here: keep it short
        return GoraConfig(
            type="gora", gamma=0.0, r_min=settings.r_ref, r_max=settings.r_ref, **fixed
        )
    raise ValueError(f"{method!r} is not a GoRA/LoRA method")


def _targets(settings: TaskSettings) -> str | list[str]:
    return settings.targets if isinstance(settings.targets, str) else list(settings.targets)


GORA_PATH = ("lora", "gora", "gora_gamma0", "gora_fixed_rank", "lora_rslora")


def build(method, settings, base, tokenizer, seed, train_ds, collator) -> BuiltModel:
    """``base`` fresh from ``load_base``; ``train_ds`` gives the probe / preprocessing batches."""
    if (settings.task, method) in SKIPPED:
        raise NotImplementedError(f"{method}: {SKIPPED[settings.task, method]}")
    torch.manual_seed(seed)
    batches = make_batches(train_ds, collator, settings.batch_size, seed=seed)
    started = time.perf_counter()
    if method in GORA_PATH:
        model = get_gora_model(base, gora_config(method, settings, seed), batches)
        report = model.gora_report
        init_s = report.probe.get("seconds", 0.0) if report.probe else 0.0
        allocation = report.to_dict() if method not in ("lora", "lora_rslora") else None
        return BuiltModel(model, tokenizer, init_s, allocation)
    if method == "full":
        return BuiltModel(base, tokenizer, 0.0, parameter_role=_full_finetuning_role)
    if method == "adalora":
        steps = _training_steps(len(train_ds), settings)
        model = get_peft_model(base, _adalora_config(base, settings, steps))
        return BuiltModel(
            model,
            tokenizer,
            0.0,
            parameter_role=_adalora_role,
            trainer_callbacks=[AdaLoraRankUpdate(model)],
        )
    model = _build_peer(method, base, settings, batches)
    return BuiltModel(model, tokenizer, time.perf_counter() - started)


def _training_steps(n_rows: int, settings: TaskSettings) -> int:
    return math.ceil(settings.n_epochs * math.ceil(n_rows / settings.batch_size))


def _full_finetuning_role(name: str) -> str:
    """Every pretrained weight at the base rate; the new classifier head at the head rate."""
    return HEAD if name.startswith(("classifier.", "score.")) else BASE


def _adalora_role(name: str) -> str:
    # AdaLoRA's singular values (lora_E, r x 1, zero at start) go with A, as PEFT's own LoRA+
    # optimizer (create_loraplus_optimizer) places them; B stays at 16x.
    return LORA_A if ".lora_E." in name else parameter_role(name)


def _adalora_config(base, settings: TaskSettings, steps: int) -> AdaLoraConfig:
    """Starts at rank 1.5 r_ref and prunes to an average of r_ref: LoRA's budget once pruned.

    The schedule keeps PEFT's example proportions (warm-up 10 %, final phase 30 % of the steps).
    """
    return AdaLoraConfig(
        init_r=settings.r_ref * 3 // 2,
        target_r=settings.r_ref,
        tinit=max(1, steps // 10),
        tfinal=max(1, steps * 3 // 10),
        deltaT=max(1, steps // 25),
        total_step=steps,
        lora_alpha=settings.alpha,
        target_modules=sorted(resolve_targets(base, _targets(settings))),
        task_type=infer_task_type(base),
    )


class AdaLoraRankUpdate(TrainerCallback):
    """AdaLoRA's budget step, after each optimizer step and before the gradients are zeroed."""

    def __init__(self, model) -> None:
        self.model = model

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.model.base_model.update_and_allocate(state.global_step)


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
    """Parameters that train; for AdaLoRA, those of the ranks its budget kept (its rank pattern)."""
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    config = getattr(model, "peft_config", {}).get("default")
    pattern = getattr(config, "rank_pattern", None) if isinstance(config, AdaLoraConfig) else None
    if not pattern:  # not AdaLoRA, or its budget has not pruned yet
        return total
    shapes = {
        name.removeprefix("base_model.model."): p.shape for name, p in model.named_parameters()
    }
    for name, kept in pattern.items():
        d_in = shapes[name.replace("lora_E", "lora_A")][1]
        d_out = shapes[name.replace("lora_E", "lora_B")][0]
        total -= kept.count(False) * (d_in + d_out + 1)  # a row of A, a column of B, its value
    return total
