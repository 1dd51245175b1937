"""learning_rate_multiplier "search" against "auto" and the oracle, on R8 and arithmetic, 3 seeds.

For each method (LoRA, GoRA) and seed, side by side in one process: a plain run at the method's
"auto" rate, and a searched run (``gora.train.search``: three rates on the 1-2-5 ladder around the
default, successive halving on the validation split's loss, the winner continued to the end). The
oracle is the quality table's row (results.json): the best rate of the grid on validation (R8's
accuracy, arithmetic's exact match), seed 0, reused for seeds 1-2. The test score of each, the
searched run's chosen rate, and its wall time to the end of training (loading, probe, search and
training; not the test evaluation) as a multiple of the plain run's.

Each pair is kept in runs/search/ as it finishes and skipped when there; search.json is the summary
of what is there. One CPU thread per process, so the two methods can run side by side:

    python -m bench.quality.search --method lora & python -m bench.quality.search --method gora
    python -m bench.quality.search --task arithmetic --seed 0 --method gora   # ~25 min a pair
    python -m bench.quality.search --quick    # the quick R8 setting, one seed, nothing kept
    python -m bench.quality.search --table    # the tables, from search.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: the machine's cores are shared

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.quality.data import encode_train, task_rows
from bench.quality.evaluate import classification_metrics, exact_match
from bench.quality.methods import build, load_base
from bench.quality.run import log
from bench.quality.settings import settings_for
from gora.data.loading import collator_for
from gora.train import TrainingConfig, latest_checkpoint
from gora.train.defaults import SEARCH_BUDGET, default_learning_rate, rate_ladder
from gora.train.recipe import TrainingRecipe
from gora.train.search import LearningRateSearch

HERE = Path(__file__).parent
METHODS = ("lora", "gora")
# One JSON per (task, method, seed): the plain run and the searched one.
PAIRS = HERE / "runs" / "search"
TASKS = ("r8", "arithmetic")


def run(method: str, settings, data, seed: int, searched: bool) -> dict[str, Any]:
    started = time.perf_counter()
    base, tokenizer = load_base(settings, data.labels, seed)
    train_ds = encode_train(data.train_rows, tokenizer, settings, data.labels)
    valid_ds = encode_train(data.valid_rows, tokenizer, settings, data.labels)
    collator = collator_for(tokenizer)
    built = build(method, settings, base, tokenizer, seed, train_ds, collator)
    default = default_learning_rate(method, settings.hf_task)
    work = Path(tempfile.mkdtemp(prefix="gora-search-bench-"))
    config = TrainingConfig(learning_rate=default, n_epochs=settings.n_epochs,
                            batch_size=settings.batch_size, seed=seed, log_every=10,
                            output_dir=work / "search")  # fmt: skip
    record: dict[str, Any] = {"method": method, "seed": seed, "searched": searched}
    checkpoint = None
    if searched:
        result = LearningRateSearch(
            built.model, train_ds, collator, config, valid_ds, rate_ladder(default),
        ).run()  # fmt: skip
        config = dataclasses.replace(config, learning_rate=result.chosen.learning_rate)
        checkpoint = latest_checkpoint(result.chosen.output_dir)
        record["search"] = result.to_dict()
    recipe = TrainingRecipe(built.model, train_ds, collator,
                            dataclasses.replace(config, output_dir=work / "run"))  # fmt: skip
    recipe.setup()
    try:
        recipe.train(checkpoint)
    finally:
        recipe.cleanup()
    # A job's work, to the end of training (the test evaluation is the benchmark's, not the job's).
    record["wall_s"] = round(time.perf_counter() - started, 1)
    record |= {"lr": float(config.learning_rate),
               "test": test_scores(built.model, tokenizer, settings, data)}  # fmt: skip
    log(json.dumps({k: v for k, v in record.items() if k != "search"}))
    return record


def test_scores(model, tokenizer, settings, data) -> dict[str, Any]:
    if settings.is_classification:
        test_ds = encode_train(data.test_rows, tokenizer, settings, data.labels)
        return classification_metrics(model, test_ds, tokenizer)
    return exact_match(model, tokenizer, data.test_rows, settings.max_new_tokens)


def metric_of(task: str) -> str:
    return "accuracy" if settings_for(task, False).is_classification else "exact_match"


def oracle_rows(task: str) -> dict[str, list[dict[str, Any]]]:
    """The quality table's rows: each method at its grid-best rate (results.json)."""
    rows = json.loads((HERE / "results.json").read_text())
    metric = metric_of(task)
    return {
        m: [r for r in rows if r["task"] == task and r["method"] == m and r["metric"] == metric]
        for m in METHODS
    }


def summary(task: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    table, oracle, metric = {}, oracle_rows(task), metric_of(task)
    for method in METHODS:
        mine = [r for r in records if r["method"] == method]
        auto = [r for r in mine if not r["searched"]]
        found = [r for r in mine if r["searched"]]
        ratios = [s["wall_s"] / a["wall_s"] for s, a in zip(found, auto, strict=True)]
        table[method] = {
            "auto": _mean_sd([100 * r["test"][metric] for r in auto]),
            "searched": _mean_sd([100 * r["test"][metric] for r in found]),
            "oracle": _mean_sd([100 * r["value"] for r in oracle[method]]),
            "oracle_lr": sorted({r["lr"] for r in oracle[method]}),
            "chosen_lr": [r["lr"] for r in found],
            "wall_ratio": _mean_sd(ratios),
            "step_cost": [r["search"]["cost"] for r in found],
        }
    return {"metric": metric, "table": table, "runs": records}


def _mean_sd(values: list[float]) -> list[float]:
    if not values:
        return []
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    return [round(statistics.mean(values), 2), round(sd, 2), len(values)]


def markdown(summary: dict[str, Any]) -> str:
    """A task's table of docs/benchmarks.md ("The learning-rate search"), from search.json."""

    def cell(stats: list[float]) -> str:
        return f"{stats[0]:.1f} ± {stats[1]:.1f} ({stats[2]})" if stats else "–"

    lines = [
        "| method | auto | searched | oracle (grid best on validation) | rates chosen | "
        "wall time, searched / auto | training work (steps' worth) |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, row in summary["table"].items():
        ratio = row["wall_ratio"]
        lines.append(
            f"| {method} | {cell(row['auto'])} | {cell(row['searched'])} | {cell(row['oracle'])} "
            f"at {', '.join(f'{r:g}' for r in row['oracle_lr'])} | "
            f"{', '.join(f'{r:g}' for r in row['chosen_lr'])} | "
            f"{ratio[0]:.2f} ± {ratio[1]:.2f} | {', '.join(f'{c:.2f}' for c in row['step_cost'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--method", choices=METHODS, action="append", help="default: both")
    parser.add_argument("--task", choices=TASKS, default="r8")
    parser.add_argument("--seed", type=int, action="append", help="default: 0, 1, 2")
    parser.add_argument("--table", action="store_true", help="print the table from search.json")
    args = parser.parse_args(argv)
    if args.table:
        for task, results in json.loads(SUMMARY.read_text())["tasks"].items():
            print(f"{task} ({results['metric']}, %):\n{markdown(results)}\n")
        return
    settings = settings_for(args.task, args.quick)
    data = task_rows(settings)
    if args.quick:
        records = [run(m, settings, data, 0, s) for m in METHODS for s in (False, True)]
        print(markdown(summary(args.task, records)))
        return
    PAIRS.mkdir(parents=True, exist_ok=True)
    for seed in args.seed or (0, 1, 2):
        for method in args.method or METHODS:  # kept after each pair: a stopped run keeps it
            pair = PAIRS / f"{args.task}-{method}-seed{seed}.json"
            if pair.exists():
                continue
            records = [run(method, settings, data, seed, searched) for searched in (False, True)]
            pair.write_text(json.dumps(records, indent=1))
            write_summary()


SUMMARY = HERE / "search.json"


def write_summary() -> None:
    tasks = {}
    for task in TASKS:
        paths = sorted(PAIRS.glob(f"{task}-*.json"))
        records = [r for path in paths for r in json.loads(path.read_text())]
        records.sort(key=lambda r: (r["seed"], METHODS.index(r["method"]), r["searched"]))
        if records:
            tasks[task] = summary(task, records)
    SUMMARY.write_text(json.dumps({"budget": SEARCH_BUDGET, "tasks": tasks}, indent=1))
    log(f"wrote {SUMMARY}")


if __name__ == "__main__":
    main()
