"""The job's result file: OpenAI's ``step_metrics.csv``, one row per training step, with the
validation columns filled at the steps that were evaluated (empty elsewhere, as OpenAI's are)."""

from __future__ import annotations

import csv
import io
from typing import Any

RESULT_FILENAME = "step_metrics.csv"
COLUMNS = ("step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy")


def step_metrics_csv(train: list[dict[str, Any]], valid: list[dict[str, Any]]) -> tuple[bytes, int]:
    """(the CSV, its number of rows) from the job's training and validation metrics events.

    A resumed run may report a step twice (an attempt ran past its last checkpoint): the later
    report of a step wins, so every step appears once, in order.
    """
    by_step: dict[int, dict[str, Any]] = {}
    for values in train:
        row = by_step.setdefault(int(values["step"]), {})
        row.update(train_loss=values.get("loss"), train_accuracy=values.get("accuracy"))
    for values in valid:
        row = by_step.setdefault(int(values["step"]), {})
        row.update(
            valid_loss=values.get("valid_loss"),
            valid_mean_token_accuracy=values.get("valid_mean_token_accuracy"),
        )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for step in sorted(by_step):
        row = by_step[step]
        writer.writerow([step, *(_cell(row.get(column)) for column in COLUMNS[1:])])
    return out.getvalue().encode(), len(by_step)


def _cell(value: Any) -> str:
    return "" if value is None else f"{float(value):.6g}"
