"""A quiet failure the divergence guard cannot see: a classifier that answers one class for everything.

Its loss stays near the start (the majority class's share), so nothing explodes; the adapter is
useless all the same. The search drops such a trial, and every job checks its result for it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

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


@torch.no_grad()
def classifier_collapse(model, dataset, collator, batch_size: int = 32) -> str | None:
    """Why the classifier's predictions on ``dataset`` are unusable (one class for every example
    while the labels hold several), or None; None for data that is not classification."""
    if not is_classification(dataset):
        return None
    was_training = model.training
    model.eval()
    predicted: Counter[int] = Counter()
    labels: set[int] = set()
    device = next(model.parameters()).device
    for start in range(0, len(dataset), batch_size):
        batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        labels.update(batch.pop("labels").tolist())
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        predicted.update(logits.argmax(-1).tolist())
    model.train(was_training)
    if len(predicted) == 1 and len(labels) > 1:
        (only,) = predicted
        return f"the classifier predicts class {only} for all {len(dataset)} examples"
    return None
