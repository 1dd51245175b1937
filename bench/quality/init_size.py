"""How far GoRA's initialisation moves each layer before training: ‖s·B·A‖ / ‖W‖ per target layer.

    python -m bench.quality.init_size [--task r8] [--gamma 0.05]

GoRA starts at W + ΔW(0) with ΔW(0) ≈ one gradient-descent step of size γ on the probe's mean
gradient (gora-spec.md §3). This prints how large that step is next to the pretrained weights, for
the benchmark's own model, data and probe (seed 0), so the γ ablation can be read against it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
from dataclasses import replace

import torch

from bench.quality.data import encode_train, task_rows
from bench.quality.methods import gora_config, load_base
from bench.quality.settings import settings_for
from gora import get_gora_model
from gora.data.loading import collator_for, make_batches


@torch.no_grad()
def relative_init_sizes(model) -> list[tuple[str, int, float]]:
    """(layer, rank, ‖ΔW(0)‖ / ‖W‖) for every adapted layer of a fresh GoRA model."""
    sizes = []
    for name, module in model.base_model.model.named_modules():
        if not (hasattr(module, "lora_A") and "default" in module.lora_A):
            continue
        a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
        delta = module.scaling["default"] * (b @ a)
        sizes.append((name, a.shape[0], float(delta.norm() / module.base_layer.weight.norm())))
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="r8", choices=["r8", "arithmetic"])
    parser.add_argument("--gamma", type=float, default=None, help="default: GoRA's (5e-2)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = settings_for(args.task, quick=False)
    data = task_rows(settings)
    base, tokenizer = load_base(settings, data.labels, seed=0)
    dataset = encode_train(data.train_rows, tokenizer, settings, data.labels)
    config = gora_config("gora", settings, seed=0)
    if args.gamma is not None:
        config = replace(config, gamma=args.gamma)
    batches = make_batches(dataset, collator_for(tokenizer), settings.batch_size, seed=0)
    sizes = relative_init_sizes(get_gora_model(base, config, batches))
    ratios = [ratio for _, _, ratio in sizes]
    print(f"{args.task}, gamma {config.gamma:g}, {len(sizes)} layers, ‖ΔW(0)‖/‖W‖:")
    print(f"  median {statistics.median(ratios):.2e}, max {max(ratios):.2e}")
    for name, rank, ratio in sorted(sizes, key=lambda s: -s[2])[:5]:
        print(f"  {ratio:.2e}  rank {rank:>2}  {name}")


if __name__ == "__main__":
    main()
