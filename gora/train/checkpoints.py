"""Checkpoints on disk: find them, and rebuild a trainable model from one to resume a job.

A checkpoint is the Trainer's ``<output_dir>/checkpoint-<step>/``: the adapter in PEFT format
(``adapter_model.safetensors``, ``adapter_config.json``), ``optimizer.pt``, ``scheduler.pt``,
``rng_state.pth`` and ``trainer_state.json`` (step, per-step losses, trained tokens).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoint directories under ``output_dir``, oldest (lowest step) first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _CHECKPOINT.match(child.name)
        # trainer_state.json is written last: a directory without it is a save that did not finish.
        if match and child.is_dir() and (child / "trainer_state.json").is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def load_trainable_adapter(base_model: torch.nn.Module, checkpoint: str | Path):
    """The PeftModel to resume from ``checkpoint``: the untouched base with the saved adapter, trainable.

    Use this (not a fresh ``get_gora_model``) when resuming a GoRA job: the checkpoint carries the
    per-layer ranks, so no probe is repeated and the adapter shapes match the optimizer state exactly.
    """
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, str(checkpoint), is_trainable=True)
