"""Figures for docs/benchmarks.md from the run records in bench/quality/runs/ (Pillow; no matplotlib here).

    python -m bench.quality.figures        # writes bench/quality/figures/*.png

- ``loss_<task>.png``: training loss per step (moving average of 10) of every method's seed-0 test
  run, at the learning rate its validation search chose;
- ``loss_<task>_same_lr.png``: the same, every method at GoRA's chosen rate (from the lr search runs),
  which separates "GoRA trains differently" from "GoRA was given another rate";
- ``allocation_<task>.png``: GoRA's rank per layer (seed 0), with the service's own heatmap renderer;
- ``lr_sweep_<task>.png``: validation score against the learning rate, every method (seed 0); the right
  panel moves the methods that scale by α/√r (GoRA and its ablations, rsLoRA) to the rate at which
  LoRA's α/r scaling would move ΔW as fast: ``lr × √r_ref``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from bench.quality.results import HERE, LR_SEARCH, RUNS, read_rows
from bench.quality.settings import settings_for
from service.api.jobs.heatmap import render_heatmap

FIGURES = HERE / "figures"
COLOURS = {
    "lora": (31, 119, 180),
    "gora": (214, 39, 40),
    "gora_gamma0": (255, 127, 14),
    "gora_fixed_rank": (148, 103, 189),
    "pissa": (44, 160, 44),
    "lora_ga": (140, 86, 75),
    "eva": (127, 127, 127),
    "adalora": (188, 189, 34),
    "full": (0, 0, 0),
    "lora_rslora": (23, 190, 207),
}
# Methods whose adapters are scaled by α/√r instead of LoRA's α/r (spec §3; the rsLoRA control).
SQRT_SCALED = ("gora", "gora_gamma0", "gora_fixed_rank", "lora_rslora")
WIDTH, HEIGHT, PAD = 720, 420, 56


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
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def loss_figure(task: str, runs: dict[str, dict[str, Any]], note: str) -> Image.Image:
    curves = {m: moving_average(r["losses"]) for m, r in runs.items() if r["losses"]}
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font = _font(12)
    steps = max(len(c) for c in curves.values())
    top = max(max(c) for c in curves.values())
    box = (PAD, 30, WIDTH - 170, HEIGHT - PAD)

    def point(step: int, loss: float) -> tuple[float, float]:
        x = box[0] + (box[2] - box[0]) * step / max(steps - 1, 1)
        return x, box[3] - (box[3] - box[1]) * loss / top

    draw.rectangle(box, outline="black")
    title = f"{task}: training loss (moving average of 10 steps), seed 0, {note}"
    draw.text((PAD, 8), title, fill="black", font=font)
    for frac in (0, 0.25, 0.5, 0.75, 1):
        y = box[3] - (box[3] - box[1]) * frac
        draw.text((8, y - 6), f"{top * frac:.2f}", fill="black", font=font)
    draw.text((box[0], box[3] + 8), "step 1", fill="black", font=font)
    draw.text((box[2] - 50, box[3] + 8), f"step {steps}", fill="black", font=font)
    for i, (method, curve) in enumerate(curves.items()):
        colour = COLOURS.get(method, (0, 0, 0))
        draw.line([point(s, v) for s, v in enumerate(curve)], fill=colour, width=2)
        label = f"{method} (lr {runs[method]['lr']:g})"
        draw.text((box[2] + 12, box[1] + 18 * i), label, fill=colour, font=font)
    return image


def lr_sweep_figure(task: str) -> Image.Image | None:
    """Validation score by learning rate; right panel: α/√r methods at their LoRA-equivalent rate."""
    rows = [r for r in read_rows(LR_SEARCH) if r["task"] == task and r["method"] != "full"]
    if not rows:
        return None
    r_ref = settings_for(task, quick=False).r_ref
    by_method: dict[str, list[tuple[float, float]]] = {}
    for row in sorted(rows, key=lambda r: r["lr"]):
        by_method.setdefault(row["method"], []).append((row["lr"], 100 * row["valid"]))
    shifted = {
        m: [(lr * math.sqrt(r_ref) if m in SQRT_SCALED else lr, v) for lr, v in points]
        for m, points in by_method.items()
    }
    image = Image.new("RGB", (2 * WIDTH, HEIGHT), "white")
    _sweep_panel(image, 0, by_method, f"{task}: validation score by learning rate (seed 0)")
    # Pillow's default font has no Greek letters or root sign.
    title = f"the same, alpha/sqrt(r) methods at lr x sqrt({r_ref}) (LoRA-equivalent step size)"
    _sweep_panel(image, WIDTH, shifted, title)
    return image


def _sweep_panel(
    image, left: int, curves: dict[str, list[tuple[float, float]]], title: str
) -> None:
    draw, font = ImageDraw.Draw(image), _font(12)
    box = (left + PAD, 30, left + WIDTH - 150, HEIGHT - PAD)
    rates = [lr for points in curves.values() for lr, _ in points]
    low, high = math.log10(min(rates)), math.log10(max(rates))

    def point(lr: float, score: float) -> tuple[float, float]:
        x = box[0] + (box[2] - box[0]) * (math.log10(lr) - low) / max(high - low, 1e-9)
        return x, box[3] - (box[3] - box[1]) * score / 100

    draw.rectangle(box, outline="black")
    draw.text((left + PAD, 8), title, fill="black", font=font)
    for score in (0, 25, 50, 75, 100):
        draw.text((left + 16, point(1, score)[1] - 6), f"{score}", fill="black", font=font)
    for exponent in range(math.floor(low), math.ceil(high) + 1):
        for mantissa in (1, 2, 5):
            lr = mantissa * 10.0**exponent
            if 10**low <= lr <= 10**high:
                x = point(lr, 0)[0]
                draw.text((x - 12, box[3] + 8), f"{lr:g}", fill="black", font=font)
    for i, (method, points) in enumerate(curves.items()):
        colour = COLOURS.get(method, (0, 0, 0))
        xy = [point(lr, score) for lr, score in points]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        for x, y in xy:
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
        draw.text((box[2] + 12, box[1] + 18 * i), method, fill=colour, font=font)


def main() -> None:
    FIGURES.mkdir(exist_ok=True)
    for task in ("r8", "arithmetic"):
        runs = test_runs(task)
        if not runs:
            continue
        loss_figure(task, runs, "each at its chosen lr").save(FIGURES / f"loss_{task}.png")
        if "gora" in runs:
            lr = runs["gora"]["lr"]
            same = loss_figure(task, search_runs(task, lr), f"all at lr {lr:g}")
            same.save(FIGURES / f"loss_{task}_same_lr.png")
        if runs.get("gora", {}).get("allocation"):
            title = f"GoRA ranks, {task} (r_ref 8, bounds 4..32, seed 0)"
            png = render_heatmap(runs["gora"]["allocation"], title)
            (FIGURES / f"allocation_{task}.png").write_bytes(png)
        sweep = lr_sweep_figure(task)
        if sweep is not None:
            sweep.save(FIGURES / f"lr_sweep_{task}.png")
        print("wrote", ", ".join(sorted(p.name for p in FIGURES.glob(f"*_{task}*.png"))))


if __name__ == "__main__":
    main()
