"""What the service adds around a job: submit-to-running latency and wall time vs a direct gora run.

    .venv/bin/python bench/worker/bench_overhead.py [--steps 30] [--latency-runs 5]

Starts a real ``gora worker`` (Redis broker db 14, a private queue, a SQLite file in a temp dir) and
the API in-process. (1) Latency: jobs submitted to the idle worker, time from the create call's
return to the row being ``running`` (the claim, before any model loads); each is then cancelled.
(2) Overhead: one SmolLM2 GoRA job through the service, submit to ``succeeded``, against the same
run (same data, spec, checkpoints, export) done by ``gora`` directly in a fresh process, timed from
process start to exit. Both use one torch thread.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "examples" / "instructions.jsonl"
REDIS_URL = "redis://127.0.0.1:6379/14"
POOL = f"bench{secrets.token_hex(3)}"
ADAPTER = {"type": "gora", "r_ref": 8, "target_modules": ["q_proj", "v_proj"], "probe_steps": 4}


def hyperparameters(steps: int) -> dict:
    return {
        "n_epochs": 10,
        "batch_size": 4,
        "max_steps": steps,
        "max_seq_length": 64,
        "log_every_steps": 5,
        "checkpoint_every_steps": 10,
    }


def direct_run(steps: int, out: Path) -> None:
    """The job as a notebook would run it: the same gora calls, no service."""
    from gora import GoraConfig, get_gora_model, load_base_model, save_adapter
    from gora.data.encoding import build_dataset
    from gora.data.formats import read_jsonl_lines
    from gora.data.loading import collator_for, make_batches
    from gora.train import TrainingConfig, train

    hp = hyperparameters(steps)
    fmt, rows, lines = read_jsonl_lines(str(DATA))
    base, tokenizer = load_base_model("smollm2-135m", "causal_lm")
    dataset, _ = build_dataset(rows, fmt, tokenizer, "causal_lm", 64, line_numbers=lines)
    collator = collator_for(tokenizer)
    cfg = GoraConfig.from_dict({**ADAPTER, "seed": 0})
    model = get_gora_model(base, cfg, make_batches(dataset, collator, hp["batch_size"], seed=0))
    config = TrainingConfig(
        learning_rate=2e-4,
        n_epochs=hp["n_epochs"],
        max_steps=steps,
        batch_size=hp["batch_size"],
        log_every=hp["log_every_steps"],
        checkpoint_every=hp["checkpoint_every_steps"],
        output_dir=out / "checkpoints",
    ).resolve(adapter_type="gora", task="causal_lm", n_examples=len(dataset))
    train(model, dataset, collator, config)
    save_adapter(model, out / "peft")
    save_adapter(model, out / "uniform", format="uniform")


def environment(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GORA_")}
    env.update(
        GORA_DATA_DIR=str(data_dir),
        GORA_BROKER_URL=REDIS_URL,
        GORA_POOLS=f"cpu,{POOL}",
        GORA_DEFAULT_POOL=POOL,
        OMP_NUM_THREADS="1",
        GORA_WORKER_HEARTBEAT_S="5",
    )
    return env


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    gora = str(ROOT / ".venv" / "bin" / "gora")
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [gora, "worker", "--pool", POOL], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    while b" ready." not in log.read_bytes():
        assert process.poll() is None, log.read_text()
        time.sleep(0.1)
    return process


def status(client, team, job_id: str) -> str:
    return client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=team.headers).json()["status"]


def wait_status(client, team, job_id: str, wanted: set[str], poll_s: float) -> float:
    while (current := status(client, team, job_id)) not in wanted:
        assert current not in ("failed", "cancelled") or current in wanted, current
        time.sleep(poll_s)
    return time.perf_counter()


def measure_service(data_dir: Path, steps: int, latency_runs: int) -> dict:
    os.environ.update(environment(data_dir))
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.core.migrate import upgrade
    from service.core.settings import Settings
    from tests.helpers.api import ADMIN, ADMIN_TOKEN, new_team, upload

    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(admin_token=ADMIN_TOKEN)
    upgrade(settings.database_url)
    worker = start_worker(environment(data_dir), data_dir / "worker.log")
    try:
        with TestClient(create_app(settings)) as client:
            team = new_team(client, ADMIN)
            file_id = upload(client, team, DATA.read_bytes())["id"]
            body = {"model": "smollm2-135m", "training_file": file_id, "adapter": ADAPTER,
                    "seed": 0, "hyperparameters": hyperparameters(steps)}  # fmt: skip
            latencies = []
            for _ in range(latency_runs):
                job = client.post("/v1/fine_tuning/jobs", json=body, headers=team.headers).json()
                sent = time.perf_counter()
                latencies.append(wait_status(client, team, job["id"], {"running"}, 0.01) - sent)
                client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=team.headers)
                wait_status(client, team, job["id"], {"cancelled"}, 0.2)
            started = time.perf_counter()
            job = client.post("/v1/fine_tuning/jobs", json=body, headers=team.headers).json()
            wall = wait_status(client, team, job["id"], {"succeeded"}, 0.5) - started
    finally:
        worker.terminate()
        worker.wait(30)
        forget_queue()
    return {"latencies_s": latencies, "service_wall_s": wall}


def forget_queue() -> None:
    import redis

    broker = redis.Redis.from_url(REDIS_URL)
    for key in broker.scan_iter(f"*{POOL}*"):
        broker.delete(key)


def measure_direct(steps: int, out: Path) -> float:
    started = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--direct", str(out), "--steps", str(steps)]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--latency-runs", type=int, default=5)
    parser.add_argument("--direct", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.direct is not None:
        return direct_run(args.steps, args.direct)
    from gora.models import converted_gguf_dir

    converted_gguf_dir("smollm2-135m")  # the one-time GGUF conversion is timed in neither run
    with tempfile.TemporaryDirectory() as tmp:
        direct = measure_direct(args.steps, Path(tmp) / "direct")
        service = measure_service(Path(tmp) / "service", args.steps, args.latency_runs)
    latencies = sorted(service["latencies_s"])
    report = {
        "steps": args.steps,
        "submit_to_running_s": {"median": latencies[len(latencies) // 2], "max": latencies[-1]},
        "direct_wall_s": round(direct, 2),
        "service_wall_s": round(service["service_wall_s"], 2),
        "overhead_pct": round(100 * (service["service_wall_s"] - direct) / direct, 2),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
