"""Multi-GPU jobs (``gpu.count`` > 1): torchrun ranks, rank 0 alone writes, the probe is the same.

On a CPU-only machine the worker is started with ``CUDA_VISIBLE_DEVICES=0,1`` (what ``--gpus 0,1``
sets): it counts two GPUs, torch finds no CUDA, and the two ranks run on the CPU over gloo.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter

import pytest

from service.core.storage import Storage, adapter_key, job_key
from tests.helpers.jobs import (
    SPARE_POOL,
    events,
    instruction_rows,
    submit,
    wait_for,
    wait_for_event,
)
from worker.processes import descendants
from worker.supervisor import child_command

# SmolLM2 (no dropout, so the probe is deterministic across processes; MiniLM's dropout draws
# different masks on rank 1 than the single process does for the same batch): 2 probe batches of
# 4 rows of at most 64 tokens, 2 steps, a checkpoint at each.
HYPERPARAMETERS = {
    "n_epochs": 1,
    "batch_size": 4,
    "max_steps": 2,
    "max_seq_length": 64,
    "log_every_steps": 1,
    "checkpoint_every_steps": 1,
}
ADAPTER = {"type": "gora", "r_ref": 4, "target_modules": ["q_proj", "v_proj"], "probe_steps": 2}


def test_child_command():
    assert child_command("j", "w") == [sys.executable, "-m", "worker.child", "j", "w"]
    assert child_command("j", "w", 2) == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        "-m",
        "worker.child",
        "j",
        "w",
    ]


def submit_smollm(stack, team, count: int, hyperparameters=HYPERPARAMETERS) -> dict:
    return submit(
        stack.client,
        team,
        instruction_rows(16),
        hyperparameters=hyperparameters,
        adapter=ADAPTER,
        seed=11,
        gpu={"pool": SPARE_POOL, "count": count},
    )


def allocation(stack, team, job_id: str) -> dict[str, int]:
    response = stack.client.get(f"/v1/fine_tuning/jobs/{job_id}/allocation", headers=team.headers)
    assert response.status_code == 200, response.text
    return {layer["name"]: layer["rank"] for layer in response.json()["layers"]}


@pytest.mark.slow
def test_two_rank_job_writes_once_and_probes_like_one_process(stack, team, start_worker):
    start_worker(CUDA_VISIBLE_DEVICES="0,1")
    too_many = submit_smollm(stack, team, 4)
    failed = wait_for(stack.client, team, too_many["id"], {"failed"}, timeout_s=60)
    assert failed["error"]["code"] == "user_bad_config", failed
    assert failed["error"]["param"] == "gpu.count"
    assert "4 GPUs" in failed["error"]["message"] and "have 2" in failed["error"]["message"]

    two = submit_smollm(stack, team, 2)
    done = wait_for(stack.client, team, two["id"], {"succeeded"}, timeout_s=300)
    log = events(stack.client, team, two["id"])
    messages = Counter(event["message"] for event in log)
    duplicated = {message: n for message, n in messages.items() if n > 1}
    assert not duplicated, log
    phases = [(e.get("data") or {}).get("phase") for e in log if (e.get("data") or {}).get("phase")]
    assert phases == ["loading", "probing", "training", "exporting"], log
    steps = [e["data"]["step"] for e in log if e.get("type") == "metrics"]
    assert steps == [1, 2], log
    assert sum("Rank allocation ready" in e["message"] for e in log) == 1
    checkpoints = stack.client.get(
        f"/v1/fine_tuning/jobs/{two['id']}/checkpoints", headers=team.headers
    ).json()["data"]
    assert sorted(c["step_number"] for c in checkpoints) == [1, 2], checkpoints
    storage = Storage(stack.settings.storage_url)
    with storage.open_read(job_key(two["id"], "metrics.jsonl")) as handle:
        assert len(handle.read().splitlines()) == 2  # one line per step, rank 0's
    assert storage.list_files(adapter_key(two["id"], "peft"))
    (result_file,) = done["result_files"]  # step_metrics.csv: one row per step, rank 0's
    csv = stack.client.get(f"/v1/files/{result_file}/content", headers=team.headers)
    assert [line.split(",")[0] for line in csv.text.splitlines()] == ["step", "1", "2"]

    child_log = stack.settings.data_dir / "work" / "logs" / f"{two['id']}.log"
    text = child_log.read_text(errors="replace")
    # Both ranks logged (each JSON line names its rank), and the Trainer ran DDP, not two lone runs.
    assert "rank 1 of 2 joined the gloo process group" in text and '"rank": 1' in text
    assert "parallel_mode != ParallelMode.DISTRIBUTED" not in text

    one = submit_smollm(stack, team, 1)
    single = wait_for(stack.client, team, one["id"], {"succeeded"}, timeout_s=300)
    # Two ranks of 4 rows per step cover all 16 rows in 2 steps; one process covers 8.
    assert done["trained_tokens"] > single["trained_tokens"]
    two_ranks = allocation(stack, team, two["id"])
    assert two_ranks == allocation(stack, team, one["id"])
    assert len(two_ranks) == 60  # SmolLM2-135M: q_proj and v_proj in 30 layers


def is_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie runs nothing
    except OSError:
        return False


def torchrun_processes(stack, team, job_id: str) -> tuple[int, list[int]]:
    """(rank 0's pid, [torchrun and its ranks]), once the job trains."""
    wait_for_event(stack.client, team, job_id, lambda e: e["type"] == "metrics", timeout_s=300)
    loading = next(
        e for e in events(stack.client, team, job_id) if (e.get("data") or {}).get("pid")
    )
    pid = loading["data"]["pid"]
    with open(f"/proc/{pid}/stat") as stat:
        torchrun = int(stat.read().rsplit(")", 1)[-1].split()[1])  # rank 0's parent
    ranks = descendants(torchrun)
    assert pid in ranks and len(ranks) == 2, ranks
    return pid, [torchrun, *ranks]


def cancel_and_wait_gone(stack, team, job_id: str, processes: list[int]) -> float:
    asked = time.monotonic()
    response = stack.client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel", headers=team.headers)
    assert response.status_code == 200, response.text
    wait_for(stack.client, team, job_id, {"cancelled"}, timeout_s=20)
    deadline = time.monotonic() + 5
    while any(is_alive(pid) for pid in processes):
        assert time.monotonic() < deadline, [pid for pid in processes if is_alive(pid)]
        time.sleep(0.1)
    return time.monotonic() - asked


@pytest.mark.slow
def test_two_rank_cancel_stops_every_rank(stack, team, start_worker):
    # A long grace: a step takes seconds here, and the ranks must stop by themselves.
    first = start_worker(CUDA_VISIBLE_DEVICES="0,1", GORA_WORKER_CANCEL_GRACE_S="60")
    long = {**HYPERPARAMETERS, "n_epochs": 50, "max_steps": 500, "checkpoint_every_steps": 100}
    # Rank 0 sees the cancel and all ranks stop together (the recipe's all-reduced stop flag).
    job = submit_smollm(stack, team, 2, hyperparameters=long)
    _, processes = torchrun_processes(stack, team, job["id"])
    assert cancel_and_wait_gone(stack, team, job["id"], processes) < 10
    log = events(stack.client, team, job["id"])
    assert any(e["message"].startswith("Job cancelled at step") for e in log), log
    first.stop()
    # A rank that no longer answers: the supervisor kills torchrun and its ranks after the grace
    # period (4 s).
    start_worker(CUDA_VISIBLE_DEVICES="0,1")
    job = submit_smollm(stack, team, 2, hyperparameters=long)
    pid, processes = torchrun_processes(stack, team, job["id"])
    os.kill(pid, signal.SIGSTOP)
    assert cancel_and_wait_gone(stack, team, job["id"], processes) < 15
