"""The training recipe: setup / train / save / cleanup over transformers' Trainer.

Why the Trainer and not a loop of our own: the worker needs checkpoints that resume a crashed job
exactly (optimizer, scheduler, RNG and data position), gradient accumulation with the loss normalised
over the whole accumulated batch, bf16 autocast, and torchrun/accelerate multi-GPU. The Trainer has
all of these, tested across many models; our own loop would re-implement each and be less tested.
What we add is small: the optimizer groups (``optim.py``), a trained-token count, the bridge to
``TrainingCallbacks`` with the divergence guard and the cancel flag (``trainer.py``), and two fixes of
Trainer defaults that would bite us (per-step NaN filtering, and classification heads under gradient
accumulation; see docs/training.md, "Gotchas").
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from gora.train.checkpoints import list_checkpoints
from gora.train.config import AUTO, TrainingConfig
from gora.train.events import TrainingCallbacks
from gora.train.optim import schedule_arguments, total_optimizer_steps
from gora.train.trainer import TRAINED_TOKENS, CallbackBridge, RecipeTrainer


@dataclass
class TrainingResult:
    steps: int  # optimizer steps reached (a resumed run counts the steps before the resume)
    total_steps: int  # steps the schedule was planned for
    trained_tokens: int  # tokens the loss covered (see count_trained_tokens), resumed runs included
    final_loss: float | None  # mean loss over the last log_every steps
    losses: list[float]  # loss of every optimizer step, from step 1 (also before a resume)
    wall_time_s: float  # this call only
    cancelled: bool
    checkpoints: list[str] = field(default_factory=list)  # on disk at the end, oldest first
    eval_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, eval loss)


def resolve_bf16(setting: bool | str) -> bool:
    """``"auto"``: bf16 autocast only on a CUDA device that supports it (never on CPU)."""
    supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if setting == AUTO:
        return supported
    if setting and not supported:
        raise ValueError(
            "TrainingConfig.bf16 is True but this machine has no CUDA device with bf16 support; "
            "use 'auto' or False"
        )
    return bool(setting)


def _world_size() -> int:
    # torchrun and accelerate launch export WORLD_SIZE; a plain process is a world of one.
    return int(os.environ.get("WORLD_SIZE", "1"))


class TrainingRecipe:
    """One training run. ``setup()`` once, then ``train()``, optionally ``save()``, then ``cleanup()``.

    ``train()`` (the module function) does all four; use the class to reach the Trainer or the
    optimizer between the steps (tests do).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        train_dataset: Dataset,
        collator: Any,
        config: TrainingConfig,
        callbacks: TrainingCallbacks | None = None,
        eval_dataset: Dataset | None = None,
        *,
        processing_class: Any = None,
        reference_adapter: dict[str, torch.Tensor] | None = None,
    ):
        self.model, self.train_dataset, self.collator = model, train_dataset, collator
        self.config, self.eval_dataset = config, eval_dataset
        # DPO only: the tokenizer (TRL's trainer requires one) and the reference adapter's weights
        # (None: the base; see gora.train.preference).
        self.processing_class, self.reference_adapter = processing_class, reference_adapter
        self.callbacks = callbacks or TrainingCallbacks()
        self.trainer: RecipeTrainer | None = None
        self.bridge: CallbackBridge | None = None
        self._temp_dir: str | None = None
        self._restore: dict[str, Any] = {}

    # -- setup ----------------------------------------------------------------------------------
    def setup(self) -> None:
        self.config.require_resolved()
        if self.config.eval_every and self.eval_dataset is None:
            raise ValueError("TrainingConfig.eval_every is set but no eval_dataset was given")
        n_examples = len(self.train_dataset)
        self.total_steps = total_optimizer_steps(n_examples, self.config, _world_size())
        self._remember_model_state()
        trainer_class, objective_kwargs = self._trainer_class()
        self.trainer = trainer_class(
            model=self.model,
            args=self._training_arguments(),
            train_dataset=self.train_dataset,
            eval_dataset=self.eval_dataset,
            data_collator=self.collator,
            recipe_config=self.config,
            **objective_kwargs,
        )
        for quiet in (PrinterCallback, ProgressCallback):  # the worker reports progress itself
            self.trainer.remove_callback(quiet)
        self.bridge = CallbackBridge(self.trainer, self.callbacks, self.config)
        self.trainer.add_callback(self.bridge)

    def _trainer_class(self) -> tuple[type[RecipeTrainer], dict[str, Any]]:
        if self.config.objective != "dpo":
            return RecipeTrainer, {}
        if self.processing_class is None:
            raise ValueError(
                "TrainingConfig.objective 'dpo' needs processing_class (the tokenizer)"
            )
        from gora.train.preference import PreferenceTrainer  # imports TRL: only for DPO runs

        return PreferenceTrainer, {
            "processing_class": self.processing_class,
            "reference_adapter": self.reference_adapter,
        }

    def _output_dir(self) -> str:
        if self.config.output_dir is not None:
            return str(self.config.output_dir)
        self._temp_dir = tempfile.mkdtemp(prefix="gora-train-")
        return self._temp_dir

    def _training_arguments(self) -> TrainingArguments:
        cfg = self.config
        checkpoints = cfg.checkpoint_every > 0
        evaluates = cfg.eval_every is not None and self.eval_dataset is not None
        arguments_class, objective_arguments = TrainingArguments, {}
        if cfg.objective == "dpo":
            from trl import DPOConfig

            arguments_class = DPOConfig
            objective_arguments = {
                "beta": float(cfg.beta),
                "max_length": None,  # rows arrive cut to max_seq_length (gora.data.preference)
                "activation_checkpointing": False,  # TRL's default; ours trains as SFT runs do
            }
        return arguments_class(
            **objective_arguments,
            output_dir=self._output_dir(),
            per_device_train_batch_size=int(cfg.batch_size),
            per_device_eval_batch_size=int(cfg.batch_size),
            gradient_accumulation_steps=cfg.grad_accum_steps,
            max_steps=self.total_steps,
            # Informational: our parameter groups carry their own rates.
            learning_rate=float(cfg.learning_rate),
            weight_decay=cfg.weight_decay,
            max_grad_norm=cfg.max_grad_norm,
            **schedule_arguments(cfg),
            bf16=resolve_bf16(cfg.bf16),
            seed=cfg.seed,
            # Every step is logged: the divergence guard needs each loss, and the Trainer would
            # otherwise replace a NaN loss by the running mean (logging_nan_inf_filter) and hide it.
            logging_strategy="steps",
            logging_steps=1,
            logging_nan_inf_filter=False,
            save_strategy="steps" if checkpoints else "no",
            save_steps=cfg.checkpoint_every if checkpoints else 500,
            save_total_limit=cfg.keep_checkpoints,
            eval_strategy="steps" if evaluates else "no",
            eval_steps=cfg.eval_every if evaluates else None,
            prediction_loss_only=True,
            remove_unused_columns=False,  # our datasets hold exactly what the model takes
            dataloader_pin_memory=torch.cuda.is_available(),
            report_to="none",
            disable_tqdm=True,
            # Every trainable parameter (LoRA A/B of each wrapped layer, a head) takes part in every
            # forward pass, so DDP need not search the graph for unused ones each step.
            ddp_find_unused_parameters=False,
        )

    def _remember_model_state(self) -> None:
        # The Trainer sets config.use_cache = False and leaves the model in train mode; both are
        # restored in cleanup() so that generation after training behaves as before.
        config = getattr(self.model, "config", None)
        self._restore = {
            "use_cache": getattr(config, "use_cache", None),
            "training": self.model.training,
        }

    # -- train ----------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | Path | None = None) -> TrainingResult:
        if self.trainer is None or self.bridge is None:
            raise RuntimeError("call setup() before train()")
        start = time.perf_counter()
        resume = str(resume_from_checkpoint) if resume_from_checkpoint is not None else None
        self.trainer.train(resume_from_checkpoint=resume)
        state = self.trainer.state
        evaluated = [entry["step"] for entry in state.log_history if "eval_loss" in entry]
        final_eval = self.eval_dataset is not None and evaluated[-1:] != [state.global_step]
        if final_eval and not self.bridge.cancelled:
            self.trainer.evaluate()  # the end is always evaluated; the bridge reports it
        return self._result(time.perf_counter() - start)

    def _result(self, wall_time_s: float) -> TrainingResult:
        state = self.trainer.state
        history = [entry for entry in state.log_history if "loss" in entry]
        losses = [float(entry["loss"]) for entry in history]
        tail = losses[-self.config.log_every :]
        evals = [
            (int(e["step"]), float(e["eval_loss"])) for e in state.log_history if "eval_loss" in e
        ]
        keep_files = self._temp_dir is None
        return TrainingResult(
            steps=state.global_step,
            total_steps=state.max_steps,
            trained_tokens=int(history[-1].get(TRAINED_TOKENS, 0)) if history else 0,
            final_loss=sum(tail) / len(tail) if tail else None,
            losses=losses,
            wall_time_s=wall_time_s,
            cancelled=self.bridge.cancelled,
            checkpoints=[str(p) for p in list_checkpoints(self.trainer.args.output_dir)]
            if keep_files
            else [],
            eval_losses=evals,
        )

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        return None if self.trainer is None else self.trainer.optimizer

    # -- save -----------------------------------------------------------------------------------
    def save(self, out_dir: str | Path) -> Path:
        """Writes the trained adapter in PEFT format (``gora.save_adapter`` adds the GoRA report)."""
        out = Path(out_dir)
        self.model.save_pretrained(out)
        return out

    # -- cleanup --------------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Releases the Trainer, optimizer state and device memory; restores the model's settings."""
        if self.config.objective == "dpo":
            from gora.train.preference import drop_reference

            drop_reference(self.model)
        config = getattr(self.model, "config", None)
        if config is not None and self._restore.get("use_cache") is not None:
            config.use_cache = self._restore["use_cache"]
        if "training" in self._restore:
            self.model.train(self._restore["training"])
        if self.trainer is not None:
            self.trainer.accelerator.free_memory()
            self.trainer.optimizer = self.trainer.lr_scheduler = None
        self.trainer = self.bridge = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None


def train(
    model: torch.nn.Module,
    train_dataset: Dataset,
    collator: Any,
    config: TrainingConfig,
    callbacks: TrainingCallbacks | None = None,
    eval_dataset: Dataset | None = None,
    resume_from_checkpoint: str | Path | None = None,
    **objective_kwargs: Any,
) -> TrainingResult:
    """Trains the adapter of ``model`` (a peft.PeftModel) in place and returns what happened.

    ``config`` must be resolved (no "auto"; see ``TrainingConfig.resolve``). Raises
    ``TrainingDiverged`` when the loss explodes; returns with ``cancelled=True`` when
    ``callbacks.should_stop()`` said so. A DPO run (``config.objective="dpo"``) also takes
    ``processing_class`` and ``reference_adapter`` (see ``TrainingRecipe``).
    """
    recipe = TrainingRecipe(
        model, train_dataset, collator, config, callbacks, eval_dataset, **objective_kwargs
    )
    recipe.setup()
    try:
        return recipe.train(resume_from_checkpoint)
    finally:
        recipe.cleanup()
