"""Runs one row group of the quality table: a task, a method, a seed (docs/benchmarks.md).

    python -m bench.quality.run --task r8 --method gora --seed 0      # lr search (seed 0) + test
    python -m bench.quality.run --quick                               # smoke test, < 10 minutes
    python -m bench.quality.run --task r8 --method lora --quick       # one method's smoke test
    python -m bench.quality.run --all                                 # every row, priority order
    python -m bench.quality.run --task r8_pilot --method lora --lr 5e-4  # one validation point

The learning rate of each method is chosen once, with seed 0, on a validation split carved from
train (never test); later seeds reuse it. Rows already in results.json (and rates already in
lr_search.json) are skipped, so the table can be built over several sittings. One CPU thread.
Diagnostic controls (``DIAGNOSTIC_METHODS``, ``DIAGNOSTIC_TASKS``) run the same way but write their
rows to diagnostics.json, outside the issue's table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: the machine's cores are shared

import argparse
import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from bench.quality import results
from bench.quality.data import TaskData, encode_train, task_rows
from bench.quality.evaluate import classification_metrics, exact_match
from bench.quality.methods import SKIPPED, build, load_base, trainable_params
from bench.quality.settings import (
    DIAGNOSTIC_METHODS,
    DIAGNOSTIC_TASKS,
    METHODS,
    TaskSettings,
    lr_grid,
    quick_lr,
    settings_for,
)
from gora.data.loading import collator_for
from gora.train import TrainingConfig
from gora.train.recipe import TrainingRecipe

# The order the table is filled in when time is short: the headline first, peers last.
PLAN = [
    ("r8", "lora", 0), ("r8", "gora", 0),
    ("r8", "lora", 1), ("r8", "gora", 1), ("r8", "lora", 2), ("r8", "gora", 2),
    ("arithmetic", "lora", 0), ("arithmetic", "gora", 0),
    ("r8", "gora_gamma0", 0), ("r8", "gora_fixed_rank", 0),
    ("r8", "pissa", 0), ("r8", "lora_ga", 0), ("r8", "eva", 0),
    ("r8", "adalora", 0), ("r8", "full", 0),
    ("arithmetic", "lora", 1), ("arithmetic", "gora", 1),
    ("arithmetic", "lora", 2), ("arithmetic", "gora", 2),
    ("arithmetic", "gora_gamma0", 0), ("arithmetic", "gora_fixed_rank", 0),
    ("r8", "gora_gamma0", 1), ("r8", "gora_fixed_rank", 1),
    ("r8", "gora_gamma0", 2), ("r8", "gora_fixed_rank", 2),
    ("r8", "pissa", 1), ("r8", "lora_ga", 1), ("r8", "eva", 1),
    ("r8", "pissa", 2), ("r8", "lora_ga", 2), ("r8", "eva", 2),
    ("r8", "adalora", 1), ("r8", "full", 1), ("r8", "adalora", 2), ("r8", "full", 2),
    ("arithmetic", "pissa", 0), ("arithmetic", "lora_ga", 0), ("arithmetic", "eva", 0),
]  # fmt: skip

# --quick alone: LoRA and GoRA on R8, GoRA on arithmetic; one seed, few steps (docs/benchmarks.md).
QUICK_PLAN = [("r8", "lora", 0), ("r8", "gora", 0), ("arithmetic", "gora", 0)]


@dataclass
class Trained:
    built: Any
    losses: list[float]
    wall_s: float  # initialisation (probe, SVD, ...) + training, no evaluation
    steps: int
    diverged: bool


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def train_once(method, settings: TaskSettings, data: TaskData, seed: int, lr: float) -> Trained:
    start = time.perf_counter()
    base, tokenizer = load_base(settings, data.labels, seed)
    train_ds = encode_train(data.train_rows, tokenizer, settings, data.labels)
    collator = collator_for(tokenizer)
    built = build(method, settings, base, tokenizer, seed, train_ds, collator)
    config = TrainingConfig(
        learning_rate=lr,
        n_epochs=settings.n_epochs,
        batch_size=settings.batch_size,
        seed=seed,
        log_every=10,
        # Off on purpose: a run that blows up is finished and evaluated like any other, and
        # flagged; the learning-rate search then never picks it.
        detect_divergence=False,
    )
    recipe = TrainingRecipe(built.model, train_ds, collator, config)
    recipe.setup()
    recipe.trainer.parameter_role = built.parameter_role
    for callback in built.trainer_callbacks:
        recipe.trainer.add_callback(callback)
    try:
        losses = recipe.train().losses
    finally:
        recipe.cleanup()
    return Trained(built, losses, time.perf_counter() - start, len(losses), _diverged(losses))


def _diverged(losses: list[float]) -> bool:
    if not losses or not all(math.isfinite(x) for x in losses):
        return True
    head, tail = losses[: max(1, len(losses) // 10)], losses[-max(1, len(losses) // 10) :]
    return sum(tail) / len(tail) > 2 * (sum(head) / len(head))


def evaluate(trained: Trained, settings: TaskSettings, data: TaskData, rows) -> dict[str, Any]:
    model, tokenizer = trained.built.model, trained.built.tokenizer
    if settings.is_classification:
        dataset = encode_train(rows, tokenizer, settings, data.labels)
        return classification_metrics(model, dataset, tokenizer)
    return exact_match(model, tokenizer, rows, settings.max_new_tokens)


def run_record(method, settings, seed, lr, trained: Trained, scores: dict) -> dict[str, Any]:
    return {
        "task": settings.task,
        "method": method,
        "seed": seed,
        "lr": lr,
        "losses": trained.losses,
        "steps": trained.steps,
        "wall_s": round(trained.wall_s, 1),
        "init_s": round(trained.built.init_s, 1),
        "diverged": trained.diverged,
        "trainable_params": trainable_params(trained.built.model),
        "allocation": trained.built.allocation,
        "settings": settings.__dict__,
        **scores,
    }


def validate(method, settings, data, lr: float, quick: bool = False) -> tuple[dict, Trained]:
    """Trains seed 0 at ``lr``, scores it on validation and records the point in lr_search.json."""
    log(f"{settings.task}/{method}: lr {lr:g}, seed 0, validation")
    trained = train_once(method, settings, data, 0, lr)
    scores = evaluate(trained, settings, data, data.valid_rows)
    value = scores[settings.selection_metric]
    record = run_record(method, settings, 0, lr, trained, {"valid": scores})
    results.write_run(results.run_name(settings.task, method, 0, lr, quick), record, quick)
    row = {"task": settings.task, "method": method, "lr": lr, "seed": 0}
    row |= {"metric": settings.selection_metric, "valid": value, "diverged": trained.diverged}
    results.append_rows(results.LR_SEARCH, [row])
    log(f"  valid {settings.selection_metric} {value:.4f} (diverged: {trained.diverged})")
    return row, trained


# A method whose best rate sits on the edge of its grid gets up to this many more points beyond
# that edge, one 1-2-5 step at a time: the same rule for every method.
MAX_EDGE_STEPS = 2
LADDER = (1, 2, 5)  # mantissas of the rates a search steps through


def next_rate(grid: tuple[float, ...], tried: dict[float, dict[str, Any]]) -> float | None:
    """The next rate the search should try, or None when the best is inside what was tried."""
    for lr in grid:
        if lr not in tried:
            return lr
    if len(set(tried) - set(grid)) >= MAX_EDGE_STEPS:
        return None
    best, rates = _best_rate(tried), sorted(tried)
    if best == rates[0]:
        return ladder_step(best, down=True)
    if best == rates[-1]:
        return ladder_step(best, down=False)
    return None


def ladder_step(lr: float, down: bool) -> float:
    """The neighbour of ``lr`` on the 1-2-5 ladder (1e-4 -> 5e-5 down, 2e-4 up)."""
    exponent = math.floor(math.log10(lr) + 1e-9)
    position = 3 * exponent + LADDER.index(round(lr / 10**exponent)) + (-1 if down else 1)
    exponent, index = divmod(position, 3)
    return float(f"{LADDER[index]}e{exponent}")


def search_lr(method, settings, data, quick: bool) -> tuple[float, Trained | None]:
    """The rate with the best validation score (seed 0), and its model if trained here."""
    tried = results.searched(settings.task, method)
    best_model: tuple[float, float, Trained] | None = None
    grid = lr_grid(settings, method)
    while (lr := next_rate(grid, tried)) is not None:
        row, trained = validate(method, settings, data, lr, quick)
        tried[lr] = row
        value = row["valid"]
        if not trained.diverged and (best_model is None or value > best_model[1]):
            best_model = (lr, value, trained)
    best_lr = _best_rate(tried)
    kept = best_model[2] if best_model and best_model[0] == best_lr else None
    return best_lr, kept


def _best_rate(tried: dict[float, dict[str, Any]]) -> float:
    usable = [r for r in tried.values() if not r["diverged"]] or list(tried.values())
    return max(usable, key=lambda r: (r["valid"], -r["lr"]))["lr"]


def _search_done(settings: TaskSettings, method: str) -> bool:
    tried = results.searched(settings.task, method)
    return next_rate(lr_grid(settings, method), tried) is None


def results_file(task: str, method: str, quick: bool):
    if quick:
        return results.QUICK_RESULTS
    diagnostic = method in DIAGNOSTIC_METHODS or task in DIAGNOSTIC_TASKS
    return results.DIAGNOSTICS if diagnostic else results.RESULTS


def run_row(task: str, method: str, seed: int, quick: bool) -> None:
    target = results_file(task, method, quick)
    if (task, method) in SKIPPED:
        log(f"{task}/{method}: skipped: {SKIPPED[task, method]}")
        return
    settings = settings_for(task, quick)
    if quick:  # a smoke test always runs again; its last result replaces the one before
        results.drop_rows(target, task, method, seed)
    elif results.has_rows(target, task, method, seed) and _search_done(settings, method):
        log(f"{task}/{method}/seed {seed}: already in {target.name}, skipped")
        return
    data = task_rows(settings)
    trained = None
    if quick:
        lr = quick_lr(task, method)
    else:
        lr, trained = search_lr(method, settings, data, quick)
        trained = trained if seed == 0 else None
        recorded = results.row_lr(target, task, method, seed)
        if recorded == lr:
            log(f"{task}/{method}/seed {seed}: already in {target.name} at lr {lr:g}, skipped")
            return
        if recorded is not None:  # the widened grid chose another rate: this row is redone
            log(f"{task}/{method}/seed {seed}: recorded at lr {recorded:g}, best is now {lr:g}")
            results.drop_rows(target, task, method, seed)
    if trained is None:
        log(f"{task}/{method}: lr {lr:g}, seed {seed}, training")
        trained = train_once(method, settings, data, seed, lr)
    scores = evaluate(trained, settings, data, data.test_rows)
    record = run_record(method, settings, seed, lr, trained, {"test": scores})
    results.write_run(results.run_name(task, method, seed, lr, quick), record, quick)
    results.append_rows(target, table_rows(record, scores, settings))
    shown = ", ".join(f"{m} {scores[m]:.4f}" for m in settings.metrics)
    log(f"{task}/{method}/seed {seed}: test {shown}, wall {trained.wall_s:.0f}s")


def table_rows(record: dict, scores: dict, settings: TaskSettings) -> list[dict[str, Any]]:
    keys = ("task", "method", "seed", "trainable_params", "wall_s", "lr", "steps", "diverged")
    common = {k: record[k] for k in keys}
    common["probe_s"] = record["init_s"]
    return [
        {**common, "metric": metric, "value": round(scores[metric], 4)}
        for metric in settings.metrics
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="GoRA quality benchmark (docs/benchmarks.md)")
    parser.add_argument("--task", choices=["r8", "arithmetic", *DIAGNOSTIC_TASKS])
    parser.add_argument("--method", choices=[*METHODS, *DIAGNOSTIC_METHODS])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, help="one validation point at this rate (seed 0) only")
    parser.add_argument("--quick", action="store_true", help="smoke test: one rate, few steps")
    parser.add_argument("--all", action="store_true", help="every row of the plan, in order")
    args = parser.parse_args(argv)
    if not (args.all or args.quick) and (args.task is None or args.method is None):
        parser.error("give --task and --method, or --all, or --quick")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    if args.lr is not None:
        settings = settings_for(args.task, quick=False)
        validate(args.method, settings, task_rows(settings), args.lr)
        return
    if args.task is not None and args.method is not None:
        rows = [(args.task, args.method, args.seed)]
    else:
        rows = QUICK_PLAN if args.quick else PLAN
    for task, method, seed in rows:
        try:
            run_row(task, method, seed, args.quick)
        except Exception as error:  # one broken peer must not stop the whole plan
            if len(rows) == 1:
                raise
            log(f"{task}/{method}/seed {seed}: FAILED: {type(error).__name__}: {error}")
    if args.quick:
        print_quick_summary(rows)


def print_quick_summary(rows) -> None:
    """The smoke test's scores and wall time, one line per run."""
    for task, method, seed in rows:
        scores = results.rows_for(results.QUICK_RESULTS, task, method, seed)
        shown = ", ".join(f"{r['metric']} {100 * r['value']:.1f}" for r in scores) or "no result"
        wall = f", wall {scores[0]['wall_s']:.0f} s" if scores else ""
        print(f"quick {task}/{method} (lr {quick_lr(task, method):g}): {shown}{wall}")


if __name__ == "__main__":
    main()
