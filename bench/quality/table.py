"""The markdown table of docs/benchmarks.md, from results.json and lr_search.json.

    python -m bench.quality.table                 # print
    python -m bench.quality.table --write         # and replace the table in docs/benchmarks.md

Mean ± sample standard deviation over the seeds present (the seed count is shown); percentages.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path

from bench.quality.results import DIAGNOSTICS, LR_SEARCH, RESULTS, read_rows
from bench.quality.settings import DIAGNOSTIC_METHODS, METHODS, settings_for

ALL_METHODS = (*METHODS, *DIAGNOSTIC_METHODS)


def mean_std(values: list[float]) -> str:
    mean = 100 * statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def lr_column(task: str, method: str) -> str:
    tried = sorted(
        (r for r in read_rows(LR_SEARCH) if r["task"] == task and r["method"] == method),
        key=lambda r: r["lr"],
    )
    return ", ".join(
        f"{r['lr']:g}: {100 * r['valid']:.1f}" + (" (div.)" if r["diverged"] else "") for r in tried
    )


def table(task: str, path: Path = RESULTS) -> str:
    metrics = settings_for(task, quick=False).metrics
    by_method: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for row in read_rows(path):
        if row["task"] == task:
            by_method[row["method"]][row["metric"]].append(row["value"])
            by_method[row["method"]]["_meta"].append(row)
    if not by_method:
        return "(no rows yet)"
    head = [
        "method",
        "seeds",
        *metrics,
        f"{metrics[0]} by seed",
        "lr",
        "params",
        "wall s",
        "init s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in ALL_METHODS:
        if method not in by_method:
            continue
        values, meta = by_method[method], by_method[method]["_meta"]
        seeds = sorted({r["seed"] for r in meta})
        cells = [method, str(len(seeds)), *(mean_std(values[m]) for m in metrics)]
        first = sorted((r["seed"], r["value"]) for r in meta if r["metric"] == metrics[0])
        cells.append(", ".join(f"{100 * v:.1f}" for _, v in first))
        cells.append(f"{meta[0]['lr']:g}")
        cells.append(f"{meta[0]['trainable_params']:,}")
        cells.append(f"{statistics.fmean(r['wall_s'] for r in meta):.0f}")
        cells.append(f"{statistics.fmean(r['probe_s'] for r in meta):.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def search_table(task: str, methods: tuple[str, ...] = METHODS) -> str:
    tried = {r["method"] for r in read_rows(LR_SEARCH) if r["task"] == task}
    if not tried & set(methods):
        return ""
    metric = settings_for(task, quick=False).selection_metric
    lines = [f"| method | validation {metric} by lr (seed 0) |", "|---|---|"]
    ordered = [m for m in methods if m in tried]
    lines += [f"| {m} | {lr_column(task, m)} |" for m in ordered]
    return "\n".join(lines)


DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
START, END = "<!-- table: output of `python -m bench.quality.table` -->", "<!-- /table -->"


def markdown() -> str:
    parts = [
        f"### {task}\n\n{table(task)}\n\n{search_table(task)}\n" for task in ("r8", "arithmetic")
    ]
    parts.append("### Diagnostics (controls outside the issue's method list; diagnostics.json)\n")
    parts.append(
        f"#### r8\n\n{table('r8', DIAGNOSTICS)}\n\n{search_table('r8', DIAGNOSTIC_METHODS)}\n"
    )
    parts.append(f"#### r8_pilot\n\n{search_table('r8_pilot')}\n")
    return "\n".join(parts)


def write_into_doc(text: str, doc: Path = DOC) -> None:
    page = doc.read_text()
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{START}\n{text}{END}{tail}")


def main() -> None:
    text = markdown()
    print(text)
    if "--write" in sys.argv[1:]:
        write_into_doc(text)


if __name__ == "__main__":
    main()
