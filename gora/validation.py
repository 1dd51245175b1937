"""Checks for the configs' fields, with errors that name the field and the valid range (torch-free)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NoReturn, TypeVar

AUTO = "auto"

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value that cannot be used; ``field`` names it, so callers can point at it
    (the service answers ``param: "adapter.<field>"``) without reading the message."""

    def __init__(self, owner: str, field: str, message: str):
        super().__init__(message)
        self.owner = owner
        self.field = field


def fail(owner: str, name: str, value: Any, expected: str) -> NoReturn:
    raise ConfigError(owner, name, f"{owner}.{name} must be {expected}; got {value!r}")


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_int(owner: str, name: str, value: Any, low: int, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        fail(owner, name, value, f"an integer >= {low}" + (" or None" if optional else ""))


def check_number(
    owner: str,
    name: str,
    value: Any,
    *,
    low: float,
    strict: bool,
    high: float | None = None,
    auto: bool = False,
) -> None:
    """A finite number above ``low`` (``strict``) or at least ``low``, below ``high``; or "auto"."""
    if auto and value == AUTO:
        return
    ok = is_number(value) and (value > low if strict else value >= low)
    if ok and high is not None:
        ok = value < high
    if not ok:
        bounds = f"{'>' if strict else '>='} {low}" + (f" and < {high}" if high is not None else "")
        fail(owner, name, value, f"a finite number {bounds}" + (" or 'auto'" if auto else ""))


def check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        fail(owner, name, value, "one of " + ", ".join(repr(c) for c in choices))


def dataclass_from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """``cls(**values)``, but an unknown key is an error that names it and lists the valid ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            cls.__name__,
            unknown[0],
            f"{cls.__name__} has no field {unknown[0]!r}; valid fields: {', '.join(sorted(known))}",
        )
    return cls(**values)
