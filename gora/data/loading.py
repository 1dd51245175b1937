"""Encoded examples into padded batches: the dataset, the collator and a seeded loader."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100  # the label transformers' losses skip

Example = dict[str, Any]
Collator = Callable[[Sequence[Example]], dict[str, torch.Tensor]]


class EncodedDataset(Dataset):
    """Encoded examples held in a list: ``input_ids`` (and ``labels``) as 1-D long tensors.

    Causal LM examples have per-token ``labels``; classification examples an integer ``labels``.
    """

    def __init__(self, examples: list[Example]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Example:
        return self.examples[index]


class PaddingCollator:
    """Pads a batch to its longest row on the right: ``input_ids`` with the pad id, ``labels`` with
    -100 (so padding never counts in the loss), ``attention_mask`` and anything else with 0.

    ``attention_mask`` is built from the row lengths when examples do not carry one.
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def _padded_length(self, longest: int) -> int:
        multiple = self.pad_to_multiple_of
        return -(-longest // multiple) * multiple if multiple else longest

    def _fill_value(self, key: str) -> int:
        if key == "input_ids":
            return self.pad_token_id
        return IGNORE_INDEX if key == "labels" else 0

    def __call__(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        rows = [
            {key: torch.as_tensor(value) for key, value in example.items()} for example in examples
        ]
        lengths = [len(row["input_ids"]) for row in rows]
        width = self._padded_length(max(lengths))
        for row, length in zip(rows, lengths, strict=True):
            row.setdefault("attention_mask", torch.ones(length, dtype=torch.long))
        batch = {}
        for key in rows[0]:
            values = [row[key] for row in rows]
            if values[0].dim() == 0:  # one value per row, e.g. a class label
                batch[key] = torch.stack(values)
                continue
            padded = torch.full((len(rows), width), self._fill_value(key), dtype=values[0].dtype)
            for i, value in enumerate(values):
                padded[i, : len(value)] = value
            batch[key] = padded
        return batch


def collator_for(
    tokenizer: PreTrainedTokenizerBase, pad_to_multiple_of: int | None = None
) -> PaddingCollator:
    """A collator padding with the tokenizer's pad token (eos, or 0, when it has none)."""
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    return PaddingCollator(pad_id, pad_to_multiple_of)


def make_batches(
    dataset: Dataset,
    tokenizer_or_collator: PreTrainedTokenizerBase | Collator,
    batch_size: int,
    *,
    seed: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
) -> DataLoader:
    """A loader yielding padded batches (dicts of tensors that ``model(**batch)`` accepts).

    The order comes from a generator seeded with ``seed``: the same seed gives the same batches, and
    each new pass over the loader (epoch) draws the next permutation of that generator.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if isinstance(tokenizer_or_collator, PreTrainedTokenizerBase):
        collate = collator_for(tokenizer_or_collator)
    else:
        collate = tokenizer_or_collator
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(seed),
    )
