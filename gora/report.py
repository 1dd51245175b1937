"""The allocation report kept beside every adapter (``gora_allocation.json``, gora-spec.md §5)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from gora.allocation import Shape, layer_cost, parameter_budget

REPORT_FILENAME = "gora_allocation.json"


@dataclass
class LayerAllocation:
    name: str
    d_in: int
    d_out: int
    importance: float | None  # None for plain LoRA, which does not probe
    share: float | None
    rank: int
    params: int


@dataclass
class AllocationReport:
    adapter_type: str
    layers: list[LayerAllocation]
    config: dict[str, Any]
    probe: dict[str, Any] = field(default_factory=dict)

    @property
    def budget(self) -> int:
        return parameter_budget(
            {x.name: (x.d_out, x.d_in) for x in self.layers}, self.config["r_ref"]
        )

    @property
    def allocated(self) -> int:
        return sum(x.params for x in self.layers)

    @property
    def ranks(self) -> dict[str, int]:
        return {x.name: x.rank for x in self.layers}

    def to_dict(self) -> dict[str, Any]:
        return {
            "adapter_type": self.adapter_type,
            "layers": [asdict(x) for x in self.layers],
            "totals": {
                "budget": self.budget,
                "allocated": self.allocated,
                # The same number as the budget by definition; kept under its own name for readers who
                # compare against a LoRA run.
                "lora_params_at_r_ref": self.budget,
                "layers": len(self.layers),
                "rank_min": min(x.rank for x in self.layers),
                "rank_max": max(x.rank for x in self.layers),
            },
            "config": self.config,
            "probe": self.probe,
        }


def build_report(
    adapter_type: str,
    shapes: dict[str, Shape],
    ranks: dict[str, int],
    config: dict[str, Any],
    importances: dict[str, float] | None = None,
    probe: dict[str, Any] | None = None,
) -> AllocationReport:
    total = sum(importances.values()) if importances else 0.0
    layers = []
    for name, (d_out, d_in) in shapes.items():
        importance = importances[name] if importances else None
        share = (importance / total if total else 1.0 / len(shapes)) if importances else None
        layers.append(
            LayerAllocation(
                name=name,
                d_in=d_in,
                d_out=d_out,
                importance=importance,
                share=share,
                rank=ranks[name],
                params=ranks[name] * layer_cost((d_out, d_in)),
            )
        )
    return AllocationReport(adapter_type, layers, config, probe or {})
