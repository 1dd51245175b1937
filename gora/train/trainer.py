"""The transformers side of the recipe: a thin Trainer subclass and the bridge to TrainingCallbacks.

Everything that touches transformers' Trainer internals lives here, so that a change in transformers
is a change in one file. Overridden hooks are the documented ones ("subclass and override"):
``create_optimizer``, ``training_step`` and ``log``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch
from transformers import Trainer, TrainerCallback
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from gora.train.accuracy import IGNORE_INDEX, AccuracyTally, accuracy_of
from gora.train.config import TrainingConfig
from gora.train.events import (
    CheckpointSaved,
    DivergenceGuard,
    EvalResult,
    Metrics,
    Progress,
    TrainingCallbacks,
    TrainingDiverged,
    TrainingWarning,
)
from gora.train.optim import build_optimizer, parameter_role

TRAINED_TOKENS = "trained_tokens"
ACCURACY = "mean_token_accuracy"  # OpenAI's name; per example for a classification head
EVAL_ACCURACY = "eval_mean_token_accuracy"
# Metrics a run may log besides its loss: our field in Metrics/EvalResult -> the Trainer's log key
# (DPO's reward metrics are TRL's; see gora.train.preference).
WINDOWED = {
    "accuracy": ACCURACY,
    "reward_margin": "rewards/margins",
    "reward_accuracy": "rewards/accuracies",
}


def count_trained_tokens(inputs: dict[str, Any]) -> torch.Tensor:
    """Tokens the loss is computed on in one micro-batch, as a 0-d tensor on the batch's device.

    Token-level labels (causal LM): label positions other than -100 after the causal shift (the first
    position is never a target). Sequence-level labels (classification): the input tokens, i.e. the
    attention mask's ones (all input ids when there is no mask). A tensor, not an int: reading it
    would make the host wait for the device at every micro-batch; it is read once per logged step.
    """
    if "completion_mask" in inputs:  # preference pairs: the answers' tokens, chosen and rejected
        return inputs["completion_mask"].sum()
    labels, input_ids = inputs.get("labels"), inputs.get("input_ids")
    if labels is not None and input_ids is not None and labels.shape == input_ids.shape:
        return (labels[..., 1:] != IGNORE_INDEX).sum()
    mask = inputs.get("attention_mask")
    if mask is not None:
        return mask.sum()
    return torch.tensor(input_ids.numel() if input_ids is not None else 0)


def loss_normalises_over_accumulation(model: torch.nn.Module) -> bool:
    """Whether the model's loss honours ``num_items_in_batch`` (token-normalised over all micro-batches).

    True for causal LMs. Classification heads (BERT, GenericForSequenceClassification) accept
    ``**kwargs`` but drop ``num_items_in_batch`` and return a per-micro-batch mean; the Trainer then
    skips its division by the accumulation steps and the gradient comes out ``grad_accum_steps`` times
    too large (transformers issue #47688). For those we let the Trainer divide instead.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return type(base).__name__ in set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())


class RecipeTrainer(Trainer):
    """Trainer with our optimizer groups, and a trained-token count and the accuracy in every log.

    ``parameter_role`` decides each trainable parameter's learning-rate group; a caller may replace
    it after ``TrainingRecipe.setup()`` and before training (the benchmark's non-LoRA baselines do).
    """

    parameter_role = staticmethod(parameter_role)

    def __init__(self, *args: Any, recipe_config: TrainingConfig, **kwargs: Any):
        self.recipe_config = recipe_config
        self.trained_tokens = (
            0  # all ranks, since step 0 (a resumed run starts from the checkpoint's)
        )
        self._pending_tokens: torch.Tensor | None = None  # this rank, since the last log
        self._accuracy = {True: AccuracyTally(), False: AccuracyTally()}  # by model.training
        super().__init__(*args, **kwargs)
        if not loss_normalises_over_accumulation(self.model):
            self.model_accepts_loss_kwargs = False

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        # Built here rather than passed in through `optimizers=`: the Trainer calls this after it has
        # placed (and, under FSDP, wrapped) the model, so the groups hold the parameters it trains.
        if self.optimizer is None:
            target = model if model is not None else self.model
            self.optimizer = build_optimizer(target, self.recipe_config, self.parameter_role)
        return self.optimizer

    def training_step(self, model, inputs, num_items_in_batch=None):  # type: ignore[override]
        tokens = count_trained_tokens(inputs)
        pending = self._pending_tokens
        self._pending_tokens = tokens if pending is None else pending + tokens.to(pending.device)
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[override]
        labels = inputs.get("labels")
        loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        logits = outputs.get("logits") if isinstance(outputs, dict) else None
        self._accuracy[model.training].add(logits, labels)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            tokens, accuracy = self._drain(training=True)
            self.trained_tokens += tokens
            # Stored in the log history, hence in every checkpoint's trainer_state.json: a resumed run
            # continues the count from there.
            logs[TRAINED_TOKENS] = self.trained_tokens
            if accuracy is not None:
                logs[ACCURACY] = accuracy
        elif "eval_loss" in logs:
            _, accuracy = self._drain(training=False)
            if accuracy is not None:
                logs[EVAL_ACCURACY] = accuracy
        super().log(logs, start_time)

    def _drain(self, training: bool) -> tuple[int, float | None]:
        """Trained tokens (training logs only) and accuracy since the last log, over all ranks."""
        device = self.args.device
        pending = self._pending_tokens if training else None
        if training:
            self._pending_tokens = None
        tokens = torch.zeros(1, device=device) if pending is None else pending.reshape(1)
        totals = torch.cat([tokens.to(device).float(), self._accuracy[training].drain(device)])
        if self.args.world_size > 1:  # every rank logs the same steps, so this collective is safe
            totals = self.accelerator.reduce(totals, reduction="sum")
        return int(totals[0]), accuracy_of(totals[1:])


def _any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is True on any (rank 0 decides on a cancel; all must stop)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


class CallbackBridge(TrainerCallback):
    """Turns Trainer events into TrainingCallbacks calls, runs the divergence guard and the cancel poll."""

    def __init__(
        self, trainer: RecipeTrainer, callbacks: TrainingCallbacks, config: TrainingConfig
    ):
        self.trainer, self.callbacks, self.config = trainer, callbacks, config
        self.guard = DivergenceGuard(
            config.divergence_warn_ratio, config.divergence_stop_ratio, config.divergence_window
        )
        self.cancelled = False
        self._window: list[float] = []
        self._window_extra: dict[str, list[float]] = {}  # WINDOWED's fields, per logged step
        self._window_start = (0.0, 0)  # (time, trained tokens) at the start of the metrics window
        self._last: dict[str, Any] = {}

    def _emit(self, state, method: str, event: Any) -> None:
        if state.is_world_process_zero:
            getattr(self.callbacks, method)(event)

    def on_train_begin(self, args, state, control, **kwargs):
        history = [entry for entry in state.log_history if "loss" in entry]
        for entry in history:  # a resumed run: the guard and the token count continue
            self.guard.observe(float(entry["loss"]))
        if history:
            self.trainer.trained_tokens = int(history[-1].get(TRAINED_TOKENS, 0))
        self._window_start = (time.perf_counter(), self.trainer.trained_tokens)

    def on_step_end(self, args, state, control, **kwargs):
        self._emit(state, "on_progress", Progress(state.global_step, state.max_steps, state.epoch))
        wants_stop = state.is_world_process_zero and self.callbacks.should_stop()
        if _any_rank(wants_stop, args.device):
            self.cancelled = True
            control.should_training_stop = True
            # Every rank saves alike (rank 0 decides): the Trainer checkpoints before it stops.
            wants_checkpoint = state.is_world_process_zero and self.callbacks.checkpoint_on_stop()
            if _any_rank(wants_checkpoint, args.device):
                control.should_save = True
        elif control.should_save and self.trainer.eval_dataset is not None:
            # Every checkpoint carries its validation metrics (the Trainer evaluates before it
            # saves); a pause's checkpoint does not wait for an evaluation.
            control.should_evaluate = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "eval_loss" in logs:
            extra = {field: logs.get(f"eval_{key}") for field, key in WINDOWED.items()}
            result = EvalResult(state.global_step, float(logs["eval_loss"]), **extra)
            self._emit(state, "on_eval", result)
        if "loss" not in logs:
            return
        loss = float(logs["loss"])
        self._window.append(loss)
        for field, key in WINDOWED.items():
            if key in logs:
                self._window_extra.setdefault(field, []).append(float(logs[key]))
        self._last = {"lr": logs.get("learning_rate", 0.0), "grad_norm": logs.get("grad_norm")}
        if self.config.detect_divergence:
            self._check_divergence(state, loss)
        last_step = state.global_step >= state.max_steps
        if state.global_step % self.config.log_every == 0 or last_step:
            self._report_metrics(state)

    def on_save(self, args, state, control, **kwargs):
        path = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
        self._emit(state, "on_checkpoint", CheckpointSaved(path, state.global_step))

    def on_train_end(self, args, state, control, **kwargs):
        if self._window:  # a cancelled run ends between two reports
            self._report_metrics(state)

    def _check_divergence(self, state, loss: float) -> None:
        verdict = self.guard.observe(loss)
        if verdict.warn:
            warning = TrainingWarning(state.global_step, "loss_diverging", verdict.warn)
            self._emit(state, "on_warning", warning)
        if verdict.stop:
            raise TrainingDiverged(state.global_step, loss, verdict.stop)

    def _report_metrics(self, state) -> None:
        now, tokens = time.perf_counter(), self.trainer.trained_tokens
        start_time, start_tokens = self._window_start
        elapsed = max(now - start_time, 1e-9)
        grad_norm = self._last.get("grad_norm")
        extra = {field: sum(values) / len(values) for field, values in self._window_extra.items()}
        metrics = Metrics(
            step=state.global_step,
            epoch=float(state.epoch or 0.0),
            loss=sum(self._window) / len(self._window),
            learning_rate=self._base_learning_rate(float(self._last.get("lr", 0.0))),
            tokens_per_second=(tokens - start_tokens) / elapsed,
            trained_tokens=tokens,
            grad_norm=None if grad_norm is None else float(grad_norm),
            **extra,
        )
        self._window, self._window_extra = [], {}
        self._window_start = (now, tokens)
        self._emit(state, "on_metrics", metrics)

    def _base_learning_rate(self, first_group_lr: float) -> float:
        # The Trainer logs the first group's rate; our groups say their ratio to the base rate.
        optimizer = self.trainer.optimizer
        ratio = optimizer.param_groups[0].get("lr_ratio", 1.0) if optimizer is not None else 1.0
        return first_group_lr / ratio
