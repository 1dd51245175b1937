"""The recipe's hooks into a running job: probe progress, training callbacks, reference outputs."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from gora.export import FORMATS as ADAPTER_FORMATS
from gora.export import save_adapter
from gora.train import TrainingCallbacks
from service.core.storage import Storage, checkpoint_adapter_key
from worker import artifacts
from worker.reporting import JobReporter, reward_summary


def probe_with_progress(batches: Iterable[Any], steps: int, reporter: JobReporter) -> Iterator[Any]:
    """The probe's batches, with an event every quarter of the probe (progress while probing)."""
    every = max(1, steps // 4)
    for index, batch in enumerate(batches):
        if index < steps and (index + 1) % every == 0:
            reporter.event(f"Probing gradients: batch {index + 1}/{steps}", step=index + 1)
        yield batch


def rank_batches(batches: Iterable[Any], steps: int, rank: int, world: int) -> Iterable[Any]:
    """This rank's share of the probe: batches rank, rank + world, … of the single-process sequence,
    ``ceil(steps / world)`` of them. gora averages the per-rank means, so with ``steps`` a multiple
    of ``world`` the probe (hence the allocation) is the single-process one, over the same batches."""
    if world <= 1:
        return batches
    per_rank = math.ceil(steps / world)
    return itertools.islice(batches, rank, rank + per_rank * world, world)


class StepPace:
    """When training should end, from this attempt's measured time per step (wall clock: the
    estimate is a date). The first step is left out of the pace: it holds one-off warm-up."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._first: tuple[float, int] | None = None  # (time, step) at the first step seen
        self._last = (0.0, 0, 0)  # (time, step, total steps)

    def observe(self, step: int, total_steps: int) -> None:
        now = self.clock()
        if self._first is None:
            self._first = (now, step)
        self._last = (now, step, total_steps)

    def estimated_finish(self) -> datetime | None:
        if self._first is None:
            return None
        (start, first_step), (now, step, total) = self._first, self._last
        if step <= first_step:
            return None
        per_step = (now - start) / (step - first_step)
        return datetime.fromtimestamp(now + per_step * max(total - step, 0), UTC)


class JobCallbacks(TrainingCallbacks):
    """The recipe's events, written to the database and the store as they happen.

    ``model`` is the adapter model being trained: each checkpoint's adapter is exported from it in
    both download formats, so a checkpoint is usable like a finished job's adapter.
    """

    def __init__(
        self, job_id: str, reporter: JobReporter, storage: Storage, model, export_dir: Path
    ):
        self.job_id, self.reporter, self.storage = job_id, reporter, storage
        self.model, self.export_dir = model, export_dir
        self.last_metrics: dict[str, Any] = {}
        self.last_eval: dict[str, Any] = {}
        self.pace = StepPace()

    def on_progress(self, progress) -> None:
        self.pace.observe(progress.step, progress.total_steps)

    def on_metrics(self, metrics) -> None:
        values = dataclasses.asdict(metrics)
        values["tokens_per_s"] = values.pop("tokens_per_second")
        for key in ("reward_margin", "reward_accuracy"):  # DPO runs only
            if values[key] is None:
                del values[key]
        self.last_metrics = values
        self.reporter.metrics(values, estimated_finish=self.pace.estimated_finish())

    def on_checkpoint(self, saved) -> None:
        if not self.reporter.holds():  # taken back: the worker that runs it now owns its files
            return
        key = artifacts.checkpoint_key(self.job_id, saved.step)
        artifacts.upload_dir(self.storage, Path(saved.path), key)
        self._export_adapters(saved.step)
        self.reporter.checkpoint(saved.step, key, self.checkpoint_metrics(saved.step))

    def checkpoint_metrics(self, step: int) -> dict[str, Any]:
        """OpenAI's checkpoint metrics (the latest report and evaluation at or before ``step``),
        plus the trained tokens; a value the run has not measured is left out."""
        train, valid = self.last_metrics, self.last_eval
        values = {
            "step": step,
            "train_loss": train.get("loss"),
            "train_mean_token_accuracy": train.get("accuracy"),
            "valid_loss": valid.get("valid_loss"),
            "valid_mean_token_accuracy": valid.get("valid_mean_token_accuracy"),
            "trained_tokens": train.get("trained_tokens"),
        }
        return {k: v for k, v in values.items() if v is not None}

    def _export_adapters(self, step: int) -> None:
        for adapter_format in ADAPTER_FORMATS:
            local = save_adapter(
                self.model, self.export_dir / f"step-{step}" / adapter_format, adapter_format
            )
            key = checkpoint_adapter_key(self.job_id, step, adapter_format)
            artifacts.upload_dir(self.storage, local, key)

    def on_eval(self, result) -> None:
        values = {"step": result.step, "valid_loss": result.eval_loss}
        optional = {
            "valid_mean_token_accuracy": result.accuracy,
            "valid_reward_margin": result.reward_margin,
            "valid_reward_accuracy": result.reward_accuracy,
        }
        values.update({k: v for k, v in optional.items() if v is not None})
        self.last_eval = values
        message = f"Step {result.step}: validation loss={result.eval_loss:.4f}"
        message += reward_summary(result.reward_margin, result.reward_accuracy)
        self.reporter.event(message, type="metrics", **values)

    def on_warning(self, warning) -> None:
        self.reporter.event(warning.message, level="warn", code=warning.code, step=warning.step)

    def should_stop(self) -> bool:
        return self.reporter.should_stop()

    def checkpoint_on_stop(self) -> bool:
        return self.reporter.pausing()


def reference_outputs(model, dataset, collator) -> dict[str, Any]:
    """The adapter model's logits on the first training row, for checking a downloaded adapter."""
    batch = collator([dataset[0]])
    batch.pop("labels", None)
    batch.pop("completion_mask", None)  # a preference pair: its chosen sequence comes first
    device = next(model.parameters()).device  # the GPU a single-process job trained on, say
    model.eval()
    with torch.no_grad():
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits[0].float().cpu()
    last = logits[-1] if logits.dim() == 2 else logits
    return {
        "input_ids": batch["input_ids"][0].tolist(),
        "logits": last.tolist(),  # the last position (causal LM) or the class scores
        "sha256": hashlib.sha256(last.numpy().tobytes()).hexdigest(),
    }
