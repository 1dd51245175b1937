"""The recipe's hooks into a running job: probe progress, training callbacks, reference outputs."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from gora.train import TrainingCallbacks
from service.core.storage import Storage
from worker import artifacts
from worker.reporting import JobReporter


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


class JobCallbacks(TrainingCallbacks):
    """The recipe's events, written to the database and the store as they happen."""

    def __init__(self, job_id: str, reporter: JobReporter, storage: Storage):
        self.job_id, self.reporter, self.storage = job_id, reporter, storage
        self.last_metrics: dict[str, Any] = {}

    def on_metrics(self, metrics) -> None:
        values = dataclasses.asdict(metrics)
        values["tokens_per_s"] = values.pop("tokens_per_second")
        self.last_metrics = values
        self.reporter.metrics(values)

    def on_checkpoint(self, saved) -> None:
        if not self.reporter.holds():  # taken back: the worker that runs it now owns its files
            return
        key = artifacts.checkpoint_key(self.job_id, saved.step)
        artifacts.upload_dir(self.storage, Path(saved.path), key)
        metrics = {k: self.last_metrics.get(k) for k in ("loss", "trained_tokens")}
        self.reporter.checkpoint(saved.step, key, metrics)

    def on_eval(self, result) -> None:
        self.reporter.event(
            f"Step {result.step}: validation loss={result.eval_loss:.4f}",
            type="metrics",
            step=result.step,
            valid_loss=result.eval_loss,
        )

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
