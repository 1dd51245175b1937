"""The training recipe (gora-spec.md §4): LoRA+ groups, cosine schedule with warm-up, accumulation,
bf16 where supported, checkpoints that resume exactly, callbacks for the worker, a divergence guard.

    from gora.train import TrainingConfig, train
    config = TrainingConfig(output_dir="run", checkpoint_every=100).resolve(
        adapter_type="gora", task="causal_lm", n_examples=len(dataset))
    result = train(peft_model, dataset, collator, config, callbacks=my_callbacks)

See docs/training.md for the defaults, their sources, and why this runs on transformers' Trainer.
"""

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
