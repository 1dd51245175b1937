"""One job's run inside the child process: load -> probe -> allocate -> init -> train -> export.

Everything here is ``gora/`` called with the job's stored spec; what is the worker's own is where the
results go (``JobReporter`` for the database, ``artifacts`` for the store) and which failures are the
submitter's (``JobUserError`` with a code and the field to fix).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gora import GoraConfig, get_gora_model, load_base_model
from gora.data.encoding import build_dataset
from gora.data.formats import DataFormatError, read_jsonl_lines
from gora.data.loading import make_batches
from gora.model_registry import ModelLoadError
from gora.train import TrainingCallbacks, TrainingConfig
from service.core.jobs.lifecycle import ErrorCode, JobPhase
from service.core.storage import Storage, job_key
from worker import artifacts
from worker.errors import JobUserError
from worker.reporting import JobReporter

REFERENCE_OUTPUTS = "reference_outputs.json"


@dataclass
class JobPlan:
    """What the child needs from the job row, read once at start."""

    job_id: str
    model_source: dict[str, Any]
    task: str
    training_key: str
    validation_key: str | None
    hyperparameters: dict[str, Any]
    adapter: dict[str, Any]
    seed: int
    models_dir: str


@dataclass
class Workspace:
    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def metrics_file(self) -> Path:
        return self.root / "metrics.jsonl"


def model_path(plan: JobPlan) -> str:
    source = plan.model_source
    if source["kind"] == "models_dir":  # stored by relative name; each host mounts its own
        return os.path.join(plan.models_dir, source["name"])
    return source["name"]


def load_model(plan: JobPlan, label_names: list[str] | None):
    try:
        return load_base_model(model_path(plan), plan.task, label_names=label_names, seed=plan.seed)
    except ModelLoadError as exc:
        raise JobUserError(
            ErrorCode.USER_MODEL_NOT_LOADABLE,
            f"model {plan.model_source['name']!r} could not be loaded: {exc}. Use a model listed "
            "by GET /v1/models",
            "model",
        ) from exc


def read_rows(storage: Storage, key: str, work: Workspace, param: str):
    local = artifacts.download_file(storage, key, work.root / "data" / key.replace("/", "_"))
    try:
        return read_jsonl_lines(str(local))
    except DataFormatError as exc:
        raise JobUserError(ErrorCode.USER_BAD_DATA, f"{param}: {exc}", param) from exc


def encode(plan: JobPlan, rows, fmt, lines, tokenizer, label2id, param: str):
    max_length = plan.hyperparameters["max_seq_length"]
    try:
        dataset, stats = build_dataset(
            rows, fmt, tokenizer, plan.task, max_length, label2id, line_numbers=lines
        )
    except (DataFormatError, ValueError) as exc:
        raise JobUserError(ErrorCode.USER_BAD_DATA, f"{param}: {exc}", param) from exc
    if len(dataset) == 0:
        raise JobUserError(
            ErrorCode.USER_BAD_DATA,
            f"{param} has no usable row: all {len(rows)} rows lose every trained token when cut "
            f"to max_seq_length={max_length}; raise hyperparameters.max_seq_length or shorten "
            "the prompts",
            param,
        )
    return dataset, stats


def probe_with_progress(batches, steps: int, reporter: JobReporter):
    """The probe's batches, with an event every quarter of the probe (progress while probing)."""
    every = max(1, steps // 4)
    for index, batch in enumerate(batches):
        if index < steps and (index + 1) % every == 0:
            reporter.event(f"Probing gradients: batch {index + 1}/{steps}", step=index + 1)
        yield batch


def batch_split(hyperparameters: dict[str, Any]) -> tuple[int, int]:
    """(micro-batch, accumulation steps) of the job's effective batch; rows stored before the service
    split the batch carry only ``batch_size``, which then runs as one micro-batch."""
    micro = hyperparameters.get("micro_batch_size", hyperparameters["batch_size"])
    return micro, hyperparameters.get("grad_accum_steps", 1)


def rank_batches(batches, steps: int, rank: int, world: int):
    """This rank's share of the probe: batches rank, rank + world, … of the single-process sequence,
    ``ceil(steps / world)`` of them. gora averages the per-rank means, so with ``steps`` a multiple
    of ``world`` the probe (hence the allocation) is the single-process one, over the same batches."""
    if world <= 1:
        return batches
    per_rank = math.ceil(steps / world)
    return itertools.islice(batches, rank, rank + per_rank * world, world)


def build_adapter(
    plan: JobPlan,
    base,
    dataset,
    collator,
    reporter: JobReporter,
    storage: Storage,
    rank: int = 0,
):
    cfg = GoraConfig.from_dict(plan.adapter)
    reporter.phase(JobPhase.PROBING, f"Probing gradients over {cfg.probe_steps} batches")
    # Probe batches are training micro-batches: probing then needs no more memory than a step.
    micro_batch, _ = batch_split(plan.hyperparameters)
    batches = make_batches(dataset, collator, micro_batch, seed=cfg.seed)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    batches = rank_batches(batches, cfg.probe_steps, rank, world)
    if world > 1 and torch.cuda.is_available():  # this rank's GPU (set by run_job)
        base = base.to(torch.device("cuda", torch.cuda.current_device()))
    try:
        model = get_gora_model(base, cfg, probe_with_progress(batches, cfg.probe_steps, reporter))
    except ValueError as exc:
        if "target_modules" not in str(exc):
            raise
        raise JobUserError(
            ErrorCode.USER_TARGET_MODULES_NOT_FOUND, str(exc), "adapter.target_modules"
        ) from exc
    report = model.gora_report.to_dict()
    if rank == 0:  # the report is rank 0's, broadcast by gora: every rank holds the same
        artifacts.upload_json(storage, job_key(plan.job_id, "gora_allocation.json"), report)
        reporter.allocation(report)
    return model


def training_config(plan: JobPlan, work: Workspace, n_examples: int) -> TrainingConfig:
    hp = plan.hyperparameters
    micro_batch, accumulation = batch_split(hp)
    return TrainingConfig(
        learning_rate=hp["learning_rate"],
        n_epochs=hp["n_epochs"],
        max_steps=hp.get("max_steps"),
        batch_size=micro_batch,
        grad_accum_steps=accumulation,
        lr_ratio_b=plan.adapter.get("lr_ratio_b", 16.0),
        seed=plan.seed,
        log_every=hp["log_every_steps"],
        checkpoint_every=hp["checkpoint_every_steps"],
        output_dir=work.checkpoints,
    ).resolve(
        adapter_type=plan.adapter.get("type", "gora"),
        task=plan.task,
        n_examples=n_examples,
        lr_multiplier=hp.get("learning_rate_multiplier", 1.0),
    )


class JobCallbacks(TrainingCallbacks):
    """The recipe's events, written to the database and the store as they happen."""

    def __init__(self, plan: JobPlan, reporter: JobReporter, storage: Storage, work: Workspace):
        self.plan, self.reporter, self.storage, self.work = plan, reporter, storage, work
        self.last_metrics: dict[str, Any] = {}

    def on_metrics(self, metrics) -> None:
        values = dataclasses.asdict(metrics)
        values["tokens_per_s"] = values.pop("tokens_per_second")
        self.last_metrics = values
        self.reporter.metrics(values, self.work.metrics_file)

    def on_checkpoint(self, saved) -> None:
        key = artifacts.checkpoint_key(self.plan.job_id, saved.step)
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


def reference_outputs(model, dataset, collator) -> dict[str, Any]:
    """The adapter model's logits on the first training row, for checking a downloaded adapter."""
    batch = collator([dataset[0]])
    batch.pop("labels", None)
    model.eval()
    with torch.no_grad():
        logits = model(**batch).logits[0].float()
    last = logits[-1] if logits.dim() == 2 else logits
    return {
        "input_ids": batch["input_ids"][0].tolist(),
        "logits": last.tolist(),  # the last position (causal LM) or the class scores
        "sha256": hashlib.sha256(last.numpy().tobytes()).hexdigest(),
    }
