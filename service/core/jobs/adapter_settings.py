"""The adapter's settings as a form needs them: each field of ``GoraConfig`` with its default and
its range (the bounds ``AdapterSpec`` enforces) or its choices, read from the code that holds them,
so the dashboard's form cannot drift from what the API accepts."""

from __future__ import annotations

import dataclasses
from typing import Any

from gora.config import ADAPTER_TYPES, ALLOCATIONS, FEATURES, IMPORTANCE_KINDS, GoraConfig
from service.core.jobs.spec import AdapterSpec

CHOICES = {
    "type": ADAPTER_TYPES,
    "importance": IMPORTANCE_KINDS,
    "allocation": ALLOCATIONS,
    "features": FEATURES,
}
# The bounds GoraConfig.__post_init__ checks for the fields AdapterSpec leaves unbounded.
LIBRARY_BOUNDS: dict[str, dict[str, float]] = {
    "alpha": {"exclusiveMinimum": 0.0},
    "gamma": {"minimum": 0.0},
    "lr_ratio_b": {"exclusiveMinimum": 0.0},
    "lora_dropout": {"minimum": 0.0, "exclusiveMaximum": 1.0},
}
# What the library derives when a field is left out (GoraConfig.__post_init__, the job's seed).
DERIVED = {"r_min": "r_ref / 2", "r_max": "4 × r_ref", "seed": "the job's seed"}


def _bounds(schema: dict[str, Any]) -> dict[str, Any]:
    """minimum/maximum (and exclusive ones) of a field's JSON schema, through anyOf/null."""
    found: dict[str, Any] = {}
    for option in [schema, *schema.get("anyOf", [])]:
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "type"):
            if key in option and option.get("type") != "null":
                found.setdefault(key, option[key])
    return found


def adapter_settings() -> list[dict[str, Any]]:
    schema = AdapterSpec.model_json_schema()["properties"]
    defaults = {f.name: f for f in dataclasses.fields(GoraConfig)}
    out = []
    for name, spec in defaults.items():
        default = spec.default if spec.default is not dataclasses.MISSING else None
        bounds = {**_bounds(schema.get(name, {})), **LIBRARY_BOUNDS.get(name, {})}
        entry: dict[str, Any] = {"name": name, "default": default, **bounds}
        if name in CHOICES:
            entry["choices"] = list(CHOICES[name])
        if name in DERIVED:
            entry["default_rule"] = DERIVED[name]
        out.append(entry)
    return out
