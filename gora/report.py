"""The allocation report kept beside every adapter (``gora_allocation.json``, gora-spec.md §5).

Its shape is declared here, once: these dataclasses are what ``save_adapter`` writes, what the
service stores (the JSON of ``to_dict``) and what its HTTP schema is derived from
(``service.api.jobs.schemas.AllocationOut``). Torch-free.
"""

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
class AllocationTotals:
    budget: int  # what LoRA at r_ref costs on the same layers
    allocated: int
    # The same number as the budget by definition; kept under its own name for readers who
    # compare against a LoRA run.
    lora_params_at_r_ref: int
    layers: int
    rank_min: int
    rank_max: int


@dataclass
class AllocationReport:
    adapter_type: str
    layers: list[LayerAllocation]
    totals: AllocationTotals
    config: dict[str, Any]
    probe: dict[str, Any] = field(default_factory=dict)

    @property
    def ranks(self) -> dict[str, int]:
        return {x.name: x.rank for x in self.layers}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AllocationReport:
        return cls(
            adapter_type=values["adapter_type"],
            layers=[LayerAllocation(**layer) for layer in values["layers"]],
            totals=AllocationTotals(**values["totals"]),
            config=values["config"],
            probe=values.get("probe") or {},
        )


def _totals(layers: list[LayerAllocation], r_ref: int) -> AllocationTotals:
    budget = parameter_budget({x.name: (x.d_out, x.d_in) for x in layers}, r_ref)
    return AllocationTotals(
        budget=budget,
        allocated=sum(x.params for x in layers),
        lora_params_at_r_ref=budget,
        layers=len(layers),
        rank_min=min(x.rank for x in layers),
        rank_max=max(x.rank for x in layers),
    )


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
    totals = _totals(layers, config["r_ref"])
    return AllocationReport(adapter_type, layers, totals, config, probe or {})
