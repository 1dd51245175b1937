"""How often the model's top guess is the label: per trained token (causal LM) or per example
(classification), counted on the device while training and evaluating, read once per logged step.

OpenAI reports this as ``mean_token_accuracy``; for a classification head it is plain accuracy.
"""

from __future__ import annotations

import torch

from gora.data.loading import IGNORE_INDEX


def hits_and_counts(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct predictions, predictions) in one micro-batch, as 0-d tensors on the logits' device.

    Token-level labels (``labels`` shaped like the logits' first two dims): the prediction at position
    t is for token t + 1, and -100 marks positions without a target (prompt, padding), as in the
    causal LM loss. Sequence-level labels (one per example): the top class against the label.
    """
    if logits.dim() == 3 and labels.shape == logits.shape[:2]:
        predicted = logits[:, :-1].argmax(dim=-1)
        targets = labels[:, 1:].to(predicted.device)
        scored = targets != IGNORE_INDEX
        return ((predicted == targets) & scored).sum(), scored.sum()
    predicted = logits.argmax(dim=-1)
    return (predicted == labels.to(predicted.device)).sum(), torch.tensor(
        labels.numel(), device=predicted.device
    )


class AccuracyTally:
    """Correct and total predictions since the last ``drain``, kept as tensors (no host sync per
    micro-batch)."""

    def __init__(self) -> None:
        self._hits: torch.Tensor | None = None
        self._count: torch.Tensor | None = None

    def add(self, logits: torch.Tensor | None, labels: torch.Tensor | None) -> None:
        if logits is None or labels is None:
            return
        with torch.no_grad():
            hits, count = hits_and_counts(logits.detach(), labels)
        if self._hits is None or self._count is None:
            self._hits, self._count = hits, count
        else:
            self._hits = self._hits + hits.to(self._hits.device)
            self._count = self._count + count.to(self._count.device)

    def drain(self, device: torch.device) -> torch.Tensor:
        """``[hits, count]`` since the last drain, on ``device`` (ready for a cross-rank sum)."""
        hits, count = self._hits, self._count
        self._hits = self._count = None
        if hits is None or count is None:
            return torch.zeros(2, device=device)
        return torch.stack([hits.to(device).float(), count.to(device).float()])


def accuracy_of(totals: torch.Tensor) -> float | None:
    """hits / count from a drained ``[hits, count]``; None when nothing was scored."""
    hits, count = (float(v) for v in totals)
    return hits / count if count > 0 else None
