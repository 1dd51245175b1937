"""The optimizer: AdamW with a learning-rate group per parameter role (LoRA A, LoRA B, head).

- LoRA A at the base rate, LoRA B at ``lr_ratio_b`` times it (LoRA+, Hayou et al. 2024; the GoRA paper's
  scripts use 16).
- Every other trainable parameter (a classifier head, ``modules_to_save``) at ``head_lr_ratio`` times
  the base rate: a freshly initialised head learns from scratch and needs a higher rate (measured: 16x).

``peft.optimizers.create_loraplus_optimizer`` is not used: it puts 2-D head weights in the A group and
1-D head biases in the B group, so a classifier head would train at two unrelated rates.
A fourth role, ``base`` (pretrained weights at the base rate), is never assigned by ``parameter_role``;
it exists for callers that pass their own role function, such as a full fine-tuning baseline.
The schedule (linear warm-up, cosine decay to ``min_lr_ratio`` times the peak) is transformers'
``cosine_with_min_lr``, built by the Trainer from the arguments ``schedule_arguments`` returns; it
scales every group by the same factor, so the ratios between groups hold at every step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import torch

from gora.train.config import TrainingConfig

LORA_A, LORA_B, BASE, HEAD = "lora_A", "lora_B", "base", "head"
_A_NAME = re.compile(r"(^|\.)lora_(embedding_)?A(\.|$)")
_B_NAME = re.compile(r"(^|\.)lora_(embedding_)?B(\.|$)")


def parameter_role(name: str) -> str:
    """``lora_A``, ``lora_B`` or ``head`` (any other trainable parameter), from the PEFT name."""
    if _A_NAME.search(name):
        return LORA_A
    if _B_NAME.search(name):
        return LORA_B
    return HEAD


def lr_ratios(config: TrainingConfig) -> dict[str, float]:
    return {
        LORA_A: 1.0,
        LORA_B: float(config.lr_ratio_b),
        BASE: 1.0,
        HEAD: float(config.head_lr_ratio),
    }


RoleOf = Callable[[str], str]


def build_param_groups(
    model: torch.nn.Module, config: TrainingConfig, role_of: RoleOf = parameter_role
) -> list[dict[str, Any]]:
    """One group per role that has trainable parameters, in the order A, B, base, head.

    Each group carries its ``name`` and ``lr_ratio`` (to the base rate) next to what AdamW reads.
    A comes first on purpose: the Trainer reports the first group's rate as "the" learning rate.
    ``role_of`` maps a parameter name to a role (default: ``parameter_role``).
    """
    config.require_resolved()
    by_role: dict[str, list[torch.nn.Parameter]] = {LORA_A: [], LORA_B: [], BASE: [], HEAD: []}
    for name, param in model.named_parameters():
        if param.requires_grad:
            by_role[role_of(name)].append(param)
    if not (by_role[LORA_A] or by_role[LORA_B] or by_role[BASE]):
        raise ValueError(
            "the model has no trainable LoRA parameters (names with lora_A / lora_B); "
            "pass the peft.PeftModel that get_gora_model or get_peft_model returned"
        )
    ratios = lr_ratios(config)
    return [
        {
            "name": role,
            "params": params,
            "lr": float(config.learning_rate) * ratios[role],
            "lr_ratio": ratios[role],
            "weight_decay": config.weight_decay,
        }
        for role, params in by_role.items()
        if params
    ]


def build_optimizer(
    model: torch.nn.Module, config: TrainingConfig, role_of: RoleOf = parameter_role
) -> torch.optim.AdamW:
    """AdamW over ``build_param_groups``, with torch's default betas and eps (as the Trainer's)."""
    groups = build_param_groups(model, config, role_of)
    return torch.optim.AdamW(groups, lr=float(config.learning_rate))


def schedule_arguments(config: TrainingConfig) -> dict[str, Any]:
    """The TrainingArguments fields that make the Trainer build our schedule."""
    return {
        "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": {"min_lr_rate": config.min_lr_ratio},
        # A float in [0, 1) is a ratio of the total steps; the Trainer rounds it up.
        "warmup_steps": config.warmup_ratio,
    }


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """Warm-up steps as the Trainer counts them (``ceil(total * ratio)``)."""
    return math.ceil(total_steps * warmup_ratio)


def total_optimizer_steps(
    n_examples: int, config: TrainingConfig, world_size: int = 1, drop_last: bool = False
) -> int:
    """Optimizer steps the run will take: ``n_epochs`` passes, capped by ``max_steps``.

    Mirrors the Trainer's count: batches per device per epoch, then ceil over accumulation.
    """
    config.require_resolved()
    per_batch = int(config.batch_size) * world_size
    batches = n_examples // per_batch if drop_last else math.ceil(n_examples / per_batch)
    steps_per_epoch = max(1, math.ceil(batches / config.grad_accum_steps))
    total = math.ceil(float(config.n_epochs) * steps_per_epoch)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    return max(1, total)
