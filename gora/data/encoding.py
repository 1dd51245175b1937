"""Validated rows into model inputs: token ids and the labels that say where the loss applies.

Causal LM rows become ``input_ids`` and ``labels`` (-100 where no loss applies):
- chat: rendered with the tokenizer's chat template; the loss covers each assistant turn with weight 1,
  its content and the end-of-turn token the template closes it with (``<|im_end|>`` for ChatML).
  Turns are located by rendering the conversation's prefixes as strings and mapping those character
  positions onto tokens through the tokenizer's offsets, so any template that renders a conversation's
  prefix as a prefix of the whole works, without knowing its markers.
- prompt_completion: ``prompt + completion`` as given (no separator added), loss on the completion + eos.
- text: loss on every token + eos.
Classification rows become ``input_ids`` (+ the tokenizer's other fields) and an integer ``labels``.
Preference rows become prompt, chosen and rejected token ids (``gora.data.preference``).

The first position's label is always -100: causal LMs predict token t from tokens before it, so the
first token is never a target, and counting it would overstate the trained tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from gora.data.formats import FORMATS, DataFormatError, validate_row
from gora.data.loading import IGNORE_INDEX, EncodedDataset, Example
from gora.model_registry import check_task

TASK_FORMATS = {
    "causal_lm": ("chat", "prompt_completion", "text", "preference"),
    "sequence_classification": ("classification",),
}

Span = tuple[int, int]  # [start, end) in characters


@dataclass
class EncodingStats:
    """What encoding a dataset gave: kept examples, their tokens, and what was cut or dropped."""

    examples: int = 0
    tokens: int = 0  # input tokens of the kept examples, after truncation
    trained_tokens: int = 0  # tokens with a label (causal LM); 0 for classification
    truncated: int = 0  # kept examples cut to max_length
    dropped: int = 0  # examples whose trained tokens were all cut away
    dropped_lines: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_format_for_task(fmt: str, task: str) -> None:
    """A ValueError saying what to do when rows of format ``fmt`` cannot train ``task``."""
    check_task(task)
    if fmt not in FORMATS:
        raise ValueError(f"unknown data format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if fmt in TASK_FORMATS[task]:
        return
    if fmt == "preference":
        raise ValueError(
            "preference rows train a causal LM (method 'dpo'): use a causal LM such as "
            "'smollm2-135m'"
        )
    if task == "causal_lm":
        raise ValueError(
            "classification rows ({'text', 'label'}) train a classifier: use "
            "task='sequence_classification' with a model such as 'minilm-l6', or give chat, "
            "prompt/completion or text rows to fine-tune a causal LM"
        )
    raise ValueError(
        f"{fmt} rows have no labels: task='sequence_classification' needs rows "
        "{'text': ..., 'label': ...}; use task='causal_lm' to train on " + f"{fmt} rows"
    )


def build_label_map(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Label -> class id, labels sorted as strings (as ``formats.FileReport.labels`` lists them)."""
    return {label: i for i, label in enumerate(sorted({str(row["label"]) for row in rows}))}


def build_dataset(
    rows: Sequence[dict[str, Any]],
    fmt: str,
    tokenizer: PreTrainedTokenizerBase,
    task: str = "causal_lm",
    max_length: int = 1024,
    label2id: dict[str, int] | None = None,
    *,
    line_numbers: Sequence[int] | None = None,
) -> tuple[EncodedDataset, EncodingStats]:
    """Encodes rows of one format for ``task``; rows are checked again, errors name line and field.

    ``line_numbers`` gives each row's line in its file (default: 1, 2, ...; pass them when the file
    had blank lines). Rows longer than ``max_length`` tokens are cut at the end; causal LM rows left
    with no trained token are dropped and counted in the stats.
    """
    check_format_for_task(fmt, task)
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2 tokens, got {max_length}")
    lines = list(line_numbers) if line_numbers is not None else list(range(1, len(rows) + 1))
    if len(lines) != len(rows):
        raise ValueError(f"{len(lines)} line numbers for {len(rows)} rows")
    for row, line in zip(rows, lines, strict=True):
        kind = validate_row(row, line)
        if kind != fmt:
            raise DataFormatError(line, None, f"is a {kind} row in a {fmt} dataset")
    if task == "sequence_classification":
        return _build_classification(rows, lines, tokenizer, max_length, label2id)
    if fmt == "preference":
        from gora.data.preference import build_preference_dataset  # it builds on this module

        return build_preference_dataset(rows, lines, tokenizer, max_length)
    return _build_causal(rows, lines, fmt, tokenizer, max_length)


# --- causal LM -----------------------------------------------------------------------------------


def _build_causal(
    rows: Sequence[dict[str, Any]],
    lines: list[int],
    fmt: str,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
) -> tuple[EncodedDataset, EncodingStats]:
    if fmt == "chat" and not tokenizer.chat_template:
        raise ValueError(
            "chat rows need a chat template, and this model's tokenizer has none: use a chat model "
            "(e.g. 'smollm2-135m') or give prompt/completion rows"
        )
    stats, examples = EncodingStats(), []
    for row, line in zip(rows, lines, strict=True):
        ids, labels = encode_causal_row(row, fmt, tokenizer, line)
        truncated = len(ids) > max_length
        ids, labels = ids[:max_length], labels[:max_length]
        trained = sum(label != IGNORE_INDEX for label in labels)
        if trained == 0:
            stats.dropped += 1
            stats.dropped_lines.append(line)
            continue
        examples.append({"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)})
        stats.examples += 1
        stats.truncated += truncated
        stats.tokens += len(ids)
        stats.trained_tokens += trained
    return EncodedDataset(examples), stats


def encode_causal_row(
    row: dict[str, Any], fmt: str, tokenizer: PreTrainedTokenizerBase, line: int = 1
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one untruncated causal LM row."""
    if fmt == "chat":
        text, spans = chat_text_and_spans(row["messages"], tokenizer, line)
        ids, labels = tokens_in_spans(tokenizer, text, spans)
    else:
        prompt = row.get("prompt", "") if fmt == "prompt_completion" else ""
        body = row["completion"] if fmt == "prompt_completion" else row["text"]
        ids, labels = tokens_in_spans(
            tokenizer, prompt + body, [(len(prompt), len(prompt) + len(body))]
        )
        leading = _leading_special_ids(tokenizer)  # e.g. Llama's BOS; the chat template has its own
        ids, labels = leading + ids, [IGNORE_INDEX] * len(leading) + labels
        if tokenizer.eos_token_id is not None:  # so that the model learns to stop
            ids, labels = [*ids, tokenizer.eos_token_id], [*labels, tokenizer.eos_token_id]
    if labels:
        labels[0] = IGNORE_INDEX
    return ids, labels


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict], generation: bool) -> str:
    # Strings, not token ids: transformers 5 returns a BatchEncoding for tokenize=True.
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def chat_text_and_spans(
    messages: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, line: int = 1
) -> tuple[str, list[Span]]:
    """The rendered conversation and the character spans of its trained assistant turns.

    A turn's span runs from the end of the prefix rendered with the generation prompt to the end of
    the prefix rendered with the turn, less trailing whitespace: its content and end-of-turn token.
    Messages after the last trained turn are left out: a causal LM's earlier tokens cannot see them.
    """
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    trained = [
        i
        for i, m in enumerate(messages)
        if m["role"] == "assistant" and m.get("weight", 1) == 1 and m["content"].strip()
    ]
    text = _render(tokenizer, plain[: trained[-1] + 1], generation=False)
    spans = []
    for i in trained:
        before = _render(tokenizer, plain[:i], generation=True)
        through = _render(tokenizer, plain[: i + 1], generation=False)
        if not (through.startswith(before) and text.startswith(through)):
            raise DataFormatError(
                line,
                f"messages[{i}]",
                "the model's chat template does not render this conversation's prefixes as "
                "prefixes of the whole (e.g. a conversation opening with an assistant turn, or a "
                "template that rewrites earlier turns), so the turn's tokens cannot be located",
            )
        spans.append((len(before), len(through.rstrip())))
    return text, spans


def tokens_in_spans(
    tokenizer: PreTrainedTokenizerBase, text: str, spans: Sequence[Span]
) -> tuple[list[int], list[int]]:
    """Token ids of ``text`` (no special tokens added) and labels: a token whose first character
    lies in a span is its own label, every other token -100."""
    try:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        starts = [start for start, _ in encoded["offset_mapping"]]
        ids = list(encoded["input_ids"])
    except (NotImplementedError, ValueError, KeyError):  # tokenizers without offsets
        return _tokens_in_spans_by_prefix(tokenizer, text, spans)
    in_span = [any(lo <= s < hi for lo, hi in spans) for s in starts]
    return ids, [t if keep else IGNORE_INDEX for t, keep in zip(ids, in_span, strict=True)]


def _tokens_in_spans_by_prefix(
    tokenizer: PreTrainedTokenizerBase, text: str, spans: Sequence[Span]
) -> tuple[list[int], list[int]]:
    # Token counts of the text up to each span boundary; exact where tokens do not cross boundaries.
    def count(end: int) -> int:
        return len(tokenizer(text[:end], add_special_tokens=False)["input_ids"])

    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    for lo, hi in spans:
        for position in range(count(lo), min(count(hi), len(ids))):
            labels[position] = ids[position]
    return ids, labels


def _leading_special_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The special tokens the tokenizer puts before a text (a BOS), found by encoding one."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    if not bare or bare[0] not in full:
        return []
    return list(full[: full.index(bare[0])])


# --- classification ------------------------------------------------------------------------------


def _build_classification(
    rows: Sequence[dict[str, Any]],
    lines: list[int],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    label2id: dict[str, int] | None,
) -> tuple[EncodedDataset, EncodingStats]:
    label2id = {str(k): v for k, v in (label2id or build_label_map(rows)).items()}
    stats, examples = EncodingStats(), []
    for row, line in zip(rows, lines, strict=True):
        example = encode_classification_row(row, tokenizer, label2id, max_length, line)
        if len(example["input_ids"]) == max_length:
            stats.truncated += _is_truncated(tokenizer, row["text"], max_length)
        examples.append(example)
        stats.examples += 1
        stats.tokens += len(example["input_ids"])
    return EncodedDataset(examples), stats


def encode_classification_row(
    row: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    label2id: dict[str, int],
    max_length: int,
    line: int = 1,
) -> Example:
    """Token ids (with the tokenizer's special tokens, cut to ``max_length``) and the class id."""
    label = str(row["label"])
    if label not in label2id:
        known = ", ".join(sorted(label2id, key=label2id.__getitem__))
        raise DataFormatError(line, "label", f"unknown label {label!r}; the labels are: {known}")
    encoded = tokenizer(row["text"], truncation=True, max_length=max_length)
    example: Example = {key: torch.tensor(value) for key, value in encoded.items()}
    example["labels"] = label2id[label]
    return example


def _is_truncated(tokenizer: PreTrainedTokenizerBase, text: str, max_length: int) -> bool:
    return len(tokenizer(text)["input_ids"]) > max_length
