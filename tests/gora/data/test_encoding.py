"""Rows into model inputs: label masks, truncation, classification labels, padding and batches."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from gora.data.encoding import (
    _tokens_in_spans_by_prefix,
    build_dataset,
    build_label_map,
    chat_text_and_spans,
    tokens_in_spans,
)
from gora.data.formats import DataFormatError, read_jsonl
from gora.data.loading import IGNORE_INDEX, EncodedDataset, PaddingCollator, make_batches
from tests.helpers.models import make_tiny_llama, minilm_tokenizer, smollm_dir, smollm_tokenizer

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

# A Gemma-like template, to check that nothing depends on ChatML's markers.
TURN_TEMPLATE = (
    "{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}"
    "\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str, weight: int = 1) -> dict:
    return {"role": "assistant", "content": text, "weight": weight}


def turn_tokenizer(template: str = TURN_TEMPLATE):
    tokenizer = minilm_tokenizer()
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]}
    )
    tokenizer.chat_template = template
    return tokenizer


def trained_runs(example: dict) -> list[list[int]]:
    """The label ids of each contiguous run of trained positions."""
    runs, current = [], []
    for label in example["labels"].tolist():
        if label == IGNORE_INDEX:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(label)
    return [*runs, current] if current else runs


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# --- format and task -----------------------------------------------------------------------------


def test_format_must_fit_the_task():
    rows = [{"text": "good", "label": "pos"}]
    with pytest.raises(ValueError, match="use task='sequence_classification'"):
        build_dataset(rows, "classification", minilm_tokenizer(), "causal_lm")
    with pytest.raises(ValueError, match=r"chat rows have no labels.*task='causal_lm'"):
        build_dataset(
            [{"messages": [assistant("hi")]}], "chat", minilm_tokenizer(), "sequence_classification"
        )
    with pytest.raises(ValueError, match="valid values: causal_lm, sequence_classification"):
        build_dataset(rows, "classification", minilm_tokenizer(), "regression")


def test_rows_are_checked_again_and_errors_name_line_and_field():
    rows = [
        {"messages": [user("a"), assistant("b")]},
        {"messages": [user("a"), {"role": "bot", "content": "b"}]},
    ]
    with pytest.raises(DataFormatError) as info:
        build_dataset(rows, "chat", turn_tokenizer(), line_numbers=[3, 7])
    assert (info.value.line, info.value.field) == (7, "messages[1].role")
    with pytest.raises(DataFormatError, match="line 2: is a text row in a chat dataset"):
        build_dataset([rows[0], {"text": "plain"}], "chat", turn_tokenizer())


def test_chat_needs_a_template():
    tokenizer = minilm_tokenizer()
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="chat rows need a chat template"):
        build_dataset([{"messages": [user("a"), assistant("b")]}], "chat", tokenizer)


# --- chat masks with any template ----------------------------------------------------------------


def test_chat_mask_covers_assistant_content_and_end_token_only():
    tokenizer = turn_tokenizer()
    messages = [
        user("hello there"),
        assistant("hi, how can i help?"),
        user("thanks"),
        assistant("bye now"),
    ]
    dataset, stats = build_dataset([{"messages": messages}], "chat", tokenizer)
    runs = trained_runs(dataset[0])
    assert runs == [
        ids(tokenizer, "hi, how can i help?<end_of_turn>"),
        ids(tokenizer, "bye now<end_of_turn>"),
    ]
    assert stats.trained_tokens == sum(map(len, runs)) and stats.examples == 1


def test_weight_zero_turns_and_trailing_turns_carry_no_loss():
    tokenizer = turn_tokenizer()
    messages = [
        user("q one"),
        assistant("skip me", weight=0),
        user("q two"),
        assistant("learn me"),
        user("later"),
    ]
    dataset, _ = build_dataset([{"messages": messages}], "chat", tokenizer)
    assert trained_runs(dataset[0]) == [ids(tokenizer, "learn me<end_of_turn>")]
    text = tokenizer.decode(dataset[0]["input_ids"])
    assert "skip me" in text and "later" not in text  # context kept, the unused tail left out


def test_template_that_rewrites_prefixes_is_refused_with_line_and_field():
    marks_last = (
        "{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m['content'] }}\n{% endfor %}"
    )
    with pytest.raises(DataFormatError) as info:
        chat_text_and_spans([user("a"), assistant("b")], turn_tokenizer(marks_last), line=5)
    assert (info.value.line, info.value.field) == (5, "messages[1]")


def test_prefix_fallback_agrees_with_offsets():
    tokenizer = turn_tokenizer()
    text, spans = chat_text_and_spans([user("what is up?"), assistant("not much, you?")], tokenizer)
    assert _tokens_in_spans_by_prefix(tokenizer, text, spans) == tokens_in_spans(
        tokenizer, text, spans
    )


# --- classification ------------------------------------------------------------------------------


def test_classification_label_map_ids_and_special_tokens():
    rows = [
        {"text": "great film", "label": "pos"},
        {"text": "dull", "label": "neg"},
        {"text": "odd", "label": 3},
    ]
    assert build_label_map(rows) == {"3": 0, "neg": 1, "pos": 2}
    dataset, stats = build_dataset(
        rows, "classification", minilm_tokenizer(), "sequence_classification"
    )
    assert [example["labels"] for example in dataset] == [2, 1, 0]
    assert dataset[0]["input_ids"].tolist() == [101, *ids(minilm_tokenizer(), "great film"), 102]
    assert dataset[0]["token_type_ids"].tolist() == [0, 0, 0, 0]
    assert (stats.examples, stats.tokens, stats.trained_tokens, stats.truncated) == (
        3,
        4 + 3 + 3,
        0,
        0,
    )


def test_unknown_label_names_line_and_field():
    rows = [{"text": "fine", "label": "pos"}, {"text": "meh", "label": "neutral"}]
    with pytest.raises(DataFormatError) as info:
        build_dataset(
            rows,
            "classification",
            minilm_tokenizer(),
            "sequence_classification",
            label2id={"neg": 0, "pos": 1},
            line_numbers=[4, 9],
        )
    assert (info.value.line, info.value.field) == (9, "label")
    assert "unknown label 'neutral'; the labels are: neg, pos" in str(info.value)


def test_classification_truncation_keeps_cls_and_sep():
    rows = [
        {"text": "one two three four five six seven", "label": "a"},
        {"text": "one", "label": "b"},
    ]
    dataset, stats = build_dataset(
        rows, "classification", minilm_tokenizer(), "sequence_classification", max_length=5
    )
    assert dataset[0]["input_ids"].tolist() == [101, *ids(minilm_tokenizer(), "one two three"), 102]
    assert (stats.truncated, stats.tokens) == (1, 5 + 3)


# --- collator and batches ------------------------------------------------------------------------


def test_collator_pads_each_field_with_its_own_value():
    examples = [
        {"input_ids": torch.tensor([5, 6, 7]), "labels": torch.tensor([-100, 6, 7])},
        {"input_ids": torch.tensor([8, 9]), "labels": torch.tensor([-100, 9])},
    ]
    batch = PaddingCollator(pad_token_id=2)(examples)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 2]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [-100, 9, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert all(tensor.dtype == torch.long for tensor in batch.values())
    wide = PaddingCollator(pad_token_id=2, pad_to_multiple_of=4)(examples)
    assert wide["input_ids"].tolist() == [[5, 6, 7, 2], [8, 9, 2, 2]]


def test_collator_stacks_class_labels_and_pads_token_types():
    rows = [{"text": "a long sentence here", "label": "x"}, {"text": "short", "label": "y"}]
    dataset, _ = build_dataset(
        rows, "classification", minilm_tokenizer(), "sequence_classification"
    )
    batch = next(iter(make_batches(dataset, minilm_tokenizer(), batch_size=2, shuffle=False)))
    assert batch["labels"].tolist() == [0, 1]
    assert batch["input_ids"][1].tolist()[3:] == [0, 0, 0]  # BERT's [PAD] is 0
    assert batch["attention_mask"].sum(dim=1).tolist() == [6, 3]
    assert batch["token_type_ids"].tolist() == [[0] * 6, [0] * 6]


def test_make_batches_is_seeded_and_covers_every_example_once_per_epoch():
    dataset = EncodedDataset(
        [{"input_ids": torch.tensor([i, i]), "labels": torch.tensor([-100, i])} for i in range(10)]
    )

    def order(loader):
        return [batch["input_ids"][:, 0].tolist() for batch in loader]

    collate = PaddingCollator(0)
    loader = make_batches(dataset, collate, batch_size=4, seed=3)
    first, second = order(loader), order(loader)
    assert [len(batch) for batch in first] == [4, 4, 2]
    for epoch in (first, second):
        assert sorted(i for batch in epoch for i in batch) == list(range(10))
    assert first != second  # each epoch draws a new permutation
    assert order(make_batches(dataset, collate, batch_size=4, seed=3)) == first
    assert order(make_batches(dataset, collate, batch_size=4, seed=4)) != first
    assert order(make_batches(dataset, collate, batch_size=4, shuffle=False)) == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]


def token_weighted_loss(model, dataset) -> torch.Tensor:
    """The loss of a padded batch computed independently: each example alone, unpadded."""
    total, count = 0.0, 0
    for example in dataset:
        logits = model(input_ids=example["input_ids"][None]).logits[0, :-1]
        targets = example["labels"][1:]
        total += torch.nn.functional.cross_entropy(
            logits, targets, ignore_index=IGNORE_INDEX, reduction="sum"
        )
        count += int((targets != IGNORE_INDEX).sum())
    return total / count


def test_padded_batch_loss_equals_the_unpadded_loss():
    dataset = EncodedDataset(
        [
            {
                "input_ids": torch.tensor([3, 4, 5, 6, 7, 8]),
                "labels": torch.tensor([-100, -100, 5, 6, 7, 8]),
            },
            {"input_ids": torch.tensor([9, 10, 11]), "labels": torch.tensor([-100, 10, 11])},
        ]
    )
    model = make_tiny_llama().eval()
    batch = next(iter(make_batches(dataset, PaddingCollator(0), batch_size=2, shuffle=False)))
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).loss, token_weighted_loss(model, dataset))


# --- SmolLM2's ChatML (slow: needs the converted bundled model) ----------------------------------


@pytest.mark.slow
def test_smollm_chat_mask_is_exactly_the_assistant_text_and_im_end():
    tokenizer = smollm_tokenizer()
    messages = [
        {"role": "system", "content": "Answer briefly."},
        user("What is 2+2?"),
        assistant("It is 5.", weight=0),
        user("Really?"),
        assistant("Sorry: 2 + 2 = 4."),
        user("And 3+3?"),
        assistant(" 6, with a leading space.\n"),
    ]
    dataset, stats = build_dataset([{"messages": messages}], "chat", tokenizer)
    runs = [tokenizer.decode(run) for run in trained_runs(dataset[0])]
    assert runs == ["Sorry: 2 + 2 = 4.<|im_end|>", " 6, with a leading space.\n<|im_end|>"]
    assert stats.trained_tokens == sum(len(ids(tokenizer, text)) for text in runs)
    decoded = tokenizer.decode(dataset[0]["input_ids"])
    assert decoded.startswith("<|im_start|>system\nAnswer briefly.<|im_end|>")
    assert decoded.endswith("<|im_end|>\n") and "It is 5." in decoded


@pytest.mark.slow
def test_smollm_prompt_completion_and_text_boundaries():
    tokenizer = smollm_tokenizer()
    row = {"prompt": "Q: What is 7 + 5?\nA:", "completion": " 12"}
    dataset, _ = build_dataset([row], "prompt_completion", tokenizer)
    prompt_ids, completion_ids = ids(tokenizer, row["prompt"]), ids(tokenizer, row["completion"])
    eos = tokenizer.eos_token_id
    assert dataset[0]["input_ids"].tolist() == [*prompt_ids, *completion_ids, eos]
    assert dataset[0]["labels"].tolist() == [IGNORE_INDEX] * len(prompt_ids) + [
        *completion_ids,
        eos,
    ]
    dataset, stats = build_dataset([{"text": "Plain text to learn."}], "text", tokenizer)
    text_ids = ids(tokenizer, "Plain text to learn.")
    assert dataset[0]["labels"].tolist() == [IGNORE_INDEX, *text_ids[1:], eos]
    assert (stats.tokens, stats.trained_tokens) == (len(text_ids) + 1, len(text_ids))


@pytest.mark.slow
def test_smollm_truncation_cuts_and_drops_with_counts():
    tokenizer = smollm_tokenizer()
    long_question = " ".join(["word"] * 300)
    rows = [
        {"messages": [user("Hi"), assistant("Hello! " * 40)]},  # cut inside the answer: kept
        {"messages": [user(long_question), assistant("Yes.")]},  # answer cut away entirely: dropped
        {"messages": [user("Hi"), assistant("Hello!")]},  # fits
    ]
    dataset, stats = build_dataset(rows, "chat", tokenizer, max_length=64, line_numbers=[2, 5, 6])
    assert (stats.examples, stats.truncated, stats.dropped, stats.dropped_lines) == (2, 1, 1, [5])
    assert len(dataset[0]["input_ids"]) == 64
    assert stats.tokens == 64 + len(dataset[1]["input_ids"])
    assert stats.trained_tokens == sum(int((e["labels"] != IGNORE_INDEX).sum()) for e in dataset)


@pytest.mark.slow
def test_smollm_batch_loss_matches_unpadded_examples():
    rows = [
        {"messages": [user("What is 3 + 4?"), assistant("3 + 4 = 7. The answer is 7.")]},
        {"messages": [user("Hi"), assistant("Hello!")]},
    ]
    dataset, _ = build_dataset(rows, "chat", smollm_tokenizer())
    model = AutoModelForCausalLM.from_pretrained(smollm_dir()).eval()
    batch = next(iter(make_batches(dataset, smollm_tokenizer(), batch_size=2, shuffle=False)))
    assert len({int(n) for n in batch["attention_mask"].sum(dim=1)}) > 1  # padding is exercised
    with torch.no_grad():
        torch.testing.assert_close(
            model(**batch).loss, token_weighted_loss(model, dataset), atol=1e-4, rtol=1e-4
        )


# --- the demo's instruction set ------------------------------------------------------------------


def load_generator():
    spec = importlib.util.spec_from_file_location(
        "make_instructions", EXAMPLES / "make_instructions.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_instruction_set_is_small_chat_and_reproducible():
    path = EXAMPLES / "instructions.jsonl"
    fmt, rows = read_jsonl(str(path))
    assert fmt == "chat" and 150 <= len(rows) <= 300 and path.stat().st_size < 200_000
    arithmetic = [r for r in rows if "The answer is" in r["messages"][-1]["content"]]
    assert len(arithmetic) == 100
    generator = load_generator()
    rng = random.Random(generator.SEED)
    expected = generator.corpus_rows(rng) + generator.arithmetic_rows(rng)
    rng.shuffle(expected)
    assert [json.loads(json.dumps(row)) for row in expected] == rows


@pytest.mark.slow
def test_instruction_set_encodes_without_drops():
    _, rows = read_jsonl(str(EXAMPLES / "instructions.jsonl"))
    _, stats = build_dataset(rows, "chat", smollm_tokenizer(), max_length=512)
    assert (stats.examples, stats.dropped, stats.truncated) == (len(rows), 0, 0)
    assert 0 < stats.trained_tokens < stats.tokens
