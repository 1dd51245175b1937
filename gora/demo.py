"""``make run`` for now: GoRA fine-tunes SmolLM2-135M-Instruct on the instruction set in ``examples/``.

Loads the bundled model, probes its gradients, prints the per-layer rank allocation, trains with a
progress bar, saves the adapter (PEFT and uniform formats), and answers one question with the base and
the tuned model side by side. Everything runs offline on a CPU in a few minutes.

    .venv/bin/python -m gora.demo [--out out/demo] [--epochs 1] [--probe-steps 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from gora import GoraConfig, get_gora_model, load_base_model, save_adapter
from gora.data.encoding import build_dataset
from gora.data.formats import read_jsonl
from gora.data.loading import collator_for, make_batches
from gora.report_table import allocation_table
from gora.train import Metrics, TrainingCallbacks, TrainingConfig, train

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "instructions.jsonl"
QUESTIONS = ["What is 47 plus 38?", "What is 9 times 7?"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="GoRA on SmolLM2-135M, offline, on the CPU")
    parser.add_argument("--data", type=Path, default=EXAMPLES)
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--probe-steps", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--max-steps", type=int, default=None)
    return parser.parse_args(argv)


class ProgressBar(TrainingCallbacks):
    """A rich progress bar on optimizer steps with the latest loss."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.task = progress.add_task("training", total=None, loss="")

    def on_progress(self, progress) -> None:
        self.progress.update(self.task, completed=progress.step, total=progress.total_steps)

    def on_metrics(self, metrics: Metrics) -> None:
        self.progress.update(self.task, loss=f"loss {metrics.loss:.3f}")


@torch.no_grad()
def answer(model, tokenizer, question: str) -> str:
    messages = [{"role": "user", "content": question}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    output = model.generate(
        **inputs, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    return tokenizer.decode(
        output[0, inputs.input_ids.shape[1] :], skip_special_tokens=True
    ).strip()


def main(argv=None) -> None:
    args = parse_args(argv)
    console = Console()
    torch.manual_seed(0)
    console.rule("GoRA demo: SmolLM2-135M-Instruct, offline, CPU")
    with console.status("loading smollm2-135m (the first run converts the GGUF file once)"):
        base, tokenizer = load_base_model("smollm2-135m", "causal_lm")
    fmt, rows = read_jsonl(str(args.data))
    dataset, stats = build_dataset(rows, fmt, tokenizer, "causal_lm", max_length=256)
    console.print(
        f"data: {stats.examples} {fmt} examples, {stats.trained_tokens:,} trained tokens "
        f"from {args.data}"
    )
    collator = collator_for(tokenizer)
    cfg = GoraConfig(r_ref=8, alpha=16, target_modules="all-linear", probe_steps=args.probe_steps)
    with console.status(f"probing gradients over {cfg.probe_steps} batches"):
        model = get_gora_model(base, cfg, make_batches(dataset, collator, 8, seed=cfg.seed))
    console.print(allocation_table(model.gora_report.to_dict()))
    config = TrainingConfig(
        learning_rate=args.learning_rate,
        n_epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=8,
        log_every=5,
        seed=cfg.seed,
    ).resolve(adapter_type="gora", task="causal_lm", n_examples=len(dataset))
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
    ]
    with Progress(*columns, TextColumn("{task.fields[loss]}"), TimeRemainingColumn()) as bar:
        result = train(model, dataset, collator, config, callbacks=ProgressBar(bar))
    console.print(
        f"trained {result.steps} steps, {result.trained_tokens:,} tokens in {result.wall_time_s:.0f} s; "
        f"loss {result.losses[0]:.3f} -> {result.final_loss:.3f}"
    )
    save_adapter(model, args.out / "adapter")
    save_adapter(model, args.out / "adapter-uniform", format="uniform")
    console.print(
        f"adapter saved to {args.out / 'adapter'} (PEFT) and {args.out / 'adapter-uniform'}"
    )
    model.eval()
    for question in QUESTIONS:
        with model.disable_adapter():
            before = answer(model, tokenizer, question)
        after = answer(model, tokenizer, question)
        console.print(f"[bold]Q:[/] {question}\n  base:  {before}\n  GoRA:  {after}")


if __name__ == "__main__":
    main()
