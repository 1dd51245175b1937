"""Figures for docs/benchmarks.md from the run records in bench/quality/runs/, drawn with matplotlib.

    pip install '.[bench]'                 # matplotlib: the ``bench`` extra
    python -m bench.quality.figures        # writes bench/quality/figures/*.png

- ``loss_<task>.png``: training loss per optimizer step (moving average of 10) of every method's
  seed-0 test run, at the learning rate its validation search chose;
- ``loss_<task>_same_lr.png``: the same, every method at GoRA's chosen rate (from the lr search runs),
  which separates "GoRA trains differently" from "GoRA was given another rate";
- ``allocation_<task>.png``: GoRA's rank per layer (seed 0), a heatmap of layer index × module kind;
  layers without an index (BERT's pooler) get a column of their own, labelled "other";
- ``lr_sweep_<task>.png``: validation score against the learning rate, every adapter method (seed 0;
  full fine-tuning is left out, its rates are not an adapter's); the right panel moves the methods
  that scale by α/√r (GoRA and its ablations, rsLoRA) to the rate at which LoRA's α/r scaling would
  move ΔW as fast: ``lr × √r_ref``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, and no GUI toolkit to import

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullLocator

from bench.quality.results import HERE, LR_SEARCH, RUNS, read_rows
from bench.quality.settings import settings_for
from service.api.jobs.heatmap import split_layer_name

FIGURES = HERE / "figures"
# One colour per method in every figure (matplotlib's tab10, plus black for full fine-tuning).
COLOURS = {
    "lora": "#1f77b4",
    "gora": "#d62728",
    "gora_gamma0": "#ff7f0e",
    "gora_fixed_rank": "#9467bd",
    "pissa": "#2ca02c",
    "lora_ga": "#8c564b",
    "eva": "#7f7f7f",
    "adalora": "#bcbd22",
    "full": "#000000",
    "lora_rslora": "#17becf",
}
# Methods whose adapters are scaled by α/√r instead of LoRA's α/r (spec §3; the rsLoRA control).
SQRT_SCALED = ("gora", "gora_gamma0", "gora_fixed_rank", "lora_rslora")
DPI = 120
OTHER = "other"  # the heatmap column of layers without an index


def test_runs(task: str, seed: int = 0) -> dict[str, dict[str, Any]]:
    """method -> its run record with test scores for ``seed``."""
    runs = {}
    for path in sorted(RUNS.glob(f"{task}-*-seed{seed}-*.json")):
        record = json.loads(path.read_text())
        if "test" in record:
            runs[record["method"]] = record
    return runs


def search_runs(task: str, lr: float) -> dict[str, dict[str, Any]]:
    """method -> its seed-0 validation run at ``lr``."""
    runs = {}
    for path in sorted(RUNS.glob(f"{task}-*-seed0-lr{lr:g}.json")):
        record = json.loads(path.read_text())
        runs[record["method"]] = record
    return runs


def moving_average(values: list[float], window: int = 10) -> list[float]:
    """Trailing mean over ``window`` values; the first few average what there is so far."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def lr_text(lr: float) -> str:
    """0.0002 -> ``2e-4``, 0.000283 -> ``2.83e-4``: shorter than ``%g`` and comparable at a glance."""
    mantissa, exponent = f"{lr:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _colour(method: str) -> str:
    return COLOURS.get(method, "#000000")


def _in_order(methods: dict[str, Any]) -> list[str]:
    """COLOURS' order, so that every legend lists the methods alike."""
    known = list(COLOURS)
    return sorted(methods, key=lambda m: (known.index(m) if m in known else len(known), m))


def _model(task: str) -> str:
    return settings_for(task, quick=False).model


def loss_figure(task: str, runs: dict[str, dict[str, Any]], note: str) -> Figure:
    """Training loss by optimizer step of each run in ``runs``; ``note`` names the rate setting."""
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=DPI, layout="constrained")
    for method in _in_order(runs):
        record = runs[method]
        if not record["losses"]:
            continue
        curve = moving_average(record["losses"])
        label = f"{method} (lr {lr_text(record['lr'])})"
        ax.plot(range(1, len(curve) + 1), curve, color=_colour(method), lw=1.6, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (moving average of 10 steps)")
    ax.set_title(f"{task} ({_model(task)}): training loss, seed 0, {note}")
    ax.set_xlim(left=1)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    # Outside the axes: the curves start together at the top left and fan out at the bottom right.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9, title="method")
    return fig


def _sweep_points(task: str) -> tuple[dict[str, list[tuple[float, float]]], str]:
    """method -> [(lr, validation score in %)] in lr order, and the selection metric's name."""
    rows = [
        r
        for r in read_rows(LR_SEARCH)
        if r["task"] == task and r["method"] != "full" and r.get("seed", 0) == 0
    ]
    by_method: dict[str, list[tuple[float, float]]] = {}
    for row in sorted(rows, key=lambda r: r["lr"]):
        by_method.setdefault(row["method"], []).append((row["lr"], 100 * row["valid"]))
    metric = rows[0].get("metric", "score") if rows else "score"
    return by_method, metric


def lr_sweep_figure(task: str) -> Figure | None:
    """Validation score by learning rate; right panel: α/√r methods at their LoRA-equivalent rate."""
    by_method, metric = _sweep_points(task)
    if not by_method:
        return None
    r_ref = settings_for(task, quick=False).r_ref
    shifted = {
        m: [(lr * math.sqrt(r_ref) if m in SQRT_SCALED else lr, v) for lr, v in points]
        for m, points in by_method.items()
    }
    fig, (raw, moved) = plt.subplots(
        1, 2, figsize=(12, 4.5), dpi=DPI, sharey=True, layout="constrained"
    )
    _sweep_panel(raw, by_method, "learning rate (log scale)")
    raw.set_title("as run")
    raw.set_ylabel(f"validation score (%): {metric.replace('_', ' ')}")
    _sweep_panel(
        moved, shifted, f"LoRA-equivalent learning rate: α/√r methods × √{r_ref} (log scale)"
    )
    moved.set_title(f"α/√r methods moved to lr × √{r_ref} (LoRA-equivalent step size)")
    fig.suptitle(f"{task} ({_model(task)}): validation score by learning rate, seed 0")
    handles, labels = raw.get_legend_handles_labels()
    # One legend for both panels, under them: beside them it would squeeze the panels and their titles.
    fig.legend(handles, labels, loc="outside lower center", ncols=5, fontsize=9)
    return fig


def _sweep_panel(ax: Axes, curves: dict[str, list[tuple[float, float]]], xlabel: str) -> None:
    for method in _in_order(curves):
        rates, scores = zip(*curves[method], strict=True)
        label = f"{method} (α/√r)" if method in SQRT_SCALED else method
        ax.plot(rates, scores, marker="o", ms=5, lw=1.6, color=_colour(method), label=label)
    ax.set_xscale("log")
    rates = [lr for points in curves.values() for lr, _ in points]
    ax.set_xticks(_lr_ticks(min(rates), max(rates)))
    # The log axis's own minor ticks would label 3e-4, 4e-4 ...: rates never tried.
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda lr, _: lr_text(lr)))
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)


def _lr_ticks(low: float, high: float) -> list[float]:
    """The 1-2-5 rates between ``low`` and ``high``: the values the lr grids are made of."""
    ticks = []
    for exponent in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1):
        for mantissa in (1, 2, 5):
            lr = mantissa * 10.0**exponent
            if low * (1 - 1e-9) <= lr <= high * (1 + 1e-9):
                ticks.append(lr)
    return ticks


def _rank_grid(layers: list[dict[str, Any]]) -> tuple[list[str], list[str], np.ma.MaskedArray]:
    """Column labels (layer index, then ``other``), module kinds, and ranks (masked where absent)."""
    cells: dict[tuple[Any, str], int] = {}
    for layer in layers:
        index, kind = split_layer_name(layer["name"])
        cells[(OTHER if index is None else index, kind)] = int(layer["rank"])
    columns: list[Any] = sorted({c for c, _ in cells if c != OTHER})
    columns += [OTHER] if any(c == OTHER for c, _ in cells) else []
    kinds = list(dict.fromkeys(kind for _, kind in cells))
    ranks = np.ma.masked_all((len(kinds), len(columns)))
    for (column, kind), rank in cells.items():
        ranks[kinds.index(kind), columns.index(column)] = rank
    return [str(c) for c in columns], kinds, ranks


def allocation_figure(task: str, record: dict[str, Any]) -> Figure:
    """GoRA's rank per layer of one run ``record``: layer index (x) × module kind (y)."""
    columns, kinds, ranks = _rank_grid(record["allocation"]["layers"])
    width = min(max(8.0, 3.5 + 0.3 * len(columns)), 12.0)
    fig, ax = plt.subplots(figsize=(width, 4.5), dpi=DPI, layout="constrained")
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#ebebeb")  # light grey: no such layer
    image = ax.imshow(ranks, cmap=cmap, aspect="auto", interpolation="nearest")
    # The rank in each cell: the colour scale alone cannot tell 14 from 16.
    for (row, col), rank in np.ndenumerate(ranks.filled(-1)):
        if rank >= 0:
            ink = "black" if image.norm(rank) > 0.6 else "white"
            ax.text(col, row, f"{rank:.0f}", ha="center", va="center", fontsize=7, color=ink)
    ax.set_xticks(range(len(columns)), columns, fontsize=8)
    ax.set_yticks(range(len(kinds)), kinds, fontsize=9)
    ax.set_xlabel("layer")
    ax.set_ylabel("module")
    config = record["allocation"]["config"]
    ax.set_title(
        f"{task} ({_model(task)}): GoRA's rank per layer, seed 0, lr {lr_text(record['lr'])} "
        f"(r_ref {config['r_ref']}, bounds {config['r_min']}..{config['r_max']})"
    )
    fig.colorbar(image, ax=ax, label="rank", pad=0.01)
    return fig


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)  # pyplot keeps every figure alive until closed


def main() -> None:
    FIGURES.mkdir(exist_ok=True)
    for task in ("r8", "arithmetic"):
        runs = test_runs(task)
        if not runs:
            continue
        _save(loss_figure(task, runs, "each at its chosen lr"), FIGURES / f"loss_{task}.png")
        if "gora" in runs:
            lr = runs["gora"]["lr"]
            same = loss_figure(task, search_runs(task, lr), f"all at GoRA's lr {lr_text(lr)}")
            _save(same, FIGURES / f"loss_{task}_same_lr.png")
        if runs.get("gora", {}).get("allocation"):
            _save(allocation_figure(task, runs["gora"]), FIGURES / f"allocation_{task}.png")
        sweep = lr_sweep_figure(task)
        if sweep is not None:
            _save(sweep, FIGURES / f"lr_sweep_{task}.png")
        print("wrote", ", ".join(sorted(p.name for p in FIGURES.glob(f"*_{task}*.png"))))


if __name__ == "__main__":
    main()
