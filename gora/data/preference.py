"""Preference rows into the token ids preference tuning (DPO) trains on.

Each validated ``preference`` row becomes ``{"prompt_ids", "chosen_ids", "rejected_ids"}``: the
shape TRL's ``DataCollatorForPreference`` pads into one batch of the chosen sequences followed by the
rejected ones, with a ``completion_mask`` over the answers. The conversation is rendered with the
model's chat template; an answer is the text the template adds for the assistant turn (its content
and end-of-turn token), found by rendering the prompt with the generation prompt and the prompt with
the answer, as ``encoding.chat_text_and_spans`` does for chat rows.

Why we encode rather than let TRL tokenise: one encoding path for every format (the same chat
template handling, ``max_length`` rule and line-numbered errors as supervised rows), and no
``datasets`` round trip for rows we already hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

from gora.data.encoding import EncodingStats, tokens_in_spans
from gora.data.formats import DataFormatError
from gora.data.loading import IGNORE_INDEX, EncodedDataset

ANSWERS = {"chosen_ids": "preferred_output", "rejected_ids": "non_preferred_output"}


def _plain(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict], generation: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def encode_preference_row(
    row: dict[str, Any], tokenizer: PreTrainedTokenizerBase, line: int = 1
) -> dict[str, list[int]]:
    """Untruncated ``prompt_ids`` and the ``chosen_ids``/``rejected_ids`` answers that follow it."""
    prompt = _plain(row["input"]["messages"])
    before = _render(tokenizer, prompt, generation=True)
    encoded: dict[str, list[int]] = {}
    for key, field in ANSWERS.items():
        through = _render(tokenizer, prompt + _plain(row[field]), generation=False).rstrip()
        if not through.startswith(before) or len(through) == len(before):
            raise DataFormatError(
                line,
                field,
                "the model's chat template does not render this answer after the conversation "
                "(e.g. a conversation that ends with an assistant turn), so its tokens cannot be "
                "located",
            )
        ids, labels = tokens_in_spans(tokenizer, through, [(len(before), len(through))])
        start = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
        encoded.setdefault("prompt_ids", ids[:start])
        if ids[:start] != encoded["prompt_ids"]:  # a tokenizer merged across the boundary
            raise DataFormatError(line, field, "the answer's first token merges with the prompt")
        encoded[key] = ids[start:]
    return encoded


def _truncate(example: dict[str, list[int]], max_length: int) -> tuple[dict, bool, bool]:
    """Each of prompt+chosen and prompt+rejected cut at the end to ``max_length`` tokens (the rule
    of supervised rows); also whether anything was cut and whether an answer lost every token."""
    room = max_length - len(example["prompt_ids"])
    cut = {key: example[key][: max(room, 0)] for key in ANSWERS}
    truncated = any(len(cut[key]) < len(example[key]) for key in ANSWERS)
    empty = any(not cut[key] for key in ANSWERS)
    return {"prompt_ids": example["prompt_ids"], **cut}, truncated, empty


def build_preference_dataset(
    rows: Sequence[dict[str, Any]],
    lines: Sequence[int],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
) -> tuple[EncodedDataset, EncodingStats]:
    """Encoded preference rows; a row whose prompt leaves no room for an answer is dropped and
    counted. ``trained_tokens`` counts the answer tokens (chosen and rejected) the loss covers."""
    if not tokenizer.chat_template:
        raise ValueError(
            "preference rows are conversations and need a chat template, and this model's "
            "tokenizer has none: use a chat model (e.g. 'smollm2-135m')"
        )
    stats, examples = EncodingStats(), []
    for row, line in zip(rows, lines, strict=True):
        example, truncated, empty = _truncate(
            encode_preference_row(row, tokenizer, line), max_length
        )
        if empty:
            stats.dropped += 1
            stats.dropped_lines.append(line)
            continue
        examples.append(example)
        answers = len(example["chosen_ids"]) + len(example["rejected_ids"])
        stats.examples += 1
        stats.truncated += truncated
        stats.tokens += 2 * len(example["prompt_ids"]) + answers
        stats.trained_tokens += answers
    return EncodedDataset(examples), stats


def preference_collator(pad_token_id: int):
    """TRL's collator: chosen sequences then rejected ones, padded, with a ``completion_mask``."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    return DataCollatorForPreference(pad_token_id=pad_token_id)
