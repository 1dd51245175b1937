"""TrainingConfig: the knobs of the training recipe, validated with errors that say how to fix the value.

Some values may be ``"auto"`` (as in OpenAI's fine-tuning API); ``resolve()`` turns them into numbers for
one adapter type, task and dataset size (see ``gora.train.defaults`` and docs/training.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from gora.config import GoraConfig
from gora.train import defaults
from gora.validation import (
    AUTO,
    ConfigError,
    check_int,
    check_number,
    dataclass_from_dict,
    fail,
    is_number,
)

_OWNER = "TrainingConfig"
OBJECTIVES = ("sft", "dpo")
_fail = partial(fail, _OWNER)
_check_int = partial(check_int, _OWNER)
_check_number = partial(check_number, _OWNER)


def _default_lr_ratio_b() -> float:
    # One source of truth for the LoRA+ ratio: GoraConfig's default (paper scripts: 16).
    return GoraConfig().lr_ratio_b


@dataclass
class TrainingConfig:
    """Settings of one training run (gora-spec.md §4; defaults and their sources in docs/training.md).

    ``batch_size`` is the micro-batch per device; one optimizer step sees
    ``batch_size * grad_accum_steps * world_size`` examples. ``max_steps`` caps the number of optimizer
    steps that ``n_epochs`` implies. ``checkpoint_every = 0`` turns checkpoints off; ``keep_checkpoints =
    None`` keeps all of them. ``output_dir = None`` trains in a temporary directory (no checkpoints kept).
    With an eval dataset, training evaluates every ``eval_every`` steps, before each checkpoint, and at
    the last step. The divergence guard warns once when the smoothed loss passes ``divergence_warn_ratio`` times the
    initial loss and stops training with ``TrainingDiverged`` past ``divergence_stop_ratio`` times it, or
    at the first non-finite loss. ``objective="dpo"`` trains on preference pairs with DPO's loss at
    ``beta`` (``gora.train.preference``), the reference being the model the adapter starts from.
    """

    learning_rate: float | str = AUTO
    n_epochs: float | str = AUTO
    max_steps: int | None = None
    batch_size: int | str = AUTO
    grad_accum_steps: int = 1
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.1
    lr_ratio_b: float = field(default_factory=_default_lr_ratio_b)
    head_lr_ratio: float = defaults.HEAD_LR_RATIO
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    bf16: bool | str = AUTO
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 0
    keep_checkpoints: int | None = 2
    output_dir: str | Path | None = None
    eval_every: int | None = None
    detect_divergence: bool = True
    divergence_warn_ratio: float = 2.0
    divergence_stop_ratio: float = 4.0
    divergence_window: int = 10
    objective: str = "sft"  # "sft" (next-token loss) or "dpo" (preference pairs)
    beta: float = 0.1  # DPO's β: how far from the reference the policy may move (OpenAI's 0.1)

    def __post_init__(self) -> None:
        _check_number("learning_rate", self.learning_rate, low=0.0, strict=True, auto=True)
        _check_number("n_epochs", self.n_epochs, low=0.0, strict=True, auto=True)
        _check_int("max_steps", self.max_steps, 1, optional=True)
        if self.batch_size != AUTO:
            _check_int("batch_size", self.batch_size, 1)
        _check_int("grad_accum_steps", self.grad_accum_steps, 1)
        _check_number("warmup_ratio", self.warmup_ratio, low=0.0, strict=False, high=1.0)
        _check_number("min_lr_ratio", self.min_lr_ratio, low=0.0, strict=False)
        if self.min_lr_ratio > 1:
            _fail("min_lr_ratio", self.min_lr_ratio, "in [0, 1] (a fraction of the peak rate)")
        _check_number("lr_ratio_b", self.lr_ratio_b, low=0.0, strict=True)
        _check_number("head_lr_ratio", self.head_lr_ratio, low=0.0, strict=True)
        _check_number("weight_decay", self.weight_decay, low=0.0, strict=False)
        _check_number("max_grad_norm", self.max_grad_norm, low=0.0, strict=False)
        if self.bf16 not in (AUTO, True, False):
            _fail("bf16", self.bf16, "'auto', True or False")
        _check_int("seed", self.seed, 0)
        _check_int("log_every", self.log_every, 1)
        _check_int("checkpoint_every", self.checkpoint_every, 0)
        _check_int("keep_checkpoints", self.keep_checkpoints, 1, optional=True)
        if self.output_dir is not None and not isinstance(self.output_dir, str | Path):
            _fail("output_dir", self.output_dir, "a path or None")
        if self.checkpoint_every and self.output_dir is None:
            _fail(
                "output_dir",
                None,
                "a directory when checkpoint_every > 0 (checkpoints need a home)",
            )
        _check_int("eval_every", self.eval_every, 1, optional=True)
        if not isinstance(self.detect_divergence, bool):
            _fail("detect_divergence", self.detect_divergence, "True or False")
        _check_number("divergence_warn_ratio", self.divergence_warn_ratio, low=1.0, strict=True)
        if not (is_number(self.divergence_stop_ratio) and self.divergence_stop_ratio >= 1.0):
            _fail("divergence_stop_ratio", self.divergence_stop_ratio, "a finite number >= 1")
        if self.divergence_stop_ratio < self.divergence_warn_ratio:
            _fail(
                "divergence_stop_ratio",
                self.divergence_stop_ratio,
                f">= divergence_warn_ratio ({self.divergence_warn_ratio}) so the warning comes first",
            )
        _check_int("divergence_window", self.divergence_window, 1)
        if self.objective not in OBJECTIVES:
            _fail("objective", self.objective, " or ".join(repr(o) for o in OBJECTIVES))
        _check_number("beta", self.beta, low=0.0, strict=True)

    @property
    def is_resolved(self) -> bool:
        return AUTO not in (self.learning_rate, self.n_epochs, self.batch_size)

    def resolve(
        self, *, adapter_type: str, task: str, n_examples: int, lr_multiplier: float = 1.0
    ) -> TrainingConfig:
        """A copy with every ``"auto"`` replaced by the documented default for this run.

        ``lr_multiplier`` scales the default learning rate (OpenAI's ``learning_rate_multiplier``);
        an explicit ``learning_rate`` is kept as given.
        """
        _check_number("lr_multiplier", lr_multiplier, low=0.0, strict=True)
        lr = self.learning_rate
        if lr == AUTO:
            lr = defaults.default_learning_rate(adapter_type, task, objective=self.objective)
            lr *= lr_multiplier
        batch, accum = self.batch_size, self.grad_accum_steps
        if batch == AUTO:
            batch, accum = defaults.default_batch_size(task, n_examples, accum)
        epochs = self.n_epochs
        if epochs == AUTO:
            epochs = defaults.default_n_epochs(n_examples)
        return dataclasses.replace(
            self, learning_rate=lr, batch_size=batch, grad_accum_steps=accum, n_epochs=epochs
        )

    def require_resolved(self) -> None:
        for name in ("learning_rate", "n_epochs", "batch_size"):
            if getattr(self, name) == AUTO:
                raise ConfigError(
                    _OWNER,
                    name,
                    f"TrainingConfig.{name} is 'auto'; call config.resolve(adapter_type=..., task=..., "
                    "n_examples=len(train_dataset)) before training",
                )

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        if values["output_dir"] is not None:
            values["output_dir"] = str(values["output_dir"])
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingConfig:
        """Builds a config from a mapping; an unknown key is an error naming it."""
        return dataclass_from_dict(cls, values)
