"""The allocation report (``gora_allocation.json``) as a terminal table: rank by layer and module.

Torch-free and rich imported on use, so the CLI (which must start fast and never load torch), the
service tour and the library demo all print the same table from the same report dict.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table

_LAYER_INDEX = re.compile(r"\.(\d+)\.")


def _shade(rank: int | None, top: int) -> str:
    if rank is None:
        return "-"
    style = "bold green" if rank >= 0.75 * top else "green" if rank >= 0.4 * top else "dim"
    return f"[{style}]{rank}[/]"


def _caption(report: dict[str, Any], ranks: list[int]) -> str:
    totals, config = report.get("totals") or {}, report.get("config") or {}
    caption = f"ranks {min(ranks)}..{max(ranks)}"
    if "allocated" in totals and "budget" in totals:
        caption = (
            f"{totals['allocated']:,} of {totals['budget']:,} parameters "
            f"(LoRA r={config.get('r_ref', '?')} budget); {caption}"
        )
    return caption


def allocation_table(report: dict[str, Any]) -> Table:
    """Rank by layer (rows) and module kind (columns); layers without an index go in a "-" row."""
    from rich.table import Table

    grid: dict[int, dict[str, int]] = defaultdict(dict)
    kinds: list[str] = []
    for layer in report["layers"]:
        match = _LAYER_INDEX.search(layer["name"])
        kind = layer["name"].rsplit(".", 1)[-1]
        if kind not in kinds:
            kinds.append(kind)
        grid[int(match.group(1)) if match else -1][kind] = layer["rank"]
    ranks = [layer["rank"] for layer in report["layers"]] or [0]
    table = Table(
        title=f"{report.get('adapter_type', 'gora')} rank allocation (rank per layer and module)",
        caption=_caption(report, ranks),
    )
    table.add_column("layer", justify="right")
    for kind in kinds:
        table.add_column(kind, justify="right")
    for index in sorted(grid):
        cells = [_shade(grid[index].get(kind), max(ranks)) for kind in kinds]
        table.add_row(str(index) if index >= 0 else "-", *cells)
    return table
