"""``get_gora_model``: probe → allocate → init, and a PEFT model that trains like LoRA (gora-spec.md §1-3, §5).

The adapters are built by PEFT (``LoraConfig`` with a per-module ``rank_pattern``, ``use_rslora=True``,
``init_lora_weights=True``) and only then overwritten with GoRA's A and B, so the saved adapter is an
ordinary LoRA adapter over the untouched base model: PEFT and vLLM load it with no custom code.
``type="lora"`` goes through the same path with every rank at ``r_ref``, PEFT's usual ``α / r`` scaling
and ``B = 0``, so comparisons are like for like.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from gora import distributed
from gora.allocation import allocate_ranks
from gora.config import GoraConfig
from gora.importance import layer_importance
from gora.initialization import gora_init, kaiming_a, layer_generator
from gora.model_registry import CAUSAL_LM, SEQUENCE_CLASSIFICATION, task_of_architecture
from gora.probe import ProbeResult, probe_gradients
from gora.report import AllocationReport, build_report
from gora.targets import resolve_targets
from gora.validation import ConfigError

ADAPTER_NAME = "default"


# PEFT's name of each task: it decides what PEFT trains besides LoRA (a classifier head).
_PEFT_TASK_TYPE = {CAUSAL_LM: "CAUSAL_LM", SEQUENCE_CLASSIFICATION: "SEQ_CLS"}


def infer_task_type(model: nn.Module) -> str | None:
    """PEFT's task type from the transformers class name."""
    return _PEFT_TASK_TYPE.get(task_of_architecture(type(model).__name__) or "")


def class_labels(model: nn.Module) -> dict[str, dict] | None:
    """A classification model's label names both ways (``id2label`` with string ids, as in
    transformers' config.json); None for other tasks."""
    if task_of_architecture(type(model).__name__) != SEQUENCE_CLASSIFICATION:
        return None
    config = model.config
    return {
        "id2label": {str(i): name for i, name in sorted(config.id2label.items())},
        "label2id": {name: int(i) for name, i in config.label2id.items()},
    }


def build_lora_config(
    cfg: GoraConfig, ranks: Mapping[str, int], task_type: str | None
) -> LoraConfig:
    """A LoraConfig with one exact entry per targeted module; rank-0 modules are excluded."""
    trained = [n for n, r in ranks.items() if r > 0]
    if not trained:
        raise ConfigError(
            "GoraConfig", "r_min", "every target layer was allocated rank 0; raise r_min above 0"
        )
    # The most common rank is the config's ``r``; only the others need a rank_pattern entry.
    default_rank = Counter(ranks[n] for n in trained).most_common(1)[0][0]
    return LoraConfig(
        r=default_rank,
        lora_alpha=cfg.alpha,
        target_modules=trained,
        exclude_modules=[n for n, r in ranks.items() if r == 0] or None,
        rank_pattern={n: ranks[n] for n in trained if ranks[n] != default_rank},
        use_rslora=cfg.is_gora,
        init_lora_weights=True,
        lora_dropout=cfg.lora_dropout,
        modules_to_save=cfg.modules_to_save,
        task_type=task_type,
    )


def _allocate(
    base, cfg, shapes, batches, probe: ProbeResult | None
) -> tuple[dict[str, int], AllocationReport, ProbeResult | None]:
    if not cfg.is_gora:
        ranks = {name: cfg.r_ref for name in shapes}
        return ranks, build_report(cfg.type, shapes, ranks, cfg.to_dict()), None
    started = time.perf_counter()
    if probe is None:
        if batches is None:
            raise ValueError("GoRA needs training batches to probe gradients; pass batches=...")
        probe = probe_gradients(base, shapes, batches, cfg.probe_steps)
    elif set(probe.gradients) != set(shapes):
        raise ValueError("the given probe holds other layers than cfg.target_modules resolves to")
    modules = dict(base.named_modules())
    importances = {
        name: layer_importance(modules[name].weight, probe.gradients[name], cfg.importance)
        for name in shapes
    }
    # Rank 0 decides, every rank follows: identical adapters even if float sums differ by a bit.
    ranks = distributed.broadcast_object(allocate_ranks(importances, shapes, cfg))
    importances = distributed.broadcast_object(importances)
    probe_info = {
        "steps": probe.steps,
        "samples": probe.samples,
        "mean_loss": probe.mean_loss,
        "seconds": round(time.perf_counter() - started, 3),
    }
    report = build_report(cfg.type, shapes, ranks, cfg.to_dict(), importances, probe_info)
    return ranks, report, probe


def _initial_weights(cfg, name, rank, d_in, probe) -> tuple[torch.Tensor, torch.Tensor | None]:
    if probe is None:  # plain LoRA: PEFT's A distribution, B stays zero
        return kaiming_a(rank, d_in, layer_generator(cfg.seed, name)), None
    return gora_init(
        probe.gradients[name],
        rank,
        gamma=cfg.gamma,
        alpha=cfg.alpha,
        seed=cfg.seed,
        layer_name=name,
    )


@torch.no_grad()
def _write_adapters(model: PeftModel, cfg, ranks, shapes, probe: ProbeResult | None) -> None:
    root = model.base_model.model
    for name, rank in ranks.items():
        if rank == 0:
            continue
        layer = root.get_submodule(name)
        a, b = _initial_weights(cfg, name, rank, shapes[name][1], probe)
        lora_a = layer.lora_A[ADAPTER_NAME].weight
        lora_a.copy_(distributed.broadcast_(a.to(lora_a.device)))
        if b is not None:
            lora_b = layer.lora_B[ADAPTER_NAME].weight
            lora_b.copy_(distributed.broadcast_(b.to(lora_b.device)))


def target_layers(base: nn.Module, cfg: GoraConfig) -> dict[str, tuple[int, int]]:
    """The layers ``cfg`` adapts, with their (d_out, d_in): what a probe must cover."""
    return resolve_targets(base, cfg.target_modules, cfg.modules_to_save)


def get_gora_model(
    base: nn.Module,
    cfg: GoraConfig,
    batches: Iterable[Mapping] | None = None,
    *,
    task_type: str | None = None,
    probe: ProbeResult | None = None,
) -> PeftModel:
    """Probes ``base`` on ``batches`` (GoRA only), allocates ranks, and returns the initialised PeftModel.

    ``batches`` yields dicts that ``base(**batch)`` accepts and whose output has ``.loss``; the first
    ``cfg.probe_steps`` are used. ``probe``, instead of batches: an earlier ``probe_gradients`` of
    this base over ``target_layers(base, cfg)`` (a γ or r_ref sweep probes once). The base weights are
    never modified. The allocation report is kept on the returned model as ``model.gora_report``
    (written by ``save_adapter``).
    """
    shapes = target_layers(base, cfg)
    ranks, report, probe = _allocate(base, cfg, shapes, batches, probe)
    lora_config = build_lora_config(cfg, ranks, task_type or infer_task_type(base))
    model = get_peft_model(base, lora_config)
    _write_adapters(model, cfg, ranks, shapes, probe)
    # Without the names, a downloaded classifier's outputs are bare indices.
    report.config.update(class_labels(base) or {})
    model.gora_report = report
    return model
