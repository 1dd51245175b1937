"""What "auto" means: default learning rates, batch sizes and epochs per method and task.

Every number here has a source, listed in docs/training.md:

- Sequence classification, measured by the project with an independent minimal implementation
  (MiniLM-L6 on Reuters R8, one epoch, r_ref 8, LoRA+ ratio 16, head at 16x; test accuracy at
  lr 5e-5 / 1e-4 / 2e-4 / 5e-4): LoRA 84.8 / 90.1 / 83.8 / 80.1, GoRA 85.1 / 87.6 / 94.7 / 49.5 (GoRA
  diverged at 5e-4). Our own code in that setting (the quality benchmark's ``r8_pilot``, seed 0,
  validation accuracy): LoRA 92.2 / 96.2 / 93.4 at 1e-4 / 2e-4 / 5e-4, GoRA 96.8 at 2e-4; on a 2,000-doc
  subsample LoRA's best was 5e-4. So both 2e-4: GoRA's α/√r scaling puts its cliff just above that, and
  LoRA at 1e-4 was the worst of its three rates in both of our settings.
- Causal LM, small models (below 3B): measured by the quality benchmark (docs/benchmarks.md,
  SmolLM2-135M on generated arithmetic, validation exact match at lr 1e-4 / 2e-4 / 5e-4 / 1e-3):
  LoRA 18.8 / 31.2 / 43.8 / 43.8, GoRA 42.2 / 34.4 / 25.0 / 1.6. So LoRA 5e-4, GoRA 1e-4. LoRA's best
  rate sits about √r_ref times higher because its adapters are scaled by α/r, GoRA's by α/√r.
- Causal LM, models from 3B parameters, not measured here: the paper's 5e-5 (Llama-3.1-8B), used for
  LoRA and GoRA alike.
- DPO: 0.2x the supervised rate, measured (``DPO_LR_RATIO``, docs/benchmarks.md "Preference tuning").
- Classifier head (``modules_to_save``) at 16x the base rate: measured (LoRA at 1e-4 after 80 steps on
  R8: 77 % validation accuracy with the head at 1x, 83 % at 16x).
"""

from __future__ import annotations

import math

from gora.config import ADAPTER_TYPES
from gora.model_registry import TASKS

HEAD_LR_RATIO = 16.0

_CLASSIFICATION_LR = {"lora": 2e-4, "gora": 2e-4}
_CAUSAL_LM_LR_SMALL = {"lora": 5e-4, "gora": 1e-4}  # measured: SmolLM2-135M, bench/quality
_CAUSAL_LM_LR_LARGE = 5e-5  # paper: Llama-3.1-8B
LARGE_MODEL_PARAMS = 3_000_000_000
# DPO's rate as a fraction of the supervised one: measured by bench/quality/dpo.py (SmolLM2-135M,
# arithmetic preference pairs, validation DPO loss at 2e-5 / 1e-4 / 5e-4): LoRA's best 1e-4 (0.2 x its
# supervised 5e-4), GoRA's 2e-5 (0.2 x its 1e-4; it diverged at 5e-4). docs/benchmarks.md.
DPO_LR_RATIO = 0.2

# batch_size="auto": OpenAI's documented rule (about 0.2 % of the training examples) rounded to a power
# of two and kept within the range LoRA recipes use; micro-batches above the cap become accumulation.
AUTO_BATCH_FRACTION = 0.002
AUTO_BATCH_MIN, AUTO_BATCH_MAX = 8, 64
MAX_MICRO_BATCH = {"causal_lm": 8, "sequence_classification": 32}

# n_epochs="auto": the paper's one epoch, repeated on small datasets until training has seen about
# MIN_EXAMPLES_SEEN examples (a few dozen optimizer steps), never more than MAX_AUTO_EPOCHS passes.
MIN_EXAMPLES_SEEN = 1000
MAX_AUTO_EPOCHS = 10


def _check(adapter_type: str, task: str) -> None:
    if adapter_type not in ADAPTER_TYPES:
        raise ValueError(f"adapter_type must be one of {ADAPTER_TYPES}; got {adapter_type!r}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}; got {task!r}")


def default_learning_rate(
    adapter_type: str, task: str, n_params: int | None = None, *, objective: str = "sft"
) -> float:
    """The base learning rate (that of LoRA A) for this method and task; B trains at ratio_b times it.

    ``n_params`` (the base model's parameter count) only matters for causal LMs: from 3B up the paper's
    large-model rate applies. ``objective="dpo"``: the supervised rate times ``DPO_LR_RATIO``.
    """
    _check(adapter_type, task)
    if objective == "dpo":
        return DPO_LR_RATIO * default_learning_rate(adapter_type, task, n_params)
    if task == "sequence_classification":
        return _CLASSIFICATION_LR[adapter_type]
    if n_params is not None and n_params >= LARGE_MODEL_PARAMS:
        return _CAUSAL_LM_LR_LARGE
    return _CAUSAL_LM_LR_SMALL[adapter_type]


def _nearest_power_of_two(value: float) -> int:
    return 2 ** round(math.log2(max(value, 1.0)))


def default_batch_size(task: str, n_examples: int, grad_accum_steps: int = 1) -> tuple[int, int]:
    """``(micro_batch, grad_accum_steps)`` for ``batch_size="auto"``.

    The effective batch is about 0.2 % of the examples as a power of two within [8, 64] (and at most
    the number of examples). With
    ``grad_accum_steps`` left at 1 the recipe splits it into micro-batches of at most
    ``MAX_MICRO_BATCH[task]``; a larger ``grad_accum_steps`` given by the user is kept.
    """
    _check("lora", task)
    if n_examples < 1:
        raise ValueError(f"n_examples must be >= 1; got {n_examples}")
    effective = _nearest_power_of_two(AUTO_BATCH_FRACTION * n_examples)
    # Never more than the examples there are: a batch larger than the dataset is the dataset.
    effective = min(max(effective, AUTO_BATCH_MIN), AUTO_BATCH_MAX, n_examples)
    if grad_accum_steps > 1:
        return max(1, effective // grad_accum_steps), grad_accum_steps
    micro = min(effective, MAX_MICRO_BATCH[task])
    return micro, effective // micro


def split_batch(task: str, batch_size: int) -> tuple[int, int]:
    """``(micro_batch, grad_accum_steps)`` for an effective ``batch_size`` a user gave.

    The micro-batch is the largest divisor of ``batch_size`` within ``MAX_MICRO_BATCH[task]``, so the
    effective batch is exactly what was asked for.
    """
    _check("lora", task)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    micro = max(
        d for d in range(1, min(batch_size, MAX_MICRO_BATCH[task]) + 1) if batch_size % d == 0
    )
    return micro, batch_size // micro


def default_n_epochs(n_examples: int) -> int:
    """One epoch (the paper's recipe) unless the dataset is small; see MIN_EXAMPLES_SEEN."""
    if n_examples < 1:
        raise ValueError(f"n_examples must be >= 1; got {n_examples}")
    return min(MAX_AUTO_EPOCHS, max(1, math.ceil(MIN_EXAMPLES_SEEN / n_examples)))


# learning_rate_multiplier="search" (gora.train.search): candidates on the 1-2-5 ladder around the
# default, one rung below and one above. Every best rate measured (R8 and arithmetic, GoRA and LoRA)
# sat at 0.5-2.5x its default; a fourth candidate (a second rung above, as before) cost the budget a
# third of its rung length, and the early rungs are where the search errs (docs/benchmarks.md). At
# most SEARCH_BUDGET plain runs' worth of steps.
LADDER = (1.0, 2.0, 5.0)
SEARCH_BELOW, SEARCH_ABOVE = 1, 1
SEARCH_BUDGET = 1.75


def rate_ladder(center: float, below: int = SEARCH_BELOW, above: int = SEARCH_ABOVE) -> list[float]:
    """``center`` snapped to the 1-2-5 ladder, with ``below`` rungs under it and ``above`` over it."""
    if not center > 0:
        raise ValueError(f"center must be a positive rate; got {center!r}")
    exponent = math.floor(math.log10(center))
    points = [m * 10.0**e for e in range(exponent - 2, exponent + 3) for m in LADDER]
    nearest = min(range(len(points)), key=lambda i: abs(math.log(points[i] / center)))
    return [float(f"{p:.3g}") for p in points[nearest - below : nearest + above + 1]]
