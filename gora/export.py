"""Saving adapters (gora-spec.md §5): PEFT's own format, and a uniform-rank one for servers that ignore
per-module ranks or scaling.

``format="peft"``: ``model.save_pretrained`` — ``adapter_model.safetensors`` and ``adapter_config.json``
(with ``rank_pattern``, ``use_rslora``, ``init_lora_weights: true``) — plus ``gora_allocation.json``.

A classification adapter also carries the base model's ``config.json``, whose ``id2label`` and
``label2id`` name its outputs (``AutoConfig.from_pretrained(adapter_dir).id2label``); the allocation
report's ``config`` holds the same two maps.

``format="uniform"``: every module's scaling ``s_i`` folded into ``B_i``, every module zero-padded to the
largest rank used ``R``, and ``r = lora_alpha = R`` without rsLoRA, so each server computes scaling 1 and
``B'A' = s_i B_i A_i``: the same outputs (the padded rows and columns contribute exact zeros).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file

from gora.adapters import ADAPTER_NAME, class_labels
from gora.report import REPORT_FILENAME

FORMATS = ("peft", "uniform")
WEIGHTS_FILENAME = "adapter_model.safetensors"
CONFIG_FILENAME = "adapter_config.json"


def lora_layers(model: PeftModel) -> dict[str, LoraLayer]:
    """The LoRA-wrapped modules by their name in the base model."""
    root = model.base_model.model
    return {
        name: module
        for name, module in root.named_modules()
        if isinstance(module, LoraLayer) and ADAPTER_NAME in module.lora_A
    }


def _write_report(model: PeftModel, out_dir: Path) -> None:
    report = getattr(model, "gora_report", None)
    if report is None:
        return
    with open(out_dir / REPORT_FILENAME, "w") as handle:
        json.dump(report.to_dict(), handle, indent=2)


def _uniform_state_dict(model: PeftModel) -> tuple[dict[str, torch.Tensor], int]:
    """PEFT's saved state dict with each module's scaling folded into B and ranks padded to one R."""
    state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
    layers = lora_layers(model)
    padded_rank = max(layer.r[ADAPTER_NAME] for layer in layers.values())
    for name, layer in layers.items():
        key = f"base_model.model.{name}"
        a = state[f"{key}.lora_A.weight"].float()
        b = state[f"{key}.lora_B.weight"].float() * layer.scaling[ADAPTER_NAME]
        rank = a.shape[0]
        state[f"{key}.lora_A.weight"] = torch.nn.functional.pad(a, (0, 0, 0, padded_rank - rank))
        state[f"{key}.lora_B.weight"] = torch.nn.functional.pad(b, (0, padded_rank - rank))
    return {k: v.contiguous() for k, v in state.items()}, padded_rank


def _save_uniform(model: PeftModel, out_dir: Path) -> None:
    state, padded_rank = _uniform_state_dict(model)
    config = model.peft_config[ADAPTER_NAME].to_dict()
    config.update(
        r=padded_rank,
        lora_alpha=padded_rank,
        use_rslora=False,
        rank_pattern={},
        alpha_pattern={},
        init_lora_weights=True,
    )
    for key in ("target_modules", "exclude_modules", "modules_to_save"):
        if isinstance(config.get(key), set):
            config[key] = sorted(config[key])
    save_file(state, str(out_dir / WEIGHTS_FILENAME), metadata={"format": "pt"})
    with open(out_dir / CONFIG_FILENAME, "w") as handle:
        json.dump(config, handle, indent=2, sort_keys=True)


def save_adapter(model: PeftModel, out_dir: str | os.PathLike, format: str = "peft") -> Path:
    """Writes the adapter and its allocation report into ``out_dir``; returns the directory."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if format == "peft":
        model.save_pretrained(out)
    else:
        _save_uniform(model, out)
    _write_report(model, out)
    _write_labels(model, out)
    return out


def _write_labels(model: PeftModel, out_dir: Path) -> None:
    base = model.get_base_model()
    if class_labels(base) is not None:
        base.config.save_pretrained(out_dir)  # config.json: transformers' place for label names
