"""One job on one rank: setup → probe → train → export, as one recipe (torchtune's recipes are the model).

Everything here is ``gora/`` called with the job's stored spec. What is the worker's own is where the
results go (``JobReporter`` for the database, ``artifacts`` for the store) and which failures are the
submitter's (``JobUserError`` with a code and the field to fix). Only rank 0 writes: ranks above 0
get a ``QuietReporter``, and only rank 0 exports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from gora import GoraConfig, get_gora_model, load_base_model
from gora.adapters import target_layers
from gora.data.encoding import EncodingStats, build_dataset, build_label_map
from gora.data.formats import DataFormatError, method_format_error, read_jsonl_lines
from gora.data.loading import collator_for, make_batches
from gora.data.preference import preference_collator
from gora.export import FORMATS as ADAPTER_FORMATS
from gora.export import WEIGHTS_FILENAME, save_adapter
from gora.model_registry import ModelLoadError
from gora.probe import ProbeResult, model_loss, probe_gradients
from gora.report import AllocationReport
from gora.targets import TargetModulesNotFound
from gora.train import TrainingResult, latest_checkpoint, train
from gora.train.checkpoints import load_trainable_adapter
from gora.train.search import snapshot
from service.core import ids
from service.core.jobs.errors import ErrorCode, JobUserError
from service.core.jobs.lifecycle import JobPhase
from service.core.storage import Storage, adapter_key, file_key, job_key
from worker import artifacts
from worker.callbacks import JobCallbacks, probe_with_progress, rank_batches, reference_outputs
from worker.plan import JobPlan, training_config
from worker.preview import describe, dry_run_preview
from worker.probe_cache import ProbeCache, file_sha256, probe_key
from worker.reporting import JobReporter, ResultFile
from worker.results import RESULT_FILENAME, step_metrics_csv
from worker.tuning import RateTuning, carve_validation
from worker.workspace import Workspace

REFERENCE_OUTPUTS = "reference_outputs.json"
METRICS = "metrics.jsonl"


@dataclass
class JobData:
    """What setup loads: the base model, its collator, the encoded training and validation sets."""

    base: Any
    collator: Any
    train: Any
    valid: Any | None
    stats: EncodingStats
    data_sha256: str  # of the training file's bytes: part of the probe cache's key
    tokenizer: Any = None  # DPO runs hand it to TRL's trainer


@dataclass
class JobRecipe:
    plan: JobPlan
    reporter: JobReporter
    storage: Storage
    work: Workspace
    rank: int = 0
    world: int = 1

    def run(self) -> None:
        data = self.setup()
        model, checkpoint = self.probe(data)
        if self.plan.dry_run:  # validation, tokenisation and the probe only
            if self.rank == 0:
                self.preview(model, data)
            return
        result = self.train(model, data, checkpoint)
        if result.cancelled:  # a cancel or a pause
            self.reporter.stopped(result.steps)
        elif self.rank == 0:
            self.export(model, data, result)

    # --- setup: the data and the base model ---------------------------------------------------
    def setup(self) -> JobData:
        plan = self.plan
        # The pid lets an operator (and the tests) find the training process of a job.
        self.reporter.phase(
            JobPhase.LOADING, f"Loading model {plan.model_name} and data", pid=os.getpid()
        )
        fmt, rows, lines = self._read_rows(plan.training_key, "training_file")
        label2id = build_label_map(rows) if plan.task == "sequence_classification" else None
        base, tokenizer = self._load_model(list(label2id) if label2id else None)
        collator = collator_for(tokenizer)
        if plan.is_dpo:  # chosen and rejected answers in one padded batch (TRL's layout)
            collator = preference_collator(collator.pad_token_id)
        dataset, stats = self._encode(rows, fmt, lines, tokenizer, label2id, "training_file")
        valid = None
        if plan.validation_key:
            v_fmt, v_rows, v_lines = self._read_rows(plan.validation_key, "validation_file")
            valid, _ = self._encode(v_rows, v_fmt, v_lines, tokenizer, label2id, "validation_file")
        elif plan.searches_rate:  # the search scores on validation loss: carve a set out
            dataset, valid = carve_validation(dataset, plan.seed)
            self.reporter.event(
                f"No validation_file: {len(valid)} of the training examples are held out (seeded) "
                "to score the learning-rate search, and the job trains on the other "
                f"{len(dataset)}",
                held_out=len(valid),
            )
        self.reporter.event(
            f"Data: {stats.examples} examples, {stats.trained_tokens} trained tokens"
        )
        data_sha256 = file_sha256(self._local(plan.training_key))
        return JobData(base, collator, dataset, valid, stats, data_sha256, tokenizer)

    def _local(self, key: str) -> Path:
        return self.work.data / key.replace("/", "_")

    def _read_rows(self, key: str, param: str):
        local = artifacts.download_file(self.storage, key, self._local(key))
        try:
            fmt, rows, lines = read_jsonl_lines(str(local))
        except DataFormatError as exc:
            raise JobUserError(ErrorCode.USER_BAD_DATA, f"{param}: {exc}", param) from exc
        mismatch = method_format_error(fmt, self.plan.method)
        if mismatch:  # the API checked when the job was made; a file is not changed after
            raise JobUserError(ErrorCode.USER_BAD_DATA, f"{param}: {mismatch}", param)
        return fmt, rows, lines

    def _load_model(self, label_names: list[str] | None):
        plan = self.plan
        try:
            return load_base_model(
                plan.model_path, plan.task, label_names=label_names, seed=plan.seed
            )
        except ModelLoadError as exc:
            raise JobUserError(
                ErrorCode.USER_MODEL_NOT_LOADABLE,
                f"model {plan.model_name!r} could not be loaded: {exc}. Use a model listed by "
                "GET /v1/models",
                "model",
            ) from exc

    def _encode(self, rows, fmt, lines, tokenizer, label2id, param: str):
        max_length = self.plan.hyperparameters["max_seq_length"]
        try:
            dataset, stats = build_dataset(
                rows, fmt, tokenizer, self.plan.task, max_length, label2id, line_numbers=lines
            )
        except DataFormatError as exc:
            raise JobUserError(ErrorCode.USER_BAD_DATA, f"{param}: {exc}", param) from exc
        if len(dataset) == 0:
            raise JobUserError(
                ErrorCode.USER_BAD_DATA,
                f"{param} has no usable row: all {len(rows)} rows lose every trained token when "
                f"cut to max_seq_length={max_length}; raise hyperparameters.max_seq_length or "
                "shorten the prompts",
                param,
            )
        return dataset, stats

    # --- probe: the adapter, from the gradients or from an earlier attempt's checkpoint -------
    def probe(self, data: JobData) -> tuple[Any, Path | None]:
        checkpoint = self._resume_point()
        if checkpoint is not None:
            self.reporter.event(f"Resuming from checkpoint {checkpoint.name}")
            model = load_trainable_adapter(data.base, checkpoint)
            # The ranks come from the checkpoint; the report of how they were chosen, from the
            # allocation stored when the first attempt probed.
            model.gora_report = AllocationReport.from_dict(self.reporter.stored_allocation())
            return model, checkpoint
        if self.plan.from_checkpoint is not None:
            return self._warm_start(data, self.plan.from_checkpoint), None
        cfg = GoraConfig.from_dict(self.plan.adapter)
        base = data.base
        if torch.cuda.is_available():  # probe where it trains: this rank's GPU (set by the child)
            base = base.to(torch.device("cuda", torch.cuda.current_device()))
        try:
            probe, reused = self._probe(base, data, cfg) if cfg.is_gora else (None, False)
            model = get_gora_model(base, cfg, probe=probe)
        except TargetModulesNotFound as exc:
            raise JobUserError(
                ErrorCode.USER_TARGET_MODULES_NOT_FOUND, str(exc), "adapter.target_modules"
            ) from exc
        if reused:
            model.gora_report.probe["reused"] = True
        # The report is rank 0's, broadcast by gora: every rank holds the same.
        self.reporter.allocation(model.gora_report.to_dict())
        return model, None

    def _probe(self, base, data: JobData, cfg: GoraConfig) -> tuple[ProbeResult, bool]:
        """The probe's gradients: kept from an earlier job of the team with the same model, data
        and probe settings (single-process jobs), else measured now, and kept."""
        self.reporter.phase(JobPhase.PROBING, f"Probing gradients over {cfg.probe_steps} batches")
        cache = ProbeCache(self.storage, self.plan.team_id, self.work.data)
        key = probe_key(self.plan, cfg, data.data_sha256) if self.world == 1 else None
        kept = cache.load(key) if key else None
        if kept is not None:
            self.reporter.event(
                "Probe reused: an earlier job of this team probed the same model, data and "
                "probe settings",
                probe_key=key,
            )
            return kept, True
        # Probe batches are training micro-batches: probing then needs no more memory than a step.
        batch = self.plan.hyperparameters["micro_batch_size"]
        batches = make_batches(data.train, data.collator, batch, seed=cfg.seed)
        batches = rank_batches(batches, cfg.probe_steps, self.rank, self.world)
        batches = probe_with_progress(batches, cfg.probe_steps, self.reporter)
        loss = self._probe_loss()
        probe = probe_gradients(base, target_layers(base, cfg), batches, cfg.probe_steps, loss)
        if key:
            cache.save(key, probe)
        return probe, False

    def _probe_loss(self):
        """The training objective's loss: GoRA probes the gradient the job will follow."""
        if not self.plan.is_dpo:
            return model_loss
        from gora.train.preference import dpo_probe_loss  # imports TRL: DPO jobs only

        return dpo_probe_loss(self.plan.hyperparameters["beta"])

    def _warm_start(self, data: JobData, source: dict[str, Any]):
        """The adapter of an earlier job (or checkpoint), trainable, its ranks kept: no probe. The
        allocation report is the source's, saying where its ranks came from."""
        key, ref = source["adapter_key"], source["ref"]
        if not self.storage.list_files(key):
            raise JobUserError(
                ErrorCode.USER_BAD_CONFIG,
                f"from_checkpoint {ref}: its adapter is no longer stored; start from another "
                "checkpoint or from the finished job",
                "from_checkpoint",
            )
        local = artifacts.download_dir(self.storage, key, self.work.data / "warm-start")
        model = load_trainable_adapter(data.base, local)
        report = AllocationReport.from_dict(self.reporter.source_allocation(source["job_id"]))
        report.probe = {**report.probe, "probed": False, "ranks_from": ref}
        model.gora_report = report
        self.reporter.allocation(report.to_dict())
        self.reporter.event(
            f"Warm start from {ref}: its adapter and ranks are kept, no probe",
            from_checkpoint=ref,
        )
        return model

    def _resume_point(self) -> Path | None:
        """The newest checkpoint an earlier attempt left in the store, copied into the workspace."""
        prefix = job_key(self.plan.job_id, "checkpoints")
        steps = sorted(
            {
                int(k.split("/", 1)[0].removeprefix("step-"))
                for k, _ in self.storage.list_files(prefix)
            }
        )
        if not steps:
            return None
        local = self.work.checkpoints / f"checkpoint-{steps[-1]}"
        key = artifacts.checkpoint_key(self.plan.job_id, steps[-1])
        artifacts.download_dir(self.storage, key, local)
        return latest_checkpoint(self.work.checkpoints)

    # --- train ----------------------------------------------------------------------------------
    def train(self, model, data: JobData, checkpoint: Path | None) -> TrainingResult:
        config = training_config(self.plan, self.work.checkpoints)
        self.reporter.phase(
            JobPhase.TRAINING, f"Training: {config.n_epochs} epochs, batch {config.batch_size}"
        )
        objective = {}
        if self.plan.is_dpo:
            objective = {
                "processing_class": data.tokenizer,
                "reference_adapter": self._reference_adapter(),
            }

        def new_callbacks() -> JobCallbacks:
            export = self.work.export / "checkpoints"
            return JobCallbacks(self.plan.job_id, self.reporter, self.storage, model, export)

        def run_training(config, callbacks, checkpoint) -> TrainingResult:
            return train(
                model, data.train, data.collator, config, callbacks, data.valid, checkpoint,
                **objective,
            )  # fmt: skip

        tuning = RateTuning(
            self.plan, self.reporter, self.storage, model, data, self.work.checkpoints.parent,
            run_training, new_callbacks, objective,
        )  # fmt: skip
        callbacks = new_callbacks()
        initial = snapshot(model) if checkpoint is None else None  # for a retry after a collapse
        if checkpoint is None and self.plan.searches_rate and not self.plan.rate_searched:
            config, checkpoint = tuning.search(config, callbacks)
        return tuning.guarded(config, checkpoint, initial, callbacks)

    def _reference_adapter(self) -> dict[str, torch.Tensor] | None:
        """DPO's reference: the adapter a warm start began from (read again on a resume, when the
        model holds the checkpoint's), or None for a new adapter: the base."""
        source = self.plan.from_checkpoint
        if source is None:
            return None
        local = artifacts.download_dir(
            self.storage, source["adapter_key"], self.work.data / "reference"
        )
        return load_file(str(local / WEIGHTS_FILENAME))

    # --- dry run (rank 0) ----------------------------------------------------------------------
    def preview(self, model, data: JobData) -> None:
        config = training_config(self.plan, self.work.checkpoints)
        throughput = self.reporter.pool_throughput()
        preview = dry_run_preview(
            model, data.stats, config, self.plan.task, throughput, world=self.world
        )
        self.reporter.finish_dry_run(preview, describe(preview))

    # --- export (rank 0) --------------------------------------------------------------------------
    def export(self, model, data: JobData, result: TrainingResult) -> None:
        job_id = self.plan.job_id
        self.reporter.phase(JobPhase.EXPORTING, "Exporting the adapter (PEFT and uniform formats)")
        if not self.reporter.holds():  # taken back while training: the store is another's now
            return
        if self.world > 1:  # the reference pass runs on the CPU, as in one process
            model = model.to("cpu")
        for adapter_format in ADAPTER_FORMATS:  # each with its gora_allocation.json
            local = save_adapter(model, self.work.export / adapter_format, format=adapter_format)
            artifacts.upload_dir(self.storage, local, adapter_key(job_id, adapter_format))
        # The metrics as the job's events recorded them: every step, across resumed attempts.
        train_metrics = self.reporter.training_metrics()
        artifacts.upload_jsonl(self.storage, job_key(job_id, METRICS), train_metrics)
        reference = reference_outputs(model, data.train, data.collator)
        artifacts.upload_json(self.storage, job_key(job_id, REFERENCE_OUTPUTS), reference)
        result_file = self._store_result_file(train_metrics)
        name = f"{self.plan.model_name}:gora:{job_id}"
        if not self.reporter.succeed(result_file, result.trained_tokens, name):
            self.storage.delete(file_key(result_file.file_id))  # no row will ever name it

    def _store_result_file(self, train_metrics: list[dict[str, Any]]) -> ResultFile:
        content, rows = step_metrics_csv(train_metrics, self.reporter.validation_metrics())
        file_id = ids.new_id(ids.FILE)
        artifacts.upload_bytes(self.storage, file_key(file_id), content)
        return ResultFile(file_id, RESULT_FILENAME, len(content), rows)
