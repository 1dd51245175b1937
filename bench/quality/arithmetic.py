"""Seeded multi-step integer arithmetic word problems, with worked answers (a small GSM8K stand-in).

Each problem starts with a count and applies 2-3 operations (buy, give away, boxes of n, double);
the completion works through one equation per step and ends with "The answer is N." Train and test
come from different seeds, and any train problem whose prompt also appears in the test set is
dropped, so the two sets are disjoint by construction.

    python -m bench.quality.arithmetic --n 3 --seed 0      # prints a few problems
"""

from __future__ import annotations

import argparse
import json
import random
import re

NAMES = [
    "Ava",
    "Ben",
    "Chloe",
    "Dan",
    "Ella",
    "Finn",
    "Grace",
    "Hugo",
    "Iris",
    "Jack",
    "Lena",
    "Omar",
]
FRIENDS = ["a neighbour", "a cousin", "a friend", "the teacher", "a classmate", "the coach"]
ITEMS = ["apples", "marbles", "stickers", "books", "coins", "pencils", "cards", "shells", "eggs"]
TEST_SEED_OFFSET = 1_000_003  # test problems never share a generator stream with train problems


def _buy(rng: random.Random, name: str, item: str, value: int) -> tuple[str, str, int]:
    more = rng.randint(2, 30)
    return f"{name} buys {more} more {item}.", f"{value} + {more} = {value + more}.", value + more


def _give(rng: random.Random, name: str, item: str, value: int) -> tuple[str, str, int]:
    if value < 2:  # nothing to give away without reaching zero: buy instead
        return _buy(rng, name, item, value)
    given = rng.randint(1, value - 1)
    friend = rng.choice(FRIENDS)
    text = f"{name} gives {given} {item} to {friend}."
    return text, f"{value} - {given} = {value - given}.", value - given


def _boxes(rng: random.Random, name: str, item: str, value: int) -> tuple[str, str, int]:
    boxes, each = rng.randint(2, 6), rng.randint(2, 9)
    total = boxes * each
    text = f"{name} gets {boxes} boxes with {each} {item} in each."
    work = f"{boxes} * {each} = {total}. {value} + {total} = {value + total}."
    return text, work, value + total


def _double(rng: random.Random, name: str, item: str, value: int) -> tuple[str, str, int]:
    return f"Then the number of {item} doubles.", f"{value} * 2 = {value * 2}.", value * 2


OPERATIONS = (_buy, _give, _boxes, _double)


def make_problem(rng: random.Random) -> dict[str, str | int]:
    """One problem as a prompt/completion row, plus its integer ``answer``."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    value = rng.randint(5, 50)
    story, work = [f"{name} has {value} {item}."], []
    for _ in range(rng.randint(2, 3)):
        text, step, value = rng.choice(OPERATIONS)(rng, name, item, value)
        story.append(text)
        work.append(step)
    question = f"How many {item} does {name} have now?"
    prompt = f"Question: {' '.join(story)} {question}\nAnswer:"
    completion = f" {' '.join(work)} The answer is {value}."
    return {"prompt": prompt, "completion": completion, "answer": value}


def generate(n: int, seed: int) -> list[dict[str, str | int]]:
    rng = random.Random(seed)
    return [make_problem(rng) for _ in range(n)]


def train_test_split(n_train: int, n_test: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Disjoint train and test sets: test from its own stream, train filtered against it."""
    test = _unique(generate(n_test * 2, seed + TEST_SEED_OFFSET))[:n_test]
    seen = {row["prompt"] for row in test}
    train, rng = [], random.Random(seed)
    while len(train) < n_train:
        row = make_problem(rng)
        if row["prompt"] not in seen:
            seen.add(row["prompt"])
            train.append(row)
    return train, test


def _unique(rows: list[dict]) -> list[dict]:
    seen, out = set(), []
    for row in rows:
        if row["prompt"] not in seen:
            seen.add(row["prompt"])
            out.append(row)
    return out


_ANSWER = re.compile(r"answer is\s*(-?\d+)")
_INTEGER = re.compile(r"-?\d+")


def final_number(text: str) -> int | None:
    """The number after "answer is", else the last integer in the text, else None."""
    match = _ANSWER.search(text)
    if match:
        return int(match.group(1))
    numbers = _INTEGER.findall(text)
    return int(numbers[-1]) if numbers else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="print generated arithmetic problems")
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for row in generate(args.n, args.seed):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
