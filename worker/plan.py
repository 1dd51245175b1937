"""What a job's child reads from its row once, at start: the resolved spec, trusted as stored.

The API resolved every "auto" when the job was created (``service.core.jobs.spec``): the worker turns
the stored numbers into the recipe's ``TrainingConfig`` and resolves nothing again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gora.train import TrainingConfig
from service.core.db import Database
from service.core.files import repository as files_repository
from service.core.jobs import repository
from service.core.jobs.errors import ErrorCode, JobUserError


@dataclass(frozen=True)
class JobPlan:
    job_id: str
    team_id: str
    model_source: dict[str, Any]
    task: str
    training_key: str
    validation_key: str | None
    hyperparameters: dict[str, Any]
    adapter: dict[str, Any]
    seed: int
    models_dir: str
    from_checkpoint: dict[str, Any] | None = None  # a warm start (service.core.jobs.warm_start)
    dry_run: bool = False  # validate, tokenise and probe; report a preview instead of training
    method: str = "supervised"  # OpenAI's method.type: "supervised" or "dpo"
    rate_searched: bool = False  # a learning-rate search already chose the job's rate

    @property
    def is_dpo(self) -> bool:
        return self.method == "dpo"

    @property
    def searches_rate(self) -> bool:
        """learning_rate_multiplier "search": the job scores rates on a validation set."""
        return "learning_rate_search" in self.hyperparameters

    @property
    def model_path(self) -> str:
        if (
            self.model_source["kind"] == "models_dir"
        ):  # stored by relative name; each host mounts its own
            return os.path.join(self.models_dir, self.model_source["name"])
        return self.model_source["name"]

    @property
    def model_name(self) -> str:
        return self.model_source["name"]


def _file_key(session, team_id: str, file_id: str | None, param: str) -> str | None:
    if file_id is None:
        return None
    row = files_repository.get_for_team(session, team_id, file_id)
    if row is None:
        raise JobUserError(
            ErrorCode.USER_BAD_DATA, f"{param} {file_id} was deleted; upload it again", param
        )
    return row.storage_key


def load_plan(database: Database, job_id: str, models_dir: str) -> JobPlan:
    with database.transaction() as session:
        job = repository.get(session, job_id)
        assert job is not None, f"job {job_id} vanished"
        training_key = _file_key(session, job.team_id, job.training_file_id, "training_file")
        assert training_key is not None
        return JobPlan(
            job_id=job.id,
            team_id=job.team_id,
            model_source=job.model_source,
            task=job.task,
            training_key=training_key,
            validation_key=_file_key(
                session, job.team_id, job.validation_file_id, "validation_file"
            ),
            hyperparameters=job.hyperparameters,
            adapter=job.adapter,
            seed=job.seed,
            models_dir=models_dir,
            from_checkpoint=job.from_checkpoint,
            dry_run=job.dry_run,
            method=(job.method or {}).get("type", "supervised"),
            rate_searched=job.learning_rate_search is not None,
        )


def training_config(plan: JobPlan, checkpoints: Path) -> TrainingConfig:
    """The recipe's settings from the stored, already resolved hyperparameters."""
    hp = plan.hyperparameters
    config = TrainingConfig(
        learning_rate=hp["learning_rate"],
        n_epochs=hp["n_epochs"],
        max_steps=hp["max_steps"],
        batch_size=hp["micro_batch_size"],
        grad_accum_steps=hp["grad_accum_steps"],
        lr_ratio_b=plan.adapter["lr_ratio_b"],
        seed=plan.seed,
        log_every=hp["log_every_steps"],
        checkpoint_every=hp["checkpoint_every_steps"],
        output_dir=checkpoints,
        objective="dpo" if plan.is_dpo else "sft",
        beta=hp.get("beta", TrainingConfig.beta),
    )
    config.require_resolved()
    return config
