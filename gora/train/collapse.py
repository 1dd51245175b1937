"""A quiet failure the divergence guard cannot see: a classifier that answers one class for everything.

Its loss stays near the start (the majority class's share), so nothing explodes; the adapter is
useless all the same. The search drops such a trial, and every job checks its result for it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, NamedTuple

import torch

# A classifier is judged after this many optimizer steps. Before, one class for every example is where
# a classifier starts (its head learns the majority class first), not a collapse: a 3-step job on 16
# rows answers one class and is simply short.
MIN_STEPS = 20


def is_classification(dataset: Any) -> bool:
    """Whether the examples carry one integer label each (a classification head's data)."""
    if dataset is None or len(dataset) == 0:
        return False
    labels = dataset[0].get("labels")
    return labels is not None and torch.as_tensor(labels).dim() == 0


class Predictions(NamedTuple):
    predicted: list[int]
    labels: list[int]
    loss: float  # mean cross-entropy over the examples


@torch.no_grad()
def classify(model, dataset, collator, batch_size: int = 32) -> Predictions:
    """The classifier's answers on ``dataset`` (labelled classification examples), in eval mode."""
    was_training = model.training
    model.eval()
    predicted: list[int] = []
    labels: list[int] = []
    loss_sum = 0.0
    device = next(model.parameters()).device
    for start in range(0, len(dataset), batch_size):
        batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        truth = batch.pop("labels").to(device)
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        loss_sum += float(torch.nn.functional.cross_entropy(logits, truth, reduction="sum"))
        labels += truth.tolist()
        predicted += logits.argmax(-1).tolist()
    model.train(was_training)
    return Predictions(predicted, labels, loss_sum / max(1, len(labels)))


def classifier_collapse(model, dataset, collator, batch_size: int = 32) -> str | None:
    """Why the classifier's predictions on ``dataset`` are unusable (one class for every example
    while the labels hold several), or None; None for data that is not classification."""
    if not is_classification(dataset):
        return None
    predicted, labels, _ = classify(model, dataset, collator, batch_size)
    return one_class(predicted, labels)


def one_class(predicted: list[int], labels: list[int]) -> str | None:
    """Why ``predicted`` is a collapse (a single class, where ``labels`` hold several), or None."""
    answered = Counter(predicted)
    if len(answered) == 1 and len(set(labels)) > 1:
        (only,) = answered
        return f"the classifier predicts class {only} for all {len(predicted)} examples"
    return None
