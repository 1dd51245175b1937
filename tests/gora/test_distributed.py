"""Two gloo processes over halves of each batch give the allocation and init of one process."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gora import GoraConfig, get_gora_model
from gora.export import lora_layers
from tests.helpers.models import make_batches, make_tiny_llama

CONFIG = dict(r_ref=4, probe_steps=3, gamma=5e-2, seed=3)


def adapter_state(model) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{part}": getattr(layer, part)["default"].weight.detach().clone()
        for name, layer in lora_layers(model).items()
        for part in ("lora_A", "lora_B")
    }


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        # Each rank takes its half of every global batch of 4 rows.
        local = [
            {k: v[rank * 2 : rank * 2 + 2] for k, v in batch.items()}
            for batch in make_batches(batch_size=4)
        ]
        model = get_gora_model(make_tiny_llama(), GoraConfig(**CONFIG), local)
        result = {"ranks": model.gora_report.ranks, "adapters": adapter_state(model)}
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_equal_one_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    single = get_gora_model(make_tiny_llama(), GoraConfig(**CONFIG), make_batches(batch_size=4))
    expected = adapter_state(single)
    assert len(set(single.gora_report.ranks.values())) > 1
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["ranks"] == single.gora_report.ranks
        assert got["adapters"].keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(got["adapters"][key], value, rtol=1e-4, atol=1e-8)
