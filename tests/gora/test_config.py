"""GoraConfig: the spec's defaults, and errors that name the field and the valid range."""

from __future__ import annotations

import pytest

from gora import GoraConfig
from gora.targets import TargetModulesNotFound, resolve_targets
from gora.validation import ConfigError


def test_defaults_are_the_papers():
    cfg = GoraConfig()
    assert (cfg.type, cfg.r_ref, cfg.alpha) == ("gora", 8, 16.0)
    assert (cfg.r_min, cfg.r_max) == (4, 32)  # r_ref / 2 and 4 r_ref
    assert (cfg.probe_steps, cfg.gamma, cfg.lr_ratio_b) == (64, 5e-2, 16.0)
    assert (cfg.importance, cfg.allocation, cfg.features) == ("union_mean", "budget", "linear")
    assert GoraConfig(r_ref=16).r_min == 8 and GoraConfig(r_ref=16).r_max == 64
    assert GoraConfig(r_ref=1).r_min == 1


def test_round_trip_through_a_dict():
    cfg = GoraConfig(r_ref=4, target_modules="q_proj", gamma=0.0)
    assert cfg.target_modules == ["q_proj"]
    assert GoraConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"type": "dora"}, r"GoraConfig.type must be one of 'gora', 'lora'; got 'dora'"),
        ({"r_ref": 0}, r"GoraConfig.r_ref must be an integer >= 1; got 0"),
        ({"r_ref": 2.5}, r"GoraConfig.r_ref must be an integer >= 1"),
        ({"alpha": 0}, r"GoraConfig.alpha must be a finite number > 0.0"),
        ({"alpha": float("inf")}, r"GoraConfig.alpha must be a finite number"),
        (
            {"target_modules": []},
            r"GoraConfig.target_modules must be 'all-linear' or a non-empty list",
        ),
        (
            {"target_modules": ["q", ""]},
            r"GoraConfig.target_modules must be a list of non-empty strings",
        ),
        ({"r_min": -1}, r"GoraConfig.r_min must be an integer >= 0"),
        ({"r_min": 9}, r"r_min <= r_ref <= r_max; got r_min=9, r_ref=8, r_max=32"),
        ({"r_max": 4}, r"r_min <= r_ref <= r_max; got r_min=4, r_ref=8, r_max=4"),
        ({"probe_steps": 0}, r"GoraConfig.probe_steps must be an integer >= 1"),
        ({"gamma": -0.1}, r"GoraConfig.gamma must be a finite number >= 0.0"),
        ({"importance": "fisher"}, r"GoraConfig.importance must be one of 'union_mean'"),
        ({"allocation": "greedy"}, r"GoraConfig.allocation must be one of 'budget', 'paper'"),
        ({"features": "log"}, r"GoraConfig.features must be one of 'linear', 'sqrt'"),
        ({"lr_ratio_b": 0}, r"GoraConfig.lr_ratio_b must be a finite number > 0.0"),
        ({"seed": -1}, r"GoraConfig.seed must be an integer >= 0"),
        ({"lora_dropout": 1.0}, r"GoraConfig.lora_dropout must be in \[0, 1\)"),
        ({"rank": 8}, r"GoraConfig has no field 'rank'; valid fields: allocation, alpha"),
    ],
)
def test_bad_values_name_the_field_and_range(values, message):
    with pytest.raises(ValueError, match=message) as raised:
        GoraConfig.from_dict(values)
    # The error carries the field as data: whichever key the caller gave that is at fault.
    assert isinstance(raised.value, ConfigError) and raised.value.owner == "GoraConfig"
    expected_field = next(iter(values))
    assert raised.value.field == expected_field


def test_target_modules_that_match_nothing_are_a_typed_error(tiny_llama):
    with pytest.raises(TargetModulesNotFound) as raised:
        resolve_targets(tiny_llama, ["nope"])
    assert raised.value.target_modules == ["nope"]
    assert {"q_proj", "v_proj", "down_proj"} <= set(raised.value.available)
    assert "q_proj" in str(raised.value)
