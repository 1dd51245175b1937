"""Rows of each task, split into train / validation / test, and encoded for a model's tokenizer."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from bench.quality import arithmetic, r8
from bench.quality.settings import TaskSettings
from gora.data.encoding import build_dataset
from gora.data.loading import EncodedDataset

SPLIT_SEED = 1234  # fixed: every method and seed sees the same train, validation and test rows


@dataclass
class TaskData:
    train_rows: list[dict[str, Any]]
    valid_rows: list[dict[str, Any]]
    test_rows: list[dict[str, Any]]
    labels: list[str]  # class names (R8); empty for generation


def task_rows(settings: TaskSettings) -> TaskData:
    if settings.is_classification:
        return _r8_rows(settings)
    return _arithmetic_rows(settings)


def _r8_rows(settings: TaskSettings) -> TaskData:
    full_train = r8.load_r8("train")
    labels = sorted({row["label"] for row in full_train})
    train, valid = r8.split_validation(full_train, settings.n_valid, SPLIT_SEED)
    test = r8.load_r8("test")
    if settings.n_test is not None:
        test = random.Random(SPLIT_SEED).sample(test, settings.n_test)
    return TaskData(train[: settings.n_train], valid, test, labels)


def _arithmetic_rows(settings: TaskSettings) -> TaskData:
    n_test = settings.n_test or 200
    train, test = arithmetic.train_test_split(settings.n_train + settings.n_valid, n_test)
    valid, train = train[: settings.n_valid], train[settings.n_valid :]
    return TaskData(train, valid, test, [])


def encode_train(
    rows: list[dict[str, Any]], tokenizer, settings: TaskSettings, labels: list[str]
) -> EncodedDataset:
    if settings.is_classification:
        label2id = {name: i for i, name in enumerate(labels)}
        dataset, _ = build_dataset(
            rows, "classification", tokenizer, settings.hf_task, settings.max_length, label2id
        )
        return dataset
    plain = [{"prompt": row["prompt"], "completion": row["completion"]} for row in rows]
    dataset, _ = build_dataset(
        plain, "prompt_completion", tokenizer, "causal_lm", settings.max_length
    )
    return dataset
