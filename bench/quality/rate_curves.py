"""Why the search errs where it does: each rate's whole run, scored as the search scores a trial.

For R8 (MiniLM-L6) and each method, the plain run at each of the search's three candidate rates,
with the validation loss and accuracy on the search's scored examples (gora.train.search:
``scored_examples``) every 5 steps, and the test accuracy at the end. A search is these runs cut
at its rungs (its trials are bit-exact pieces of them), so the curves show what each rung could
see: where the rates' order at step 25 or 50 is the order at the end, and where it is not.

    python -m bench.quality.rate_curves --method lora --seed 0   # ~12 min on one CPU thread
    python -m bench.quality.rate_curves --table                   # the table, from rate_curves.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: the machine's cores are shared

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from bench.quality.data import encode_train, task_rows
from bench.quality.evaluate import accuracy, classification_metrics
from bench.quality.methods import build, load_base
from bench.quality.settings import settings_for
from gora.data.loading import collator_for
from gora.train import TrainingConfig
from gora.train.collapse import classify
from gora.train.defaults import default_learning_rate, rate_ladder
from gora.train.events import TrainingCallbacks
from gora.train.recipe import TrainingRecipe
from gora.train.search import scored_examples

HERE = Path(__file__).parent
OUT = HERE / "rate_curves.json"
EVERY = 5  # steps between scorings


class Scoring(TrainingCallbacks):
    """Scores the model on ``examples`` every ``EVERY`` steps, as a trial is scored at a rung."""

    def __init__(self, model, examples, collator):
        self.model, self.examples, self.collator = model, examples, collator
        self.curve: list[tuple[int, float, float]] = []  # (step, validation loss, accuracy)

    def on_progress(self, progress) -> None:
        if progress.step % EVERY:
            return
        predicted, labels, loss = classify(self.model, self.examples, self.collator)
        self.curve.append((progress.step, loss, accuracy(predicted, labels)))


def curve(method: str, seed: int, lr: float, settings, data) -> dict[str, Any]:
    base, tokenizer = load_base(settings, data.labels, seed)
    train_ds = encode_train(data.train_rows, tokenizer, settings, data.labels)
    valid_ds = encode_train(data.valid_rows, tokenizer, settings, data.labels)
    collator = collator_for(tokenizer)
    model = build(method, settings, base, tokenizer, seed, train_ds, collator).model
    scoring = Scoring(model, list(scored_examples(valid_ds, seed)), collator)
    config = TrainingConfig(learning_rate=lr, n_epochs=settings.n_epochs, seed=seed,
                            batch_size=settings.batch_size, log_every=10,
                            output_dir=Path(tempfile.mkdtemp(prefix="gora-curves-")))  # fmt: skip
    recipe = TrainingRecipe(model, train_ds, collator, config, scoring)
    recipe.setup()
    try:
        recipe.train()
    finally:
        recipe.cleanup()
    test_ds = encode_train(data.test_rows, tokenizer, settings, data.labels)
    return {"method": method, "seed": seed, "lr": lr, "curve": scoring.curve,
            "test": classification_metrics(model, test_ds, tokenizer)}  # fmt: skip


def markdown(rows: list[dict[str, Any]], steps: tuple[int, ...] = (15, 25, 50, 60, 125)) -> str:
    """The table of docs/benchmarks.md: validation loss / accuracy at the search's rungs (15, 60),
    at the steps doubling rungs would have stopped at (25, 50), and at the end, beside the test
    accuracy."""
    head = " | ".join(f"step {s}" for s in steps)
    lines = [f"| method | seed | rate | {head} | test accuracy |",
             "|---|---|---|" + "---|" * len(steps) + "---|"]  # fmt: skip
    for row in rows:
        at = {step: (loss, accuracy) for step, loss, accuracy in row["curve"]}
        cells = " | ".join(f"{at[s][0]:.3f} / {100 * at[s][1]:.1f}" for s in steps)
        lines.append(f"| {row['method']} | {row['seed']} | {row['lr']:g} | {cells} | "
                     f"{100 * row['test']['accuracy']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=("lora", "gora"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--table", action="store_true", help="print the table from rate_curves.json"
    )
    args = parser.parse_args(argv)
    if args.table or args.method is None:
        print(markdown(json.loads(OUT.read_text())))
        return
    settings = settings_for("r8", False)
    data = task_rows(settings)
    kept = json.loads(OUT.read_text()) if OUT.exists() else []
    kept = [r for r in kept if (r["method"], r["seed"]) != (args.method, args.seed)]
    for lr in rate_ladder(default_learning_rate(args.method, settings.hf_task)):
        kept.append(curve(args.method, args.seed, lr, settings, data))
        OUT.write_text(json.dumps(kept, indent=1))


if __name__ == "__main__":
    main()
