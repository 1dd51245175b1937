"""The result file's rows and the estimated finish, from what a run reports (pure, no server)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from worker.callbacks import StepPace
from worker.results import COLUMNS, step_metrics_csv


def test_step_metrics_csv_has_openais_columns_one_row_per_step():
    train = [
        {"step": 1, "loss": 2.5, "accuracy": 0.25},
        {"step": 2, "loss": 2.0, "accuracy": None},
        {"step": 2, "loss": 1.9, "accuracy": 0.5},  # a resumed attempt's report wins
        {"step": 3, "loss": 1.5, "accuracy": 0.75},
    ]
    valid = [{"step": 2, "valid_loss": 2.2, "valid_mean_token_accuracy": 0.4}]
    content, rows = step_metrics_csv(train, valid)
    table = list(csv.reader(io.StringIO(content.decode())))
    assert tuple(table[0]) == COLUMNS == (
        "step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy",
    )  # fmt: skip
    assert table[1:] == [
        ["1", "2.5", "0.25", "", ""],
        ["2", "1.9", "0.5", "2.2", "0.4"],
        ["3", "1.5", "0.75", "", ""],
    ]
    assert rows == 3


def test_the_estimate_follows_the_measured_pace():
    now = [1000.0]
    pace = StepPace(clock=lambda: now[0])
    assert pace.estimated_finish() is None
    pace.observe(step=5, total_steps=25)  # a resumed attempt starts past step 1
    assert pace.estimated_finish() is None  # one step says nothing about the pace
    for step in range(6, 11):
        now[0] += 2.0
        pace.observe(step, 25)
    # 2 s a step, 15 steps to go, from t = 1010 s.
    assert pace.estimated_finish() == datetime.fromtimestamp(1040.0, UTC)
