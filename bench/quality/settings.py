"""The settings of each task, full and quick: sizes chosen for one shared CPU core (docs/benchmarks.md).

Every method of a task gets the same data, steps, batch order (the seed) and learning-rate grid.
"""

from __future__ import annotations

from dataclasses import dataclass

METHODS = (
    "lora",
    "gora",
    "gora_gamma0",
    "gora_fixed_rank",
    "pissa",
    "lora_ga",
    "eva",
    "adalora",
    "full",
)

# Controls that answer a question the methods raise; their rows go to diagnostics.json,
# never to the table's results.json (whose method names the issue fixes).
#   lora_rslora: LoRA with GoRA's α/√r scaling and nothing else of GoRA (every rank 8, B = 0).
DIAGNOSTIC_METHODS = ("lora_rslora",)
# r8_pilot: the calibration pilot's setting: the whole R8 train split, 128 tokens, batch 32.
DIAGNOSTIC_TASKS = ("r8_pilot",)


@dataclass(frozen=True)
class TaskSettings:
    task: str
    model: str
    hf_task: str
    targets: str | tuple[str, ...]
    max_length: int
    n_train: int  # training subsample (after the validation carve-out)
    n_valid: int  # validation rows carved from train: the learning rate is chosen on these
    n_test: int | None  # None: the whole test split
    batch_size: int
    n_epochs: float
    probe_steps: int  # GoRA probe batches (and LoRA-GA / EVA preprocessing batches)
    lr_grid: tuple[float, ...]
    max_new_tokens: int = 0  # generation tasks only
    r_ref: int = 8
    alpha: float = 16.0

    @property
    def is_classification(self) -> bool:
        return self.hf_task == "sequence_classification"

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("accuracy", "macro_f1") if self.is_classification else ("exact_match",)

    @property
    def selection_metric(self) -> str:
        # Accuracy on R8, as in the calibration pilot.
        return "accuracy" if self.is_classification else "exact_match"


R8 = TaskSettings(
    task="r8",
    model="minilm-l6",
    hf_task="sequence_classification",
    targets="all-linear",
    max_length=64,
    n_train=2000,
    n_valid=500,
    n_test=None,
    batch_size=16,
    n_epochs=1,
    probe_steps=32,
    lr_grid=(1e-4, 2e-4, 5e-4, 1e-3),
)

# The calibration pilot's setting: one epoch of the whole train split (less the validation carve-out),
# 128 tokens, batch 32, the paper's 64 probe batches. About five times R8's cost per run.
R8_PILOT = TaskSettings(
    **{
        **R8.__dict__,
        "task": "r8_pilot",
        "max_length": 128,
        "n_train": 5485,  # all of it: 4,985 rows once the validation rows are carved out
        "batch_size": 32,
        "probe_steps": 64,
        "lr_grid": (1e-4, 2e-4, 5e-4),  # the pilot's grid without 5e-5
    }
)

ARITHMETIC = TaskSettings(
    task="arithmetic",
    model="smollm2-135m",
    hf_task="causal_lm",
    targets="all-linear",
    max_length=144,  # the longest problem with its worked answer is ~137 tokens: none is cut
    n_train=384,
    n_valid=64,
    n_test=200,
    batch_size=8,
    n_epochs=1,
    probe_steps=16,
    # R8's grid. Widened in two steps, each time because a method's best sat on an edge: 1e-3 after
    # LoRA chose 5e-4, then 1e-4 after GoRA chose 2e-4. Every method gets every point.
    lr_grid=(1e-4, 2e-4, 5e-4, 1e-3),
    max_new_tokens=80,  # the longest worked answer is ~76 tokens
)

# Quick mode: one seed, one learning rate (docs/training.md's default per method), far fewer steps;
# a smoke test for regressions in gora/, not a measurement.
QUICK = {
    "r8": TaskSettings(**{**R8.__dict__, "n_train": 512, "n_valid": 200, "probe_steps": 8}),
    "arithmetic": TaskSettings(
        **{**ARITHMETIC.__dict__, "n_train": 160, "n_valid": 50, "n_test": 100, "probe_steps": 8}
    ),
}
QUICK_LR = {"r8": {"gora": 2e-4}, "arithmetic": {}}
QUICK_DEFAULT_LR = {"r8": 1e-4, "arithmetic": 2e-4}


# Same number of grid points, a grid that suits the method: updating every pretrained weight wants
# rates an order of magnitude below an adapter's (BERT's usual 2e-5 to 1e-4).
LR_GRID_OVERRIDES = {("r8", "full"): (2e-5, 5e-5, 1e-4, 2e-4)}


def lr_grid(settings: TaskSettings, method: str) -> tuple[float, ...]:
    return LR_GRID_OVERRIDES.get((settings.task, method), settings.lr_grid)


def settings_for(task: str, quick: bool) -> TaskSettings:
    if quick:
        return QUICK[task]
    return {"r8": R8, "arithmetic": ARITHMETIC, "r8_pilot": R8_PILOT}[task]


def quick_lr(task: str, method: str) -> float:
    return QUICK_LR[task].get(method, QUICK_DEFAULT_LR[task])
