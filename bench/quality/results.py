"""``results.json`` (the table's rows), ``lr_search.json`` (validation scores) and per-run records.

Rows are appended and the file rewritten atomically after each run, so a stopped session loses at
most the run in progress; ``has_rows`` lets the runner skip what is already there. Each rewrite holds
an exclusive lock, so two runners (one per core) can fill the table side by side.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
QUICK_RESULTS = HERE / "out" / "results_quick.json"  # quick runs never enter the table
LR_SEARCH = HERE / "lr_search.json"
DIAGNOSTICS = HERE / "diagnostics.json"  # controls outside the method list (run.py)
RUNS = HERE / "runs"  # one JSON per run: losses, allocation (GoRA), settings


def read_rows(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else []


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _rewrite(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    os.replace(tmp, path)


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with _locked(path):
        _rewrite(path, read_rows(path) + rows)


def _is_row(row: dict[str, Any], task: str, method: str, seed: int) -> bool:
    return row["task"] == task and row["method"] == method and row["seed"] == seed


def rows_for(path: Path, task: str, method: str, seed: int) -> list[dict[str, Any]]:
    return [r for r in read_rows(path) if _is_row(r, task, method, seed)]


def has_rows(path: Path, task: str, method: str, seed: int) -> bool:
    return bool(rows_for(path, task, method, seed))


def row_lr(path: Path, task: str, method: str, seed: int) -> float | None:
    rows = rows_for(path, task, method, seed)
    return rows[0]["lr"] if rows else None


def drop_rows(path: Path, task: str, method: str, seed: int) -> None:
    """Removes a row group whose learning rate is no longer the search's choice (grid widened)."""
    with _locked(path):
        _rewrite(path, [r for r in read_rows(path) if not _is_row(r, task, method, seed)])


def searched(task: str, method: str) -> dict[float, dict[str, Any]]:
    """Learning rate -> its validation record, for the rates already tried."""
    return {r["lr"]: r for r in read_rows(LR_SEARCH) if r["task"] == task and r["method"] == method}


def run_name(task: str, method: str, seed: int, lr: float, quick: bool) -> str:
    return f"{'quick-' if quick else ''}{task}-{method}-seed{seed}-lr{lr:g}"


def write_run(name: str, record: dict[str, Any], quick: bool) -> Path:
    folder = HERE / "out" / "runs" if quick else RUNS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(record) + "\n")
    return path
