"""The allocation as a picture: a heatmap of rank by layer index (columns) × module kind (rows).

Drawn with Pillow, on purpose: the API image has no plotting library, and matplotlib would add tens
of megabytes and a second of import to it for this one picture. The benchmarks' figures, where
axes and legends matter, use matplotlib (bench/quality/figures.py, the ``bench`` extra).
"""

from __future__ import annotations

import io
import re
from typing import Any

from PIL import Image, ImageDraw, ImageFont

# viridis at five stops: dark purple (low rank) to yellow (high rank).
_STOPS = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
_EMPTY = (235, 235, 235)
_INDEX = re.compile(r"\.(\d+)\.")
CELL_W, CELL_H, MARGIN = 34, 20, 12
LEGEND_MIN_H = 80


def split_layer_name(name: str) -> tuple[int | None, str]:
    """``model.layers.3.self_attn.q_proj`` -> (3, ``self_attn.q_proj``); no index -> (None, name)."""
    found = _INDEX.search(f".{name}.")
    if found is None:
        return None, name
    return int(found.group(1)), f".{name}."[found.end() :].strip(".") or name


def _short_kinds(kinds: list[str]) -> dict[str, str]:
    """Each module kind's last name component when those are unique (q_proj), else the full path."""
    last = {kind: kind.rsplit(".", 1)[-1] for kind in kinds}
    return last if len(set(last.values())) == len(kinds) else {k: k for k in kinds}


def _colour(rank: int, low: int, high: int) -> tuple[int, int, int]:
    position = 0.0 if high == low else (rank - low) / (high - low) * (len(_STOPS) - 1)
    index = min(int(position), len(_STOPS) - 2)
    frac = position - index
    a, b = _STOPS[index], _STOPS[index + 1]
    return (
        round(a[0] + (b[0] - a[0]) * frac),
        round(a[1] + (b[1] - a[1]) * frac),
        round(a[2] + (b[2] - a[2]) * frac),
    )


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _grid(layers: list[dict[str, Any]]) -> tuple[list[Any], list[str], dict[tuple[Any, str], int]]:
    cells: dict[tuple[Any, str], int] = {}
    for layer in layers:
        index, kind = split_layer_name(layer["name"])
        cells[(index if index is not None else "-", kind)] = int(layer["rank"])
    columns = sorted({c for c, _ in cells if c != "-"}) + (
        ["-"] if any(c == "-" for c, _ in cells) else []
    )
    kinds = list(dict.fromkeys(kind for _, kind in cells))
    return columns, kinds, cells


def render_heatmap(report: dict[str, Any], title: str) -> bytes:
    """A PNG of the report's ranks, with the rank written in each cell and a colour legend."""
    columns, kinds, cells = _grid(report["layers"])
    labels = _short_kinds(kinds)
    ranks = list(cells.values()) or [0]
    low, high = min(ranks), max(ranks)
    font, small = _font(12), _font(10)
    label_w = max(len(labels[k]) for k in kinds) * 7 + MARGIN if kinds else 60
    width = label_w + len(columns) * CELL_W + 110
    legend_h = max(LEGEND_MIN_H, len(kinds) * CELL_H)
    height = 32 + max(len(kinds) * CELL_H + 40, legend_h + 16)
    image = Image.new("RGB", (max(width, 320), height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, 8), title, fill="black", font=font)
    top = 32
    for row, kind in enumerate(kinds):
        y = top + row * CELL_H
        draw.text((MARGIN, y + 4), labels[kind], fill="black", font=small)
        for col, index in enumerate(columns):
            x = label_w + col * CELL_W
            rank = cells.get((index, kind))
            fill = _EMPTY if rank is None else _colour(rank, low, high)
            draw.rectangle([x, y, x + CELL_W - 1, y + CELL_H - 1], fill=fill, outline="white")
            if rank is not None:
                ink = "black" if sum(fill) > 400 else "white"
                draw.text((x + 4, y + 4), str(rank), fill=ink, font=small)
    bottom = top + len(kinds) * CELL_H
    for col, index in enumerate(columns):
        draw.text((label_w + col * CELL_W + 4, bottom + 4), str(index), fill="black", font=small)
    draw.text((label_w, bottom + 20), "layer index", fill="black", font=small)
    _legend(draw, (label_w + len(columns) * CELL_W + 20, top, legend_h), (low, high), small)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _legend(
    draw: ImageDraw.ImageDraw, box: tuple[int, int, int], ranks: tuple[int, int], font: Any
) -> None:
    """A vertical colour bar (x, top, height) from the highest rank (top) to the lowest."""
    x, top, height = box
    low, high = ranks
    draw.text((x, top - 16), "rank", fill="black", font=font)
    for offset in range(height):
        value = high - (high - low) * offset / max(height - 1, 1)
        draw.line([x, top + offset, x + 14, top + offset], fill=_colour(round(value), low, high))
    draw.text((x + 20, top - 2), str(high), fill="black", font=font)
    draw.text((x + 20, top + height - 10), str(low), fill="black", font=font)
