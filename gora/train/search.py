"""A learning rate each run measures for itself: successive halving over a 1-2-5 ladder.

The adapter is probed and initialised once. Each candidate rate trains from that same initial adapter,
on the same batches in the same order (one seed), on the schedule of the whole run; after a rung of
steps every live trial is scored on validation loss, the worse half is dropped, survivors train a rung
twice as long, until one is left. That one continues to the end from its own checkpoint, so its
trial's steps are the run's first steps, not a cost. A trial whose loss explodes (the divergence
guard) or whose classifier answers one class for every validation example (from the second rung on:
at the first a slow rate's classifier may not have left the majority class yet) is stopped and
reported.

Why not Optuna's ``SuccessiveHalvingPruner``: it is asynchronous (ASHA): each trial is judged when it
reports, against the trials that reported at that rung before it, so the survivors depend on the order
the trials run in. Here every trial shares the batches and runs in lockstep rungs, and the rule is a
sort of four scores at each rung; the bookkeeping Optuna would hold for us is the ``Trial`` list below.

The trials pause and resume through the recipe's checkpoints, the path a paused job takes, which
resumes bit-exactly (tests/worker/test_pause.py): a trial continued over two rungs is the run it
would have been uninterrupted.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gora.train.checkpoints import latest_checkpoint
from gora.train.collapse import MIN_STEPS, is_classification, one_class
from gora.train.config import TrainingConfig
from gora.train.defaults import SEARCH_BUDGET
from gora.train.events import EvalResult, Metrics, TrainingCallbacks, TrainingDiverged
from gora.train.optim import total_optimizer_steps, warmup_steps
from gora.train.recipe import TrainingRecipe

EVAL_STEP_COST = 1 / 3  # a validation batch's forward pass, in training steps (forward + backward)
TRIAL_OVERHEAD_STEPS = (
    1.0  # a trial's pause and resume (a Trainer built, a checkpoint written, read)
)
SCORED_EXAMPLES = 128  # validation examples a trial is scored on (a seeded subset of larger sets)
FIRST_RUNG_SHARE = 0.12  # the first rung's share of the run's steps
# A last rung before this share of the run decides early: on R8 two good rates' order settled at 55-70 %,
# and on a 48-step run whose last rung fell at 23 % the search chose worse than the default.
EARLY_DECISION_SHARE = 0.4


@dataclass(frozen=True)
class Score:
    """A trial's standing at a rung, on the scored validation examples."""

    step: int
    valid_loss: float
    valid_accuracy: float | None = None  # classifiers only: reported, not ranked by

    def describe(self) -> str:
        accuracy = self.valid_accuracy
        held = (
            f"validation accuracy {accuracy:.3f}, loss"
            if accuracy is not None
            else "validation loss"
        )
        return f"{held} {self.valid_loss:.4f}"

    def to_dict(self) -> dict[str, Any]:
        row = {"step": self.step, "valid_loss": self.valid_loss}
        return row | (
            {"valid_accuracy": self.valid_accuracy} if self.valid_accuracy is not None else {}
        )


@dataclass
class Trial:
    learning_rate: float
    output_dir: Path
    steps: int = 0
    scores: list[Score] = field(default_factory=list)
    status: str = "running"  # running | dropped | diverged | collapsed | chosen
    reason: str | None = None
    metrics: list[Metrics] = field(default_factory=list)  # kept to replay the winner's
    evals: list[EvalResult] = field(default_factory=list)

    @property
    def score(self) -> Score | None:
        return self.scores[-1] if self.scores else None

    @property
    def rank_key(self) -> float:
        """What the halving ranks by, smaller better: the validation loss. A classifier's accuracy is
        kept beside it but not ranked by: on R8 it chose the same rates as the loss at the rungs, and
        moves in steps of 1/128 (bench/quality/rate_curves.json)."""
        return self.score.valid_loss if self.scores else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "steps": self.steps,
            "scores": [s.to_dict() for s in self.scores],
            "status": self.status,
            "reason": self.reason,
        }


@dataclass
class SearchResult:
    trials: list[Trial]
    chosen: Trial
    total_steps: int  # steps of the whole run, which the chosen trial continues to
    trial_steps: int  # optimizer steps all trials took
    eval_batches: int  # validation batches all scorings read
    wall_time_s: float
    rung_steps: list[int]

    @property
    def cost(self) -> float:
        """Training work as a multiple of one plain run's, once the winner has run to the end
        (trial steps, validation batches and trial pauses in training steps' worth)."""
        advances = sum(len(t.scores) for t in self.trials)
        extra = self.trial_steps - self.chosen.steps + EVAL_STEP_COST * self.eval_batches
        return (self.total_steps + extra + TRIAL_OVERHEAD_STEPS * advances) / self.total_steps

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidates": [t.learning_rate for t in self.trials],
            "chosen": self.chosen.learning_rate,
            "trials": [t.to_dict() for t in self.trials],
            "rung_steps": self.rung_steps,
            "trial_steps": self.trial_steps,
            "total_steps": self.total_steps,
            "cost": round(self.cost, 3),
            "wall_time_s": round(self.wall_time_s, 1),
        }


def plan_rungs(
    total_steps: int, candidates: int, eval_batches: int, budget: float, min_rung: int = 1
) -> list[int]:
    """The step each rung ends at. The first is short (FIRST_RUNG_SHARE of the run, past the
    warm-up): it only has to drop the clearly worse, which shows early (too slow, or unstable).
    Rungs double while more than two trials live; the last, where two close rates are told apart,
    is as late as the budget allows, since their order settles late (on R8 after 55-70 % of the
    run: bench/quality/rate_curves.json). Empty when the run is too short to search within it."""
    per_scoring = EVAL_STEP_COST * eval_batches + TRIAL_OVERHEAD_STEPS
    allowed = (budget - 1) * total_steps  # extra steps' worth the search may cost
    rungs, alive, extra = [], candidates, 0.0
    end = max(min_rung, math.ceil(FIRST_RUNG_SHARE * total_steps), 1)
    while alive > 2 and end < total_steps:
        rungs.append(end)
        keep = math.ceil(alive / 2)
        extra += per_scoring * alive + (alive - keep) * end  # the dropped trials' steps
        alive, end = keep, end * 2
    if alive != 2:  # too short for the rungs that leave two
        return []
    # The last rung: the latest the rest of the budget reaches, before the end.
    last = min(total_steps - 1, math.floor(allowed - extra - 2 * per_scoring))
    if last < max(min_rung, rungs[-1] + 1 if rungs else 1):
        return []
    return [*rungs, last]


class _Trial(TrainingCallbacks):
    """A trial's callbacks: stop (with a checkpoint) at the rung's end; keep what it reports."""

    def __init__(self, trial: Trial, stop_at: int):
        self.trial, self.stop_at, self.step = trial, stop_at, 0

    def on_progress(self, progress) -> None:
        self.step = progress.step

    def on_metrics(self, metrics) -> None:
        self.trial.metrics.append(metrics)

    def on_eval(self, result) -> None:
        self.trial.evals.append(result)

    def should_stop(self) -> bool:
        return self.step >= self.stop_at

    def checkpoint_on_stop(self) -> bool:
        return True


@dataclass
class LearningRateSearch:
    """Runs the search for one model. ``notify(message, data)`` hears of each scored trial (the
    worker's events)."""

    model: torch.nn.Module
    train_dataset: Any
    collator: Any
    config: TrainingConfig  # resolved; its output_dir is where the trials live
    eval_dataset: Any
    candidates: list[float]  # rates to try (defaults.rate_ladder around the method's default)
    budget: float = SEARCH_BUDGET
    notify: Callable[[str, dict[str, Any]], None] = lambda message, data: None
    objective_kwargs: dict[str, Any] = field(default_factory=dict)

    def run(self) -> SearchResult:
        started = time.perf_counter()
        self._initial = snapshot(self.model)
        total = total_optimizer_steps(len(self.train_dataset), self.config)
        self.scored = scored_examples(self.eval_dataset, self.config.seed)
        eval_batches = math.ceil(len(self.scored) / int(self.config.batch_size))
        min_rung = warmup_steps(total, self.config.warmup_ratio) + 1
        rungs = plan_rungs(total, len(self.candidates), eval_batches, self.budget, min_rung)
        root = Path(self.config.output_dir)
        trials = [Trial(lr, root / f"trial-{i}") for i, lr in enumerate(self.candidates)]
        if not rungs:  # too short to search within the budget: the default rate, said so
            return self._unsearched(trials, total, time.perf_counter() - started)
        if rungs[-1] < EARLY_DECISION_SHARE * total:
            self._warn_early(rungs[-1], total)
        alive, scorings = list(trials), 0
        for end in rungs:
            for trial in alive:
                self._advance(trial, end)
                scorings += trial.status == "running"
            alive = self._halve(alive, end)
        chosen = min(alive, key=lambda t: t.rank_key) if alive else None
        if chosen is None:  # every trial failed: the lowest rate, reported as such
            chosen = min(trials, key=lambda t: t.learning_rate)
        chosen.status = "chosen"
        for trial in alive:  # a last rung can leave two: the better goes on
            if trial is not chosen:
                trial.status, trial.reason = "dropped", f"worse at step {trial.steps}"
        self._load(chosen)
        return SearchResult(
            trials=trials,
            chosen=chosen,
            total_steps=total,
            trial_steps=sum(t.steps for t in trials),
            eval_batches=scorings * eval_batches,
            wall_time_s=time.perf_counter() - started,
            rung_steps=rungs,
        )

    def _unsearched(self, trials: list[Trial], total: int, wall_s: float) -> SearchResult:
        default = float(self.config.learning_rate)
        chosen = min(trials, key=lambda t: abs(math.log(t.learning_rate / default)))
        for trial in trials:
            trial.status = "skipped"
        chosen.status, chosen.reason = "chosen", "the run is too short to search within the budget"
        self.notify(
            f"Learning-rate search skipped: {total} steps are too few to try "
            f"{len(trials)} rates within {self.budget:g}x a plain job; training at {chosen.learning_rate:g}",
            {"learning_rate": chosen.learning_rate, "status": "skipped"},
        )  # fmt: skip
        return SearchResult(trials, chosen, total, 0, 0, wall_s, [])

    def _warn_early(self, last: int, total: int) -> None:
        self.notify(
            f"Learning-rate search decides early: within {self.budget:g}x a plain job the last "
            f"rung is step {last} of {total} ({100 * last / total:.0f} %), where a lower rate often "
            "leads a better one; a larger search_budget, or fewer validation examples, moves it later",
            {"level": "warn", "code": "search_decides_early", "step": last, "total_steps": total},
        )  # fmt: skip

    def _advance(self, trial: Trial, end: int) -> None:
        """Trains ``trial`` to step ``end`` (from the initial adapter, or its own checkpoint),
        then scores it on validation loss, or marks it failed."""
        self._load(trial)
        config = dataclasses.replace(
            self.config,
            learning_rate=trial.learning_rate,
            output_dir=trial.output_dir,
            checkpoint_every=0,
            keep_checkpoints=1,
            eval_every=None,
        )
        recipe = TrainingRecipe(
            self.model, self.train_dataset, self.collator, config, _Trial(trial, end),
            self.scored, **self.objective_kwargs,
        )  # fmt: skip
        recipe.setup()
        try:
            result = recipe.train(latest_checkpoint(trial.output_dir))
            trial.steps = result.steps
            score, predicted = self._score(recipe, trial.steps)
        except TrainingDiverged as exc:
            trial.status, trial.reason = "diverged", str(exc).split(". ")[0]
            trial.steps = exc.step
            return
        finally:
            recipe.cleanup()
        trial.scores.append(score)
        # One class for everything is a collapse from the second rung on: after the first, a slow
        # rate's classifier may still be at its start (the majority class), not collapsed; the
        # halving judges it by its score there.
        judged = predicted is not None and len(trial.scores) > 1 and trial.steps >= MIN_STEPS
        collapse = one_class(*predicted) if judged else None
        if collapse or not math.isfinite(score.valid_loss):
            trial.status, trial.reason = (
                "collapsed",
                collapse or f"validation loss {score.valid_loss}",
            )
        self.notify(
            f"Learning-rate search: {trial.learning_rate:g} at step {trial.steps}: "
            f"{score.describe()}" + (f" ({trial.status}: {trial.reason})" if trial.reason else ""),
            {"learning_rate": trial.learning_rate, **score.to_dict(), "status": trial.status},
        )  # fmt: skip

    def _score(self, recipe: TrainingRecipe, step: int) -> tuple[Score, Any]:
        """The trial's score on the scored examples, and a classifier's (predicted, labels)."""
        if not is_classification(self.scored):
            return Score(step, float(recipe.trainer.evaluate()["eval_loss"])), None
        # One pass for the loss and the predictions; the recipe's arguments say loss only, which
        # evaluate() and predict() obey, so the loop is asked directly.
        trainer = recipe.trainer
        output = trainer.evaluation_loop(
            trainer.get_eval_dataloader(self.scored), "search", prediction_loss_only=False
        )
        predicted = output.predictions.argmax(-1).tolist()
        labels = output.label_ids.tolist()
        accuracy = sum(p == y for p, y in zip(predicted, labels, strict=True)) / len(labels)
        return Score(step, float(output.metrics["eval_loss"]), accuracy), (predicted, labels)

    def _halve(self, alive: list[Trial], end: int) -> list[Trial]:
        healthy = sorted((t for t in alive if t.status == "running"), key=lambda t: t.rank_key)
        keep = healthy[: math.ceil(len(healthy) / 2)] if len(healthy) > 1 else healthy
        for trial in healthy[len(keep) :]:
            trial.status, trial.reason = "dropped", f"worse half at step {end}"
        return keep

    def _load(self, trial: Trial) -> None:
        """The adapter where ``trial`` stands: the initial one, or its latest checkpoint's."""
        checkpoint = latest_checkpoint(trial.output_dir)
        if checkpoint is None:
            restore(self.model, self._initial)
        else:
            from peft.utils import set_peft_model_state_dict
            from safetensors.torch import load_file

            saved = load_file(str(checkpoint / "adapter_model.safetensors"))
            set_peft_model_state_dict(self.model, saved)


def scored_examples(dataset: Any, seed: int, limit: int = SCORED_EXAMPLES) -> Any:
    """The examples a trial is scored on: at most ``limit`` of ``dataset`` (a seeded choice, in
    their order), as a list."""
    if len(dataset) <= limit:
        return dataset
    chosen = sorted(
        torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:limit].tolist()
    )
    return [dataset[i] for i in chosen]


def _trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the trainable parameters (the adapter, a head), to restore the run's start."""
    return {n: p.detach().clone() for n, p in _trainable(model).items()}


def restore(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in state:
                parameter.copy_(state[name])
