"""The job row's resolved spec becomes the recipe's TrainingConfig (no worker process needed)."""

from __future__ import annotations

from pathlib import Path

from worker.pipeline import JobPlan, Workspace, batch_split, training_config


def plan_with(hyperparameters: dict) -> JobPlan:
    return JobPlan(
        job_id="ftjob-x",
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
    assert batch_split(plan.hyperparameters) == (8, 4)
    config = training_config(plan, Workspace(tmp_path), n_examples=500)
    assert (config.batch_size, config.grad_accum_steps) == (8, 4)
    assert (config.learning_rate, config.n_epochs, config.seed) == (1e-4, 2, 3)
    assert (config.log_every, config.checkpoint_every) == (5, 50)
    assert config.output_dir == tmp_path / "checkpoints"


def test_rows_without_a_split_run_their_batch_whole(tmp_path: Path):
    plan = plan_with({"batch_size": 4})
    assert batch_split(plan.hyperparameters) == (4, 1)
    config = training_config(plan, Workspace(tmp_path), n_examples=10)
    assert (config.batch_size, config.grad_accum_steps) == (4, 1)
