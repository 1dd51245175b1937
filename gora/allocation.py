"""Rank allocation under vanilla LoRA's parameter budget (gora-spec.md §2): a pure function.

``allocate_ranks(importances, shapes, config) -> ranks``. No model, no torch: it is tested on numbers.

The budget is what LoRA at ``r_ref`` costs on the same layers, ``P = r_ref · Σ_j (d_in_j + d_out_j)``.
Each layer's continuous rank is ``c · w_i`` with ``w_i = share_i / feature_i`` (``feature`` is
``d_in + d_out``, or its square root with ``features="sqrt"``); one common scale ``c`` is chosen so that the
clamped ranks spend exactly ``P``. That is water-filling: what layers clamped at ``r_min``/``r_max`` free or owe
flows back to the unclamped layers in proportion to their shares. Rounding then floors every rank and
hands the leftover budget out by largest fractional part, so ``Σ r_i (d_in_i + d_out_i) ≤ P`` and the gap is
less than one ``max(d_in + d_out)``.

``allocation="paper"`` keeps the reference code's rule (round, clamp, no redistribution) for comparison;
its parameter count drifts from LoRA's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol


class AllocationSettings(Protocol):  # satisfied by GoraConfig
    r_ref: int
    r_min: int | None
    r_max: int | None
    allocation: str
    features: str


Shape = tuple[int, int]  # (d_out, d_in), PyTorch's Linear layout


def layer_cost(shape: Shape) -> int:
    """Parameters one unit of rank costs on a layer: d_in + d_out."""
    d_out, d_in = shape
    return d_in + d_out


def parameter_budget(shapes: Mapping[str, Shape], r_ref: int) -> int:
    """Trainable parameters of vanilla LoRA at rank r_ref on these layers."""
    return r_ref * sum(layer_cost(shape) for shape in shapes.values())


def importance_shares(importances: Mapping[str, float]) -> dict[str, float]:
    """Normalised importances; all-zero importances share equally (no gradient signal at all)."""
    for name, value in importances.items():
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"importance of {name!r} must be finite and >= 0; got {value!r}")
    total = sum(importances.values())
    if total == 0:
        return {name: 1.0 / len(importances) for name in importances}
    return {name: value / total for name, value in importances.items()}


def _check_inputs(importances: Mapping[str, float], shapes: Mapping[str, Shape]) -> None:
    if not importances:
        raise ValueError("allocate_ranks needs at least one layer")
    if set(importances) != set(shapes):
        missing = sorted(set(importances) ^ set(shapes))
        raise ValueError(
            f"importances and shapes must name the same layers; mismatch: {missing[:5]}"
        )
    for name, shape in shapes.items():
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"shape of {name!r} must be (d_out, d_in) with both >= 1; got {shape}")


def _clamp(value: float, low: int, high: int) -> float:
    return min(high, max(low, value))


def _clamped_spend(scale, weights, costs, low, highs) -> float:
    return sum(cost * _clamp(scale * weights[n], low, highs[n]) for n, cost in costs.items())


def _water_fill(weights, costs, budget: int, low: int, highs: dict[str, int]) -> dict[str, float]:
    """Continuous ranks clamp(c·w_i, low, high_i) whose cost is as close to the budget as can be, never above.

    The spend is monotone in ``c``, so bisection finds it; the lower end is kept so the spend stays <= P.
    """
    if _clamped_spend(0.0, weights, costs, low, highs) >= budget:
        return {name: float(_clamp(0.0, low, highs[name])) for name in weights}
    lo, hi = 0.0, 1.0
    while _clamped_spend(hi, weights, costs, low, highs) < budget and hi < 1e30:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _clamped_spend(mid, weights, costs, low, highs) <= budget:
            lo = mid
        else:
            hi = mid
    return {name: _clamp(lo * w, low, highs[name]) for name, w in weights.items()}


def _round_under_budget(ranks, costs, budget: int, highs: dict[str, int]) -> dict[str, int]:
    """Floors every rank, then adds one rank by largest fractional part while the budget allows."""
    integer = {name: math.floor(value + 1e-9) for name, value in ranks.items()}
    left = budget - sum(costs[n] * r for n, r in integer.items())
    by_fraction = sorted(ranks, key=lambda n: (-(ranks[n] - integer[n]), n))
    for name in by_fraction:
        if integer[name] < highs[name] and costs[name] <= left and ranks[name] > integer[name]:
            integer[name] += 1
            left -= costs[name]
    return integer


def _scaled_weights(shares: dict[str, float], costs: dict[str, int], features: str):
    if features == "sqrt":
        return {n: shares[n] / math.sqrt(costs[n]) for n in shares}
    return {n: shares[n] / costs[n] for n in shares}


def allocate_ranks(
    importances: Mapping[str, float],
    shapes: Mapping[str, Shape],
    config: AllocationSettings,
) -> dict[str, int]:
    """Integer rank per layer from its importance and shape, under LoRA's budget at ``config.r_ref``."""
    _check_inputs(importances, shapes)
    low = int(config.r_min)
    # A rank above min(d_in, d_out) adds nothing a smaller one lacks (and makes A Aᵀ singular): cap it.
    highs = {name: min(int(config.r_max), *shape) for name, shape in shapes.items()}
    costs = {name: layer_cost(shape) for name, shape in shapes.items()}
    budget = parameter_budget(shapes, config.r_ref)
    shares = importance_shares(importances)
    weights = _scaled_weights(shares, costs, config.features)
    if config.allocation == "paper":
        # The scale that spends P before clamping: c = P / Σ w_i cost_i (c = P for linear features).
        scale = budget / sum(weights[n] * costs[n] for n in weights)
        return {n: int(_clamp(round(scale * w), low, highs[n])) for n, w in weights.items()}
    continuous = _water_fill(weights, costs, budget, low, highs)
    return _round_under_budget(continuous, costs, budget, highs)
