"""The job's learning rate, measured and guarded: the search ("search") and the collapse guard (all jobs).

Both are gora's (``gora.train.search``, ``gora.train.collapse``); what is the worker's is where their
results go: events as they happen, the chosen rate into the job's hyperparameters (so a resumed
attempt trains at it), the search's record on the job, and a retry's bookkeeping (the first run's
checkpoints deleted, its metrics kept as run 0).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gora.data.loading import EncodedDataset
from gora.train import TrainingConfig, TrainingDiverged, TrainingResult, latest_checkpoint
from gora.train.collapse import MIN_STEPS, classifier_collapse
from gora.train.search import LearningRateSearch, Trial, restore
from service.core.jobs.errors import ErrorCode, JobUserError
from service.core.storage import Storage
from worker.callbacks import JobCallbacks
from worker.plan import JobPlan
from worker.reporting import JobReporter

RATE_PARAM = "hyperparameters.learning_rate_multiplier"
CARVED_SHARE, CARVED_MIN, CARVED_MAX = 0.1, 8, 64  # the validation split carved for a search
COLLAPSE_SAMPLE = 64  # training examples the collapse check reads when there is no validation set


def carve_validation(dataset: EncodedDataset, seed: int) -> tuple[EncodedDataset, EncodedDataset]:
    """(train, validation): a seeded 10 % (8 to 64 examples) of the training examples held out, the
    same on every attempt of the job (a resume must see the same training set)."""
    n = len(dataset.examples)
    held = min(CARVED_MAX, max(CARVED_MIN, round(CARVED_SHARE * n)), n // 2)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    valid = set(order[:held])
    examples = dataset.examples
    return (
        EncodedDataset([e for i, e in enumerate(examples) if i not in valid]),
        EncodedDataset([examples[i] for i in sorted(valid)]),
    )


@dataclass
class RateTuning:
    """One job's search and guard. ``run_training(config, callbacks, checkpoint)`` trains the model
    with the job's data (the recipe's ``train`` call); ``new_callbacks()`` makes the job's callbacks."""

    plan: JobPlan
    reporter: JobReporter
    storage: Storage
    model: Any
    data: Any  # worker.recipe.JobData
    work_dir: Path
    run_training: Callable[[TrainingConfig, JobCallbacks, Path | None], TrainingResult]
    new_callbacks: Callable[[], JobCallbacks]
    objective: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def default_rate(self) -> float:
        hp = self.plan.hyperparameters
        return hp["learning_rate"] / hp["learning_rate_multiplier"]

    # --- the search -----------------------------------------------------------------------------
    def search(self, config: TrainingConfig, callbacks: JobCallbacks):
        """Runs the search; returns the config at the chosen rate and the chosen trial's checkpoint
        (the run continues from it). The chosen trial's metrics go to the job as its first steps."""
        spec = self.plan.hyperparameters["learning_rate_search"]
        candidates = ", ".join(f"{rate:g}" for rate in spec["candidates"])
        self.reporter.event(
            f"Learning-rate search: trying {candidates} (successive halving on validation loss, "
            f"at most {spec['budget']:g}x a plain job's training steps)",
            type="search", candidates=spec["candidates"], budget=spec["budget"],
        )  # fmt: skip
        search = LearningRateSearch(
            model=self.model,
            train_dataset=self.data.train,
            collator=self.data.collator,
            config=dataclasses.replace(config, output_dir=self.work_dir / "search"),
            eval_dataset=self.data.valid,
            candidates=spec["candidates"],
            budget=spec["budget"],
            notify=lambda message, data: self.reporter.event(message, type="search", **data),
            objective_kwargs=self.objective,
        )
        result = search.run()
        chosen = result.chosen
        record = result.to_dict()
        self.reporter.set_learning_rate(
            chosen.learning_rate, chosen.learning_rate / self.default_rate, record
        )
        self.reporter.event(
            f"Learning-rate search chose {chosen.learning_rate:g} ({_standing(chosen)}) after "
            f"{result.trial_steps} trial steps; the job continues from "
            f"its step {chosen.steps}. Cost: {result.cost:.2f}x a plain job's training steps",
            type="search", chosen=chosen.learning_rate, cost=record["cost"],
        )  # fmt: skip
        for metrics in chosen.metrics:  # the run's first steps are the chosen trial's
            callbacks.on_metrics(metrics)
        for evaluation in chosen.evals:
            callbacks.on_eval(evaluation)
        config = dataclasses.replace(config, learning_rate=chosen.learning_rate)
        return config, latest_checkpoint(chosen.output_dir)

    # --- the collapse guard ---------------------------------------------------------------------
    def guarded(self, config: TrainingConfig, checkpoint: Path | None, initial, callbacks):
        """Trains; a diverged loss or a classifier answering one class gets a warning and, where
        ``retry_on_collapse`` allows and the initial adapter is at hand, one retry at half the rate
        from it. A second failure (or a divergence without a retry) fails the job."""
        result, problem = self._attempt(config, callbacks, checkpoint)
        if problem is None:
            return result
        retry = self.plan.hyperparameters.get("retry_on_collapse", True) and initial is not None
        rate = float(config.learning_rate)
        if not retry:
            return self._give_up(result, problem, rate)
        self.reporter.event(
            f"{problem} at learning rate {rate:g}: retrying once at {rate / 2:g} from the "
            "initial adapter",
            level="warn", code="training_collapsed", learning_rate=rate,
        )  # fmt: skip
        restore(self.model, initial)
        self.reporter.restart_training(self.storage)
        shutil.rmtree(config.output_dir, ignore_errors=True)
        self.reporter.set_learning_rate(rate / 2, rate / 2 / self.default_rate)
        config = dataclasses.replace(config, learning_rate=rate / 2)
        result, problem = self._attempt(config, self.new_callbacks(), None)
        if problem is not None:
            raise JobUserError(
                ErrorCode.USER_BAD_CONFIG,
                f"{problem} at {rate / 2:g} too, after a retry at half the rate: lower "
                "learning_rate_multiplier further, or check that the classes are balanced",
                RATE_PARAM,
            )
        return result

    def _attempt(self, config, callbacks, checkpoint) -> tuple[TrainingResult | None, str | None]:
        try:
            result = self.run_training(config, callbacks, checkpoint)
        except TrainingDiverged as exc:
            return None, f"The loss diverged at step {exc.step} ({exc.reason})"
        if result.cancelled or result.steps < MIN_STEPS:  # too short to judge a classifier by
            return result, None
        sample = self.data.valid
        if sample is None:
            sample = EncodedDataset(self.data.train.examples[:COLLAPSE_SAMPLE])
        collapse = classifier_collapse(self.model, sample, self.data.collator)
        return result, collapse and collapse[0].upper() + collapse[1:]

    def _give_up(self, result, problem: str, rate: float):
        if result is None:  # diverged: the adapter is unusable
            raise JobUserError(
                ErrorCode.USER_BAD_CONFIG,
                f"{problem} at learning rate {rate:g}. Lower the learning rate, e.g. by 2-4x "
                "(learning_rate_multiplier), or leave retry_on_collapse on",
                RATE_PARAM,
            )
        self.reporter.event(
            f"{problem} at learning rate {rate:g}; retry_on_collapse is off, so the adapter is "
            "kept as trained",
            level="warn", code="training_collapsed", learning_rate=rate,
        )  # fmt: skip
        return result


def _standing(trial: Trial) -> str:
    return trial.score.describe() if trial.score else "no score: every trial failed"
