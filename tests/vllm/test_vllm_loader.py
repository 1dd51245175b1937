"""Our adapters in vLLM's own loader: ``PEFTHelper`` (vLLM 0.33, from ``make test-vllm``'s lane)
reads a GoRA adapter and finds, for every module, the rank of our allocation report and GoRA's
scaling α/√r; the uniform export reads as one rank R with scaling 1 everywhere."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import LlamaForSequenceClassification

from gora import GoraConfig, get_gora_model, save_adapter
from tests.helpers.models import make_batches, make_tiny_llama, tiny_llama_config

pytestmark = pytest.mark.vllm
LANE = Path(os.environ.get("VLLM_LANE", Path(__file__).parents[2] / ".vllm-lane"))
READER = Path(__file__).with_name("read_adapter.py")


def vllm_reads(adapter_dir: Path, modules: list[str]) -> dict:
    assert (LANE / "vllm" / "lora" / "peft_helper.py").exists(), (
        f"no vLLM lane at {LANE}: run make test-vllm (scripts/vllm-lane.sh builds it)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(LANE), os.getcwd()])}
    done = subprocess.run(
        [sys.executable, str(READER), str(adapter_dir), *modules],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def classifier():
    config = tiny_llama_config(num_labels=3, pad_token_id=0)
    batches = [{**b, "labels": b["input_ids"][:, 0] % 3} for b in make_batches()]
    return LlamaForSequenceClassification(config), batches


@pytest.mark.parametrize("task", ["causal_lm", "sequence_classification"])
def test_vllm_reads_every_modules_rank_and_scaling(task: str, tmp_path: Path):
    base, batches = (make_tiny_llama(), make_batches()) if task == "causal_lm" else classifier()
    cfg = GoraConfig(r_ref=4, alpha=16, probe_steps=3)
    model = get_gora_model(base, cfg, batches)
    report = model.gora_report
    assert len(set(report.ranks.values())) > 1, "the test needs heterogeneous ranks"
    names = list(report.ranks)

    read = vllm_reads(save_adapter(model, tmp_path / "peft"), names)
    assert read["use_rslora"] is True
    for layer in report.layers:
        rank, scaling = read["ranks"][layer.name]
        assert rank == layer.rank, layer.name
        assert scaling == pytest.approx(cfg.alpha / math.sqrt(layer.rank), rel=1e-12), layer.name

    uniform = vllm_reads(save_adapter(model, tmp_path / "uniform", format="uniform"), names)
    widest = max(report.ranks.values())
    assert {tuple(v) for v in uniform["ranks"].values()} == {(widest, 1.0)}
