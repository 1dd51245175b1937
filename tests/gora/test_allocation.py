"""Rank allocation as a pure function: budget, bounds, monotonicity, paper mode, degenerate inputs."""

from __future__ import annotations

import random

import pytest

from gora import GoraConfig, allocate_ranks
from gora.allocation import layer_cost, parameter_budget

# SmolLM2-135M's projection shapes (d_out, d_in), four blocks of them.
BLOCK = {
    "q_proj": (576, 576),
    "k_proj": (192, 576),
    "v_proj": (192, 576),
    "o_proj": (576, 576),
    "gate_proj": (1536, 576),
    "up_proj": (1536, 576),
    "down_proj": (576, 1536),
}
SHAPES = {f"layers.{i}.{k}": shape for i in range(4) for k, shape in BLOCK.items()}


def spent(ranks, shapes) -> int:
    return sum(ranks[n] * layer_cost(shapes[n]) for n in ranks)


def random_importances(seed: int, shapes=SHAPES) -> dict[str, float]:
    rng = random.Random(seed)
    return {name: rng.random() ** 3 for name in shapes}


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("features", ["linear", "sqrt"])
def test_budget_is_kept_and_nearly_spent(seed, features):
    cfg = GoraConfig(r_ref=8, features=features)
    ranks = allocate_ranks(random_importances(seed), SHAPES, cfg)
    budget = parameter_budget(SHAPES, 8)
    assert budget == 8 * sum(d_in + d_out for d_out, d_in in SHAPES.values())
    max_cost = max(layer_cost(s) for s in SHAPES.values())
    assert 0 <= budget - spent(ranks, SHAPES) < max_cost
    assert all(cfg.r_min <= r <= cfg.r_max for r in ranks.values())
    assert all(isinstance(r, int) for r in ranks.values())


def test_bounds_default_to_paper_values_and_bind():
    cfg = GoraConfig(r_ref=8)
    assert (cfg.r_min, cfg.r_max) == (4, 32)
    importances = {name: 1e-6 for name in SHAPES}
    importances["layers.0.v_proj"] = 1.0  # one layer wants everything: it is capped at r_max
    ranks = allocate_ranks(importances, SHAPES, cfg)
    assert ranks["layers.0.v_proj"] == 32
    assert min(ranks.values()) >= 4
    # The capped layer's surplus went to the others: the budget is still nearly spent.
    assert parameter_budget(SHAPES, 8) - spent(ranks, SHAPES) < 2112


def test_monotone_in_share_for_equal_shapes():
    shapes = {f"l{i}": (256, 256) for i in range(12)}
    importances = {f"l{i}": float(i + 1) ** 2 for i in range(12)}
    ranks = allocate_ranks(importances, shapes, GoraConfig(r_ref=8))
    ordered = [ranks[f"l{i}"] for i in range(12)]
    assert ordered == sorted(ordered)
    assert ordered[0] < ordered[-1]


def test_raw_rank_is_share_of_the_budget_when_no_bound_binds():
    # Two layers, importances 1:3, same shape: continuous ranks 4 and 12 at r_ref 8 (exact integers).
    shapes = {"a": (100, 100), "b": (100, 100)}
    ranks = allocate_ranks({"a": 1.0, "b": 3.0}, shapes, GoraConfig(r_ref=8, r_min=1, r_max=64))
    assert ranks == {"a": 4, "b": 12}


def test_sqrt_features_favour_large_layers_less_than_linear():
    shapes = {"small": (512, 512), "large": (8192, 8192)}
    importances = {"small": 1.0, "large": 1.0}
    cfg = dict(r_ref=16, r_min=1, r_max=512)
    linear = allocate_ranks(importances, shapes, GoraConfig(**cfg))
    sqrt = allocate_ranks(importances, shapes, GoraConfig(**cfg, features="sqrt"))
    # Equal shares of parameters: linear gives the small layer 16x the rank of the large one;
    # sqrt features divide by sqrt(cost) instead, a 4x ratio.
    assert linear["small"] / linear["large"] == pytest.approx(16, rel=0.15)
    assert sqrt["small"] / sqrt["large"] == pytest.approx(4, rel=0.15)
    for ranks in (linear, sqrt):
        assert spent(ranks, shapes) <= parameter_budget(shapes, 16)


def test_paper_mode_rounds_and_clamps_without_redistribution():
    shapes = {"a": (100, 100), "b": (100, 100), "c": (100, 100)}
    importances = {"a": 0.02, "b": 0.49, "c": 0.49}
    cfg = GoraConfig(r_ref=8, allocation="paper")  # r_min 4, r_max 32
    ranks = allocate_ranks(importances, shapes, cfg)
    # Raw ranks 0.48, 11.76, 11.76 -> round -> 0, 12, 12 -> clamp -> 4, 12, 12: over budget (24 -> 28).
    assert ranks == {"a": 4, "b": 12, "c": 12}
    assert spent(ranks, shapes) > parameter_budget(shapes, 8)
    budget_mode = allocate_ranks(importances, shapes, GoraConfig(r_ref=8))
    assert spent(budget_mode, shapes) <= parameter_budget(shapes, 8)
    assert budget_mode["a"] == 4 and budget_mode["b"] + budget_mode["c"] == 20


def test_one_layer_gets_r_ref():
    ranks = allocate_ranks({"only": 0.3}, {"only": (64, 32)}, GoraConfig(r_ref=8))
    assert ranks == {"only": 8}


def test_equal_importance_and_shapes_give_r_ref_everywhere():
    ranks = allocate_ranks({n: 0.5 for n in SHAPES}, SHAPES, GoraConfig(r_ref=8))
    # Equal shares of parameters: layers of one shape get the same continuous rank, and rounding
    # under the budget can part them by one at most.
    for kind in BLOCK:
        same_shape = [ranks[f"layers.{i}.{kind}"] for i in range(4)]
        assert max(same_shape) - min(same_shape) <= 1
    equal_shapes = {f"l{i}": (128, 128) for i in range(5)}
    assert set(
        allocate_ranks({n: 1.0 for n in equal_shapes}, equal_shapes, GoraConfig()).values()
    ) == {8}


def test_all_zero_importance_shares_equally():
    shapes = {f"l{i}": (128, 128) for i in range(4)}
    assert set(allocate_ranks({n: 0.0 for n in shapes}, shapes, GoraConfig()).values()) == {8}


def test_zero_importance_layer_gets_r_min_and_zero_when_r_min_is_zero():
    shapes = {"dead": (128, 128), "a": (128, 128), "b": (128, 128)}
    importances = {"dead": 0.0, "a": 1.0, "b": 2.0}
    assert allocate_ranks(importances, shapes, GoraConfig(r_ref=8))["dead"] == 4
    ranks = allocate_ranks(importances, shapes, GoraConfig(r_ref=8, r_min=0))
    assert ranks["dead"] == 0
    assert ranks["a"] + ranks["b"] == 24 and ranks["a"] < ranks["b"]


def test_rank_is_capped_by_layer_size():
    shapes = {"narrow": (6, 300), "wide": (300, 300)}
    ranks = allocate_ranks({"narrow": 10.0, "wide": 0.1}, shapes, GoraConfig(r_ref=8))
    assert ranks["narrow"] == 6  # min(d_in, d_out): a larger rank would add nothing


@pytest.mark.parametrize(
    ("importances", "shapes", "message"),
    [
        ({}, {}, "at least one layer"),
        ({"a": 1.0}, {"b": (4, 4)}, "same layers"),
        ({"a": -1.0}, {"a": (4, 4)}, "finite and >= 0"),
        ({"a": float("nan")}, {"a": (4, 4)}, "finite and >= 0"),
        ({"a": 1.0}, {"a": (0, 4)}, "d_out, d_in"),
    ],
)
def test_bad_inputs_are_named(importances, shapes, message):
    with pytest.raises(ValueError, match=message):
        allocate_ranks(importances, shapes, GoraConfig())
