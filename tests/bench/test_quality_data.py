"""The quality benchmark's data: the arithmetic generator and the Orange .tab reader (torch-free, fast)."""

from __future__ import annotations

import re

import pytest

from bench.quality.arithmetic import final_number, generate, train_test_split
from bench.quality.r8 import read_orange_tab, split_validation


def test_generator_is_seeded():
    assert generate(20, seed=3) == generate(20, seed=3)
    assert generate(20, seed=3) != generate(20, seed=4)


def test_train_and_test_are_disjoint_and_sized():
    train, test = train_test_split(500, 200, seed=0)
    assert len(train) == 500 and len(test) == 200
    prompts = [row["prompt"] for row in train + test]
    assert len(set(prompts)) == len(prompts)


def _check_equation(equation: str) -> None:
    left, right = equation.split("=")
    a, op, b = left.split()
    value = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
    assert value == int(right), equation


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_worked_answers_are_correct_and_multi_step(seed):
    for row in generate(200, seed):
        equations = re.findall(r"-?\d+ [-+*] -?\d+ = -?\d+", row["completion"])
        assert len(equations) >= 2  # multi-step
        for equation in equations:
            _check_equation(equation)
        assert row["answer"] >= 0
        assert final_number(row["completion"]) == row["answer"]
        start = int(re.search(r"has (\d+)", row["prompt"]).group(1))
        # The first equation works on the starting count, unless it is a box product.
        first = equations[0]
        assert first.startswith(f"{start} ") or " * " in first


def test_final_number_prefers_the_stated_answer():
    assert final_number(" 3 + 4 = 7. The answer is 7. Then 99") == 7
    assert final_number("it is 12, no 13") == 13
    assert final_number("no digits") is None


def test_orange_tab_columns_found_by_flags(tmp_path):
    path = tmp_path / "tiny.tab"
    header = "Text\tCategory\nstring\td\n\tclass\n"
    path.write_text(header + "first doc \tearn\nsecond doc\tacq\n\n")
    assert read_orange_tab(path) == [
        {"text": "first doc", "label": "earn"},
        {"text": "second doc", "label": "acq"},
    ]


def test_validation_split_is_fixed_and_disjoint():
    rows = [{"text": str(i), "label": "x"} for i in range(100)]
    train, valid = split_validation(rows, 20)
    assert (train, valid) == split_validation(rows, 20)
    assert len(valid) == 20 and len(train) == 80
    assert not {r["text"] for r in train} & {r["text"] for r in valid}
