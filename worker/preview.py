"""What a dry run reports instead of training: the adapter's size against LoRA's, the data's tokens,
the steps the run would take, and how long they would take at the throughput this pool measured
for this model in earlier jobs."""

from __future__ import annotations

import dataclasses
from typing import Any

from gora.data.encoding import EncodingStats
from gora.train import TrainingConfig
from gora.train.optim import total_optimizer_steps


def dry_run_preview(
    model,
    stats: EncodingStats,
    config: TrainingConfig,
    task: str,
    throughput: tuple[float, int] | None,
    world: int = 1,
) -> dict[str, Any]:
    """``throughput``: (median trained tokens per second, how many reports it is the median of)."""
    report = model.gora_report
    steps = total_optimizer_steps(stats.examples, config, world)
    one_pass = dataclasses.replace(config, n_epochs=1, max_steps=None)
    steps_per_epoch = total_optimizer_steps(stats.examples, one_pass, world)
    # What the trainer counts: labelled tokens for a causal LM, input tokens for a classifier.
    tokens_per_epoch = stats.trained_tokens if task == "causal_lm" else stats.tokens
    tokens = round(tokens_per_epoch * steps / steps_per_epoch)
    tokens_per_s, reports = throughput or (None, 0)
    return {
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "adapter_params": report.totals.allocated,
        "lora_params_at_r_ref": report.totals.budget,
        "examples": stats.examples,
        "tokens_per_epoch": tokens_per_epoch,
        "trained_tokens": tokens,
        "steps": steps,
        "estimated_duration_s": round(tokens / tokens_per_s, 1) if tokens_per_s else None,
        "throughput": {"tokens_per_s": tokens_per_s, "measured_reports": reports},
        "probe": report.probe,
    }


def describe(preview: dict[str, Any]) -> str:
    duration = preview["estimated_duration_s"]
    eta = (
        f"about {duration:.0f} s of training at this pool's measured throughput"
        if duration is not None
        else "no estimate yet (no earlier job of this model on this pool)"
    )
    return (
        f"Dry run done: {preview['adapter_params']:,} adapter parameters "
        f"(LoRA at r_ref: {preview['lora_params_at_r_ref']:,}), {preview['trained_tokens']:,} "
        f"tokens in {preview['steps']} steps; {eta}"
    )
