"""GoraConfig: every knob of the method, validated with errors that say how to fix the value."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gora.validation import (
    ConfigError,
    check_choice,
    check_int,
    check_number,
    dataclass_from_dict,
    fail,
)

ADAPTER_TYPES = ("gora", "lora")
IMPORTANCE_KINDS = ("union_mean", "grad_norm", "union_frobenius", "union_nuclear")
ALLOCATIONS = ("budget", "paper")
FEATURES = ("linear", "sqrt")


_OWNER = "GoraConfig"
_fail = partial(fail, _OWNER)
_check_int = partial(check_int, _OWNER)
_check_number = partial(check_number, _OWNER)
_check_choice = partial(check_choice, _OWNER)


@dataclass
class GoraConfig:
    """Settings of a GoRA (or, with ``type="lora"``, a plain LoRA) adapter.

    Defaults follow the paper (gora-spec.md): ``r_min = r_ref / 2`` and ``r_max = 4 r_ref`` when left
    as None, 64 probe steps, gamma 5e-2, union_mean importance, LoRA+ ratio 16.
    ``target_modules`` takes module-name suffixes (as PEFT does) or ``"all-linear"`` (every linear layer
    but the output head).
    """

    type: str = "gora"
    r_ref: int = 8
    alpha: float = 16.0
    target_modules: list[str] | str = "all-linear"
    r_min: int | None = None
    r_max: int | None = None
    probe_steps: int = 64
    gamma: float = 5e-2
    importance: str = "union_mean"
    allocation: str = "budget"
    features: str = "linear"
    lr_ratio_b: float = 16.0
    seed: int = 0
    lora_dropout: float = 0.0
    modules_to_save: list[str] | None = field(default=None)

    def __post_init__(self) -> None:
        _check_choice("type", self.type, ADAPTER_TYPES)
        _check_int("r_ref", self.r_ref, 1)
        _check_number("alpha", self.alpha, low=0.0, strict=True)
        self._check_targets()
        if self.r_min is None:
            self.r_min = max(1, self.r_ref // 2)
        if self.r_max is None:
            self.r_max = 4 * self.r_ref
        _check_int("r_min", self.r_min, 0)
        _check_int("r_max", self.r_max, 1)
        if not self.r_min <= self.r_ref <= self.r_max:
            raise ConfigError(
                _OWNER,
                "r_min" if self.r_min > self.r_ref else "r_max",
                f"GoraConfig needs r_min <= r_ref <= r_max; got r_min={self.r_min}, "
                f"r_ref={self.r_ref}, r_max={self.r_max} (paper: r_ref/2 and 4*r_ref)",
            )
        _check_int("probe_steps", self.probe_steps, 1)
        _check_number("gamma", self.gamma, low=0.0, strict=False)
        _check_choice("importance", self.importance, IMPORTANCE_KINDS)
        _check_choice("allocation", self.allocation, ALLOCATIONS)
        _check_choice("features", self.features, FEATURES)
        _check_number("lr_ratio_b", self.lr_ratio_b, low=0.0, strict=True)
        _check_int("seed", self.seed, 0)
        _check_number("lora_dropout", self.lora_dropout, low=0.0, strict=False)
        if self.lora_dropout >= 1:
            _fail("lora_dropout", self.lora_dropout, "in [0, 1)")

    def _check_targets(self) -> None:
        targets = self.target_modules
        if targets == "all-linear":
            return
        if isinstance(targets, str):
            self.target_modules = targets = [targets]
        if not isinstance(targets, list | tuple) or not targets:
            _fail("target_modules", targets, "'all-linear' or a non-empty list of module names")
        if not all(isinstance(t, str) and t for t in targets):
            _fail("target_modules", targets, "a list of non-empty strings")
        self.target_modules = list(targets)

    @property
    def is_gora(self) -> bool:
        return self.type == "gora"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GoraConfig:
        """Builds a config from a mapping; an unknown key is an error naming it."""
        return dataclass_from_dict(cls, values)
