"""Writes examples/instructions.jsonl, the chat-format instruction set of the demo (`make run`).

Two parts, drawn with a fixed seed so the file is reproducible:
- question -> answer pairs (and a few short multi-turn talks) from the English chatterbot corpus,
  found in the installed package ``chatterbot_corpus`` (installed with --no-deps; only its YAML is read);
- simple arithmetic in one fixed answer style ("7 + 5 = 12. The answer is 12."), which the base model
  does not use, so a short fine-tune visibly changes its answers.

Run: .venv/bin/python examples/make_instructions.py
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import yaml

SEED = 0
CORPUS_FILES = ("trivia", "science", "history", "literature", "computers", "ai", "food", "sports")
N_SINGLE_TURN = 110
N_MULTI_TURN = 15
N_ARITHMETIC = 100
OUT = Path(__file__).with_name("instructions.jsonl")

OPERATIONS = {
    "+": ("plus", lambda a, b: a + b),
    "-": ("minus", lambda a, b: a - b),
    "×": ("times", lambda a, b: a * b),
}
QUESTIONS = (
    "What is {a} {word} {b}?",
    "Compute {a} {op} {b}.",
    "How much is {a} {word} {b}?",
    "Calculate {a} {op} {b}, please.",
)


def corpus_dir() -> Path:
    # Located, not imported: the package's own __init__ is irrelevant to us.
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install the corpus first: pip install --no-deps chatterbot-corpus==1.3.3")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "english"


def load_conversations(name: str) -> list[list[str]]:
    data = yaml.safe_load((corpus_dir() / f"{name}.yml").read_text(encoding="utf-8"))
    talks = []
    for talk in data.get("conversations") or []:
        turns = [str(turn).strip() for turn in talk if turn is not None]
        if len(turns) >= 2 and all(turns):
            talks.append(turns)
    return talks


def as_chat(turns: list[str]) -> dict:
    """Alternating user/assistant turns, ending on an assistant turn."""
    turns = turns[: len(turns) // 2 * 2]
    roles = ("user", "assistant")
    return {"messages": [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]}


def corpus_rows(rng: random.Random) -> list[dict]:
    pairs, talks, seen = [], [], set()
    for name in CORPUS_FILES:
        for turns in load_conversations(name):
            if len(turns) == 2 and turns[0] not in seen:  # one answer per question
                seen.add(turns[0])
                pairs.append(turns)
            elif 4 <= len(turns) <= 6:
                talks.append(turns)
    for name in ("conversations", "greetings", "emotion"):
        talks += [t for t in load_conversations(name) if 4 <= len(t) <= 6]
    chosen = rng.sample(pairs, min(N_SINGLE_TURN, len(pairs)))
    chosen += rng.sample(talks, min(N_MULTI_TURN, len(talks)))
    return [as_chat(turns) for turns in chosen]


def arithmetic_rows(rng: random.Random) -> list[dict]:
    rows = []
    for _ in range(N_ARITHMETIC):
        op = rng.choice(list(OPERATIONS))
        word, apply = OPERATIONS[op]
        a, b = (
            (rng.randint(2, 12), rng.randint(2, 12))
            if op == "×"
            else (rng.randint(2, 99), rng.randint(2, 99))
        )
        question = rng.choice(QUESTIONS).format(a=a, b=b, op=op, word=word)
        answer = f"{a} {op} {b} = {apply(a, b)}. The answer is {apply(a, b)}."
        rows.append(as_chat([question, answer]))
    return rows


def main() -> None:
    rng = random.Random(SEED)
    rows = corpus_rows(rng) + arithmetic_rows(rng)
    rng.shuffle(rows)
    with OUT.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
