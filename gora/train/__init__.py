"""The training recipe (gora-spec.md §4): LoRA+ groups, cosine schedule with warm-up, accumulation,
bf16 where supported, checkpoints that resume exactly, callbacks for the worker, a divergence guard.

    from gora.train import TrainingConfig, train
    config = TrainingConfig(output_dir="run", checkpoint_every=100).resolve(
        adapter_type="gora", task="causal_lm", n_examples=len(dataset))
    result = train(peft_model, dataset, collator, config, callbacks=my_callbacks)

See docs/training.md for the defaults, their sources, and why this runs on transformers' Trainer.

The names are imported lazily (as in ``gora/__init__``) so that ``gora.train.config`` and
``gora.train.defaults`` stay torch-free: the service resolves "auto" hyperparameters with the same
documented defaults the recipe uses.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "latest_checkpoint": "gora.train.checkpoints",
    "list_checkpoints": "gora.train.checkpoints",
    "load_trainable_adapter": "gora.train.checkpoints",
    "TrainingConfig": "gora.train.config",
    "default_batch_size": "gora.train.defaults",
    "default_learning_rate": "gora.train.defaults",
    "default_n_epochs": "gora.train.defaults",
    "CheckpointSaved": "gora.train.events",
    "EvalResult": "gora.train.events",
    "Metrics": "gora.train.events",
    "Progress": "gora.train.events",
    "TrainingCallbacks": "gora.train.events",
    "TrainingDiverged": "gora.train.events",
    "TrainingWarning": "gora.train.events",
    "build_optimizer": "gora.train.optim",
    "build_param_groups": "gora.train.optim",
    "parameter_role": "gora.train.optim",
    "TrainingRecipe": "gora.train.recipe",
    "TrainingResult": "gora.train.recipe",
    "resolve_bf16": "gora.train.recipe",
    "train": "gora.train.recipe",
}

__all__ = [
    "CheckpointSaved",
    "EvalResult",
    "Metrics",
    "Progress",
    "TrainingCallbacks",
    "TrainingConfig",
    "TrainingDiverged",
    "TrainingRecipe",
    "TrainingResult",
    "TrainingWarning",
    "build_optimizer",
    "build_param_groups",
    "default_batch_size",
    "default_learning_rate",
    "default_n_epochs",
    "latest_checkpoint",
    "list_checkpoints",
    "load_trainable_adapter",
    "parameter_role",
    "resolve_bf16",
    "train",
]

if TYPE_CHECKING:  # pragma: no cover
    from gora.train.checkpoints import latest_checkpoint, list_checkpoints, load_trainable_adapter
    from gora.train.config import TrainingConfig
    from gora.train.defaults import default_batch_size, default_learning_rate, default_n_epochs
    from gora.train.events import (
        CheckpointSaved,
        EvalResult,
        Metrics,
        Progress,
        TrainingCallbacks,
        TrainingDiverged,
        TrainingWarning,
    )
    from gora.train.optim import build_optimizer, build_param_groups, parameter_role
    from gora.train.recipe import TrainingRecipe, TrainingResult, resolve_bf16, train


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'gora.train' has no attribute {name!r}")
