"""Test-time metrics: accuracy and macro-F1 (classification), exact match with greedy decoding."""

from __future__ import annotations

from typing import Any

import torch

from bench.quality.arithmetic import final_number
from gora.data.loading import collator_for
from gora.train import collapse

EVAL_BATCH = 64


def accuracy(predictions: list[int], labels: list[int]) -> float:
    return sum(p == y for p, y in zip(predictions, labels, strict=True)) / len(labels)


def macro_f1(predictions: list[int], labels: list[int]) -> float:
    """Mean F1 over the classes present in ``labels`` (a class never predicted scores 0)."""
    scores = []
    for cls in sorted(set(labels)):
        tp = sum(p == cls and y == cls for p, y in zip(predictions, labels, strict=True))
        predicted = sum(p == cls for p in predictions)
        actual = sum(y == cls for y in labels)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual
        scores.append(2 * precision * recall / (precision + recall) if tp else 0.0)
    return sum(scores) / len(scores)


def classify(model, dataset, tokenizer) -> tuple[list[int], list[int]]:
    predictions, labels, _ = collapse.classify(model, dataset, collator_for(tokenizer), EVAL_BATCH)
    return predictions, labels


def classification_metrics(model, dataset, tokenizer) -> dict[str, float]:
    predictions, labels = classify(model, dataset, tokenizer)
    return {"accuracy": accuracy(predictions, labels), "macro_f1": macro_f1(predictions, labels)}


def _prompt_ids(tokenizer, prompt: str) -> list[int]:
    # As gora.data.encoding builds a prompt/completion row: leading specials (if any) + the prompt.
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    leading = full[: full.index(bare[0])] if bare and bare[0] in full else []
    return leading + tokenizer(prompt, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def generate_answers(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy completions, batched with left padding (so every prompt ends where generation starts)."""
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    outputs = []
    for start in range(0, len(prompts), EVAL_BATCH):
        encoded = [_prompt_ids(tokenizer, p) for p in prompts[start : start + EVAL_BATCH]]
        width = max(map(len, encoded))
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
        generated = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
        )
        outputs += tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
    return outputs


def exact_match(model, tokenizer, rows: list[dict[str, Any]], max_new_tokens: int) -> dict:
    answers = generate_answers(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens)
    hits = [final_number(text) == row["answer"] for text, row in zip(answers, rows, strict=True)]
    return {"exact_match": sum(hits) / len(rows), "samples": answers[:3]}
