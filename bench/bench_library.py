"""Cost of GoRA next to plain LoRA on a real model, measured side by side in one run.

    .venv/bin/python bench/bench_library.py                 # smollm2-135m, CPU, all-linear, r_ref 8
    python bench/bench_library.py --model random-llama-1b --dtype bfloat16   # a GPU: no weights needed

Prints three ratios (their targets in brackets):
  1. training-step throughput, GoRA / PEFT LoRA at the same r_ref and targets   [>= 0.97]
  2. probing time per batch / LoRA training-step time                          [<= 1.5]
  3. (peak memory while probing - peak while LoRA-training) / (4 B x target weights)  [<= 1.1]
Step times are interleaved (GoRA, LoRA, LoRA, GoRA, ...; probe, LoRA, probe, LoRA, ...) so drift in the
machine's speed hits both sides of each ratio alike.
Peak memory is measured in a fresh child process per mode: on CUDA with the allocator's peak counter,
on CPU with the process's peak resident set (VmHWM, reset after the model is loaded).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from gora import GoraConfig, get_gora_model, load_base_model
from gora.probe import probe_gradients
from gora.targets import resolve_targets

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "instructions.jsonl"
# Llama-shaped models with random weights, for a machine that has no bundled model (the GPU check):
# the cost of probing and training does not depend on what the weights are.
RANDOM_MODELS = {
    "random-llama-1b": dict(
        hidden_size=2048, intermediate_size=5632, num_hidden_layers=16, num_attention_heads=16,
        num_key_value_heads=8, vocab_size=32000, max_position_embeddings=4096,
    ),
    "random-llama-tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=512, max_position_embeddings=512,
    ),
}  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", default="smollm2-135m", help="a model name, or one of RANDOM_MODELS"
    )
    parser.add_argument(
        "--dtype", default="float32", help="the base model's dtype (bfloat16 on a GPU)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per method")
    parser.add_argument("--probe-steps", type=int, default=8)
    parser.add_argument("--r-ref", type=int, default=8)
    parser.add_argument("--targets", default="all-linear", help="'all-linear' or comma-separated")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's); use 1 on a shared machine, where more threads "
        "than free cores make every parallel op wait on a descheduled thread",
    )
    parser.add_argument("--memory-child", choices=["probe", "lora"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def targets_of(args) -> str | list[str]:
    return args.targets if args.targets == "all-linear" else args.targets.split(",")


def text_corpus() -> str:
    """Real English text for the batches: the demo's instruction set, rendered as plain text."""
    lines = []
    for raw in EXAMPLES.read_text().splitlines():
        row = json.loads(raw)
        lines.extend(m["content"] for m in row.get("messages", []))
    return "\n".join(lines)


def make_batches(tokenizer, args, count: int, device: str) -> list[dict[str, torch.Tensor]]:
    """``count`` full batches of ``seq_len`` tokens cut from the corpus (no padding: equal cost);
    random tokens for a random model (it has no tokenizer)."""
    if tokenizer is None:
        vocab = RANDOM_MODELS[args.model]["vocab_size"]
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(
            0, vocab, (count * args.batch_size * args.seq_len,), generator=generator
        )
    else:
        ids = tokenizer(text_corpus(), return_tensors="pt").input_ids[0]
    per_batch = args.batch_size * args.seq_len
    while len(ids) < count * per_batch:
        ids = torch.cat([ids, ids])
    chunks = ids[: count * per_batch].view(count, args.batch_size, args.seq_len).to(device)
    return [{"input_ids": c, "attention_mask": torch.ones_like(c), "labels": c} for c in chunks]


def load(args):
    if args.model in RANDOM_MODELS:
        from transformers import LlamaConfig, LlamaForCausalLM

        torch.manual_seed(0)
        model, tokenizer = LlamaForCausalLM(LlamaConfig(**RANDOM_MODELS[args.model])), None
    else:
        model, tokenizer = load_base_model(args.model, "causal_lm")
    return model.to(device=args.device, dtype=getattr(torch, args.dtype)), tokenizer


def make_optimizer(model) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_step(model, optimizer, batch, device) -> float:
    sync(device)
    start = time.perf_counter()
    model(**batch).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sync(device)
    return time.perf_counter() - start


def measure_speed(args) -> dict[str, float]:
    base_gora, tokenizer = load(args)
    base_lora, _ = load(args)
    batches = make_batches(tokenizer, args, max(args.steps, args.probe_steps) + 2, args.device)
    cfg = dict(r_ref=args.r_ref, target_modules=targets_of(args), probe_steps=args.probe_steps)
    gora = get_gora_model(base_gora, GoraConfig(**cfg), batches).train()
    lora = get_gora_model(base_lora, GoraConfig(type="lora", **cfg)).train()
    optimizers = {"gora": make_optimizer(gora), "lora": make_optimizer(lora)}
    models = {"gora": gora, "lora": lora}
    for name in models:  # warm-up: first steps allocate optimizer state and caches
        timed_step(models[name], optimizers[name], batches[0], args.device)
    times: dict[str, list[float]] = {"gora": [], "lora": []}
    for i in range(args.steps):
        order = ("gora", "lora") if i % 2 == 0 else ("lora", "gora")
        for name in order:
            times[name].append(timed_step(models[name], optimizers[name], batches[i], args.device))
    probe_batch, lora_step = time_probe_against_lora(args, batches, lora, optimizers["lora"])
    return {
        "gora_step_s": statistics.median(times["gora"]),
        "lora_step_s": statistics.median(times["lora"]),
        "probe_batch_s": probe_batch,
        "lora_step_beside_probe_s": lora_step,
        "trainable_gora": sum(p.numel() for p in gora.parameters() if p.requires_grad),
        "trainable_lora": sum(p.numel() for p in lora.parameters() if p.requires_grad),
        "rank_range": [min(gora.gora_report.ranks.values()), max(gora.gora_report.ranks.values())],
    }


def time_probe_against_lora(args, batches, lora, optimizer) -> tuple[float, float]:
    """Median seconds of one probed batch and of one LoRA step, alternated on the same batches.

    Each probe call also allocates its fp32 accumulators, a cost a real probe pays once: the
    figure errs on the probe's side.
    """
    base, _ = load(args)
    names = list(resolve_targets(base, targets_of(args)))
    probe_gradients(base, names, batches[:1], steps=1)  # warm-up
    probe_times, lora_times = [], []
    for batch in batches[: args.steps]:
        sync(args.device)
        start = time.perf_counter()
        probe_gradients(base, names, [batch], steps=1)
        sync(args.device)
        probe_times.append(time.perf_counter() - start)
        lora_times.append(timed_step(lora, optimizer, batch, args.device))
    return statistics.median(probe_times), statistics.median(lora_times)


# --- peak memory, one child process per mode --------------------------------------------------


def _reset_peak(device: str) -> int:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
    return _status_bytes("VmRSS")


def _peak(device: str) -> int:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    return _status_bytes("VmHWM")


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(args) -> None:
    """Peak memory above the loaded model for one mode; prints one JSON line."""
    base, tokenizer = load(args)
    batches = make_batches(tokenizer, args, args.probe_steps, args.device)
    names = list(resolve_targets(base, targets_of(args)))
    target_params = sum(dict(base.named_modules())[n].weight.numel() for n in names)
    if args.memory_child == "probe":
        baseline = _reset_peak(args.device)
        probe_gradients(base, names, batches, steps=args.probe_steps)
    else:
        cfg = GoraConfig(type="lora", r_ref=args.r_ref, target_modules=targets_of(args))
        model = get_gora_model(base, cfg).train()
        optimizer = make_optimizer(model)
        baseline = _reset_peak(args.device)
        for batch in batches:
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    print(
        json.dumps(
            {"peak_above_model": _peak(args.device) - baseline, "target_params": target_params}
        )
    )


def measure_memory(args) -> dict[str, int]:
    results = {}
    for mode in ("probe", "lora"):
        command = [sys.executable, __file__, "--memory-child", mode, *sys.argv[1:]]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[mode] = json.loads(output.strip().splitlines()[-1])
    return {
        "probe_peak": results["probe"]["peak_above_model"],
        "lora_peak": results["lora"]["peak_above_model"],
        "target_params": results["probe"]["target_params"],
    }


def report(args, speed, memory) -> None:
    throughput_ratio = speed["lora_step_s"] / speed["gora_step_s"]
    probe_ratio = speed["probe_batch_s"] / speed["lora_step_beside_probe_s"]
    accumulators = 4 * memory["target_params"]
    memory_ratio = (memory["probe_peak"] - memory["lora_peak"]) / accumulators
    mib = 2**20
    print(
        f"model {args.model} on {args.device} ({torch.get_num_threads()} threads); "
        f"batch {args.batch_size} x {args.seq_len} tokens; "
        f"r_ref {args.r_ref}; targets {args.targets}; GoRA ranks {speed['rank_range']}"
    )
    print(f"trainable params: GoRA {speed['trainable_gora']:,}  LoRA {speed['trainable_lora']:,}")
    print(
        f"step time (median of {args.steps}): GoRA {speed['gora_step_s']:.3f} s  "
        f"LoRA {speed['lora_step_s']:.3f} s"
    )
    print(f"1. throughput GoRA/LoRA:           {throughput_ratio:.3f}   (target >= 0.97)")
    print(
        f"2. probe batch / LoRA step:        {probe_ratio:.3f}   (target <= 1.5; "
        f"probe {speed['probe_batch_s']:.3f} s/batch)"
    )
    print(
        f"3. (probe peak - LoRA peak) / 4B·W: {memory_ratio:.3f}   (target <= 1.1; probe "
        f"{memory['probe_peak'] / mib:.0f} MiB, LoRA {memory['lora_peak'] / mib:.0f} MiB, "
        f"accumulators {accumulators / mib:.0f} MiB)"
    )


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.memory_child:
        memory_child(args)
        return
    memory = measure_memory(args)
    speed = measure_speed(args)
    report(args, speed, memory)


if __name__ == "__main__":
    main()
