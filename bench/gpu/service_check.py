"""Jobs through the real service and worker on a GPU: a bf16 job to ``succeeded``, a cancel that gives
the GPU's memory back, and a CUDA out-of-memory that fails the job as ``out_of_memory``.

The embedded deployment (SQLite, the filesystem broker: the device has no PostgreSQL or Redis), with
the API served by uvicorn and ``gora worker --pool gpu --gpus 0``, both as processes of their own, and a
random-initialised Llama-shaped model with a word-level tokenizer made from the examples, saved under
``GORA_MODELS_DIR`` (the device reaches no hub). Prints one JSON line of figures.

    python bench/gpu/service_check.py [--model random-llama-1b] [--steps 20]   # bench/gpu/check.sh runs it
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench.bench_library import RANDOM_MODELS  # noqa: E402

ADMIN = "gpu-check-admin"
EXAMPLES = ROOT / "examples" / "instructions.jsonl"


def text_rows() -> list[dict[str, str]]:
    rows = []
    for line in EXAMPLES.read_text().splitlines():
        messages = json.loads(line)["messages"]
        rows.append({"text": " ".join(m["content"] for m in messages)})
    return rows


def save_model(folder: Path, name: str) -> None:
    """A random Llama of ``name``'s shape and a word-level tokenizer of the examples' words."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    shape = RANDOM_MODELS[name]
    words = sorted({w for row in text_rows() for w in row["text"].split()})
    vocab = {
        "<unk>": 0,
        "<eos>": 1,
        **{w: i + 2 for i, w in enumerate(words[: shape["vocab_size"] - 2])},
    }
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", eos_token="<eos>")
    torch.manual_seed(0)
    config = LlamaConfig(**shape, eos_token_id=1, bos_token_id=1, pad_token_id=1)
    LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Service:
    """``gora db upgrade``, then the API and one GPU worker, in ``data_dir``."""

    def __init__(self, data_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "GORA_DATA_DIR": str(data_dir),
            "GORA_ADMIN_TOKEN": ADMIN,
            "GORA_POOLS": "gpu",
            "GORA_DEFAULT_POOL": "gpu",
            "GORA_MODELS_DIR": str(data_dir / "models"),
            "GORA_MAX_UPLOAD_BYTES": str(1 << 30),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        python = [sys.executable, "-m"]
        subprocess.run([*python, "cli.main", "db", "upgrade"], env=self.env, check=True, cwd=ROOT)
        logs = data_dir / "logs"
        logs.mkdir(exist_ok=True)
        commands = {
            "api": [*python, "uvicorn", "service.api.app:create_app", "--factory", "--port", str(self.port)],
            "worker": [*python, "cli.main", "worker", "--pool", "gpu", "--gpus", "0"],
        }  # fmt: skip
        self.processes = []
        for name, command in commands.items():
            with open(logs / f"{name}.log", "wb") as log:  # the child keeps its own descriptor
                self.processes.append(
                    subprocess.Popen(
                        command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
                    )
                )
        self.key = ""

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
             token: str | None = None, content_type: str = "application/json") -> Any:  # fmt: skip
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {token or self.key}")
        if data is not None:
            request.add_header("Content-Type", content_type)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def start(self) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(self.url + "/readyz", timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.5)
        team = self.call("POST", "/v1/teams", {"name": "gpu"}, token=ADMIN)
        self.key = self.call("POST", f"/v1/teams/{team['id']}/api_keys", {}, token=ADMIN)["key"]

    def upload(self, rows: list[dict[str, str]]) -> str:
        boundary = "gpu-check"
        content = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="t.jsonl"\r\n\r\n'
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        uploaded = self.call(
            "POST", "/v1/files", raw=body, content_type=f"multipart/form-data; boundary={boundary}"
        )
        assert uploaded["status"] == "processed", uploaded
        return uploaded["id"]

    def wait(self, job_id: str, statuses: set[str], timeout_s: float = 420) -> dict:
        deadline = time.monotonic() + timeout_s
        while (job := self.call("GET", f"/v1/fine_tuning/jobs/{job_id}"))["status"] not in statuses:
            assert time.monotonic() < deadline, job
            time.sleep(0.5)
        return job

    def events(self, job_id: str) -> list[dict]:
        page = self.call("GET", f"/v1/fine_tuning/jobs/{job_id}/events?limit=100")
        return list(reversed(page["data"]))

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def gpu_memory_used_mib() -> int:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(out.stdout.split()[0])


def job_body(model: str, file_id: str, steps: int, batch: int, seq: int) -> dict:
    return {
        "model": model,
        "training_file": file_id,
        "gpu": {"pool": "gpu", "count": 1},
        "hyperparameters": {
            "n_epochs": 50, "batch_size": batch, "max_steps": steps, "max_seq_length": seq,
            "log_every_steps": 1, "checkpoint_every_steps": max(steps // 2, 1),
        },
        "adapter": {"type": "gora", "r_ref": 8, "target_modules": "all-linear", "probe_steps": 8},
    }  # fmt: skip


def bf16_job(service: Service, model: str, file_id: str, steps: int) -> dict[str, Any]:
    started = time.monotonic()
    job_id = service.call("POST", "/v1/fine_tuning/jobs", job_body(model, file_id, steps, 8, 256))[
        "id"
    ]
    done = service.wait(job_id, {"succeeded", "failed", "cancelled"})
    assert done["status"] == "succeeded", (done, [e["message"] for e in service.events(job_id)])
    metrics = [
        e["data"]
        for e in service.events(job_id)
        if e["type"] == "metrics" and "loss" in (e["data"] or {})
    ]
    return {
        "job_s": round(time.monotonic() - started, 1),
        "steps": len(metrics),
        "tokens_per_s_median": sorted(m["tokens_per_s"] for m in metrics)[len(metrics) // 2],
        "first_loss": metrics[0]["loss"],
        "last_loss": metrics[-1]["loss"],
    }


def cancel_frees_memory(service: Service, model: str, file_id: str) -> dict[str, Any]:
    before = gpu_memory_used_mib()
    job_id = service.call(
        "POST", "/v1/fine_tuning/jobs", job_body(model, file_id, 100_000, 8, 256)
    )["id"]
    while not any(e["type"] == "metrics" for e in service.events(job_id)):
        time.sleep(0.5)
    training = gpu_memory_used_mib()
    asked = time.monotonic()
    service.call("POST", f"/v1/fine_tuning/jobs/{job_id}/cancel")
    assert service.wait(job_id, {"cancelled"}, timeout_s=60)["status"] == "cancelled"
    cancelled_s = time.monotonic() - asked
    time.sleep(3)  # the child process has exited; the driver takes its memory back
    return {"used_before_mib": before, "used_training_mib": training,
            "used_after_cancel_mib": gpu_memory_used_mib(), "cancel_s": round(cancelled_s, 1)}  # fmt: skip


def out_of_memory(service: Service, model: str) -> dict[str, Any]:
    """Rows of 100,000 words at micro-batches of 8: the logits alone outgrow any GPU."""
    words = " ".join(text_rows()[0]["text"].split() * 5000)[: 100_000 * 6]
    file_id = service.upload([{"text": words}] * 16)
    body = job_body(model, file_id, 4, 8, 131_072)
    job_id = service.call("POST", "/v1/fine_tuning/jobs", body)["id"]
    job = service.wait(job_id, {"succeeded", "failed", "cancelled"})
    return {"status": job["status"], "error": job["error"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="random-llama-1b", choices=sorted(RANDOM_MODELS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--skip-oom", action="store_true", help="on a CPU smoke run: no GPU to fill"
    )
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="gora-gpu-check-"))
    save_model(data_dir / "models" / args.model, args.model)
    service = Service(data_dir)
    results: dict[str, Any] = {"model": args.model}
    try:
        service.start()
        file_id = service.upload(text_rows())
        results["bf16_job"] = bf16_job(service, args.model, file_id, args.steps)
        if shutil.which("nvidia-smi"):
            results["cancel"] = cancel_frees_memory(service, args.model, file_id)
        if not args.skip_oom:
            results["out_of_memory"] = out_of_memory(service, args.model)
    finally:
        service.stop()
        results["worker_log_tail"] = (data_dir / "logs" / "worker.log").read_text(errors="replace")[
            -2000:
        ]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
