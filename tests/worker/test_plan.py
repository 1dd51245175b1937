"""The job row's resolved spec becomes the recipe's TrainingConfig (no worker process needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.plan import JobPlan, training_config


def plan_with(hyperparameters: dict) -> JobPlan:
    return JobPlan(
        job_id="ftjob-x",
        team_id="team-x",
        model_source={"kind": "bundled", "name": "smollm2-135m", "task": "causal_lm"},
        task="causal_lm",
        training_key="files/file-x",
        validation_key=None,
        hyperparameters={
            "n_epochs": 2,
            "learning_rate": 1e-4,
            "learning_rate_multiplier": 1.0,
            "max_steps": None,
            "log_every_steps": 5,
            "checkpoint_every_steps": 50,
            **hyperparameters,
        },
        adapter={"type": "gora", "lr_ratio_b": 16.0},
        seed=3,
        models_dir="/nowhere",
    )


def test_effective_batch_runs_as_micro_batches_with_accumulation(tmp_path: Path):
    plan = plan_with({"batch_size": 32, "micro_batch_size": 8, "grad_accum_steps": 4})
    config = training_config(plan, tmp_path / "checkpoints")
    assert (config.batch_size, config.grad_accum_steps) == (8, 4)
    assert (config.learning_rate, config.n_epochs, config.seed) == (1e-4, 2, 3)
    assert (config.log_every, config.checkpoint_every) == (5, 50)
    assert config.output_dir == tmp_path / "checkpoints"


def test_the_worker_trusts_the_stored_numbers_and_resolves_nothing(tmp_path: Path):
    # "auto" was resolved once, when the API created the job; an unresolved row is a bug, not a
    # default to fill in a second time.
    plan = plan_with({"micro_batch_size": 4, "grad_accum_steps": 1, "learning_rate": "auto"})
    with pytest.raises(ValueError, match="learning_rate is 'auto'"):
        training_config(plan, tmp_path)


def test_models_under_the_models_dir_are_found_on_this_host():
    plan = plan_with({})
    assert plan.model_path == "smollm2-135m"
    mounted = JobPlan(**{**plan.__dict__, "model_source": {"kind": "models_dir", "name": "m/x"}})
    assert mounted.model_path == "/nowhere/m/x"
