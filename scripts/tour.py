"""``make run``: a newcomer's tour of the GoRA service, start to finish, on this machine.

Starts ``gora up`` (the API and one CPU worker; SQLite and the filesystem broker) in the background
with its own data directory (``.gora-demo``) and admin token, waits for ``/readyz``, creates a team
and an API key (kept in the data directory and reused by the next run), uploads
``examples/instructions.jsonl`` and submits a GoRA job on ``smollm2-135m`` sized for a CPU, follows
its events with the CLI's progress bar, prints the per-layer rank allocation and saves its heatmap,
downloads the adapter, and answers one question with the base model and with the tuned adapter
(loaded by PEFT's own loader). The service keeps running afterwards; ``make stop`` (this script with
``--stop``) ends it.

    .venv/bin/python scripts/tour.py [--data-dir .gora-demo] [--port 8765] [--rows N] [--max-steps N]
    .venv/bin/python scripts/tour.py --stop

It talks to the service only over HTTP (``cli.client``, the same code as the ``gora`` CLI); torch
is imported only at the end, to load the downloaded adapter.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from cli.client import Client, ClientError
from cli.commands import _console, _follow
from gora.report_table import allocation_table

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "instructions.jsonl"
MODEL = "smollm2-135m"
QUESTION = "What is 47 plus 38?"
STATE = "tour.json"  # admin token, team id and API key of this data directory
PID_FILE = "up.pid"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A tour of the GoRA service (gora up) on this machine"
    )
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".gora-demo")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--data", type=Path, default=EXAMPLES, help="training file (JSONL)")
    parser.add_argument("--rows", type=int, default=None, help="train on the first N rows only")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--probe-steps", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--start-timeout", type=float, default=120.0, help="seconds for /readyz")
    parser.add_argument("--stop", action="store_true", help="stop the service this tour started")
    return parser.parse_args(argv)


# --- the service in the background ----------------------------------------------------------


def _alive(pid: int, group: bool = False) -> bool:
    """Whether the process (or, with ``group``, any process of the group ``pid``) still exists."""
    try:
        (os.killpg if group else os.kill)(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running_pid(data_dir: Path) -> int | None:
    path = data_dir / PID_FILE
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def _load_state(data_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((data_dir / STATE).read_text())
    except (OSError, ValueError):
        return {}


def _save_state(data_dir: Path, state: dict[str, Any]) -> None:
    path = data_dir / STATE
    path.write_text(json.dumps(state, indent=2))
    path.chmod(0o600)


def start_service(
    data_dir: Path, port: int, state: dict[str, Any], console: Console, timeout_s: float
) -> str:
    """``gora up`` in its own session (it outlives this script), or the one already running."""
    url = f"http://127.0.0.1:{port}"
    pid = _running_pid(data_dir)
    if pid is not None and state.get("url") == url and _ready(url):
        console.print(f"service: already running (pid {pid}) at {url}, data in {data_dir}")
        return url
    if pid is not None:
        raise SystemExit(
            f"a service from {data_dir} is running (pid {pid}) but not at {url}: "
            f"stop it first (make stop, or kill -INT {pid})"
        )
    if _ready(url):
        raise SystemExit(f"something else answers at {url}: choose another port (--port)")
    env = {**os.environ, "GORA_DATA_DIR": str(data_dir), "GORA_ADMIN_TOKEN": state["admin_token"]}
    for name in ("GORA_DATABASE_URL", "GORA_BROKER_URL", "GORA_STORAGE_URL", "GORA_ENV"):
        env.pop(name, None)  # the tour's service is the embedded one, whatever the shell says
    log = data_dir / "up.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: make stop ends it and its worker
        )
    (data_dir / PID_FILE).write_text(f"{process.pid}\n")
    state["url"] = url
    _save_state(data_dir, state)
    started = time.monotonic()
    with console.status(f"starting gora up on {url} (pid {process.pid}, log {log})"):
        while not _ready(url):
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise SystemExit(f"gora up exited ({process.returncode}); its log:\n{tail}")
            if time.monotonic() - started > timeout_s:
                raise SystemExit(f"gora up not ready after {timeout_s:.0f} s; see {log}")
            time.sleep(0.3)
    console.print(
        f"service: gora up ready at {url} in {time.monotonic() - started:.1f} s (pid {process.pid})"
    )
    return url


def stop_service(data_dir: Path, timeout_s: float = 40) -> str:
    pid = _running_pid(data_dir)
    if pid is None:
        (data_dir / PID_FILE).unlink(missing_ok=True)
        return f"no tour service running from {data_dir}"
    os.kill(pid, signal.SIGINT)  # gora up's Ctrl-C: uvicorn stops, then its worker (warm shutdown)
    deadline = time.monotonic() + timeout_s
    while _alive(pid, group=True):
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    (data_dir / PID_FILE).unlink(missing_ok=True)
    return f"stopped gora up (pid {pid})"


def _stop_command(data_dir: Path) -> str:
    if data_dir == (ROOT / ".gora-demo").resolve():
        return "`make stop`"
    return f"`{sys.executable} {Path(__file__).resolve()} --data-dir {data_dir} --stop`"


# --- team, key, job -------------------------------------------------------------------------


def team_key(url: str, state: dict[str, Any], data_dir: Path, console: Console) -> str:
    """The API key kept from an earlier run if the server still accepts it, else a new team and key."""
    if state.get("api_key"):
        client = Client(url, state["api_key"])
        try:
            client.list_jobs(1)
            console.print(f"team: {state['team_id']} (reused from {data_dir / STATE})")
            return state["api_key"]
        except ClientError:
            pass
        finally:
            client.close()
    admin = Client(url, admin_token=state["admin_token"])
    try:
        team = admin.create_team(f"tour-{secrets.token_hex(3)}")
        key = admin.create_key(team["id"], "tour")
    finally:
        admin.close()
    state.update(team_id=team["id"], api_key=key["key"])
    _save_state(data_dir, state)
    console.print(f"team: created {team['id']} and an API key (saved in {data_dir / STATE})")
    return key["key"]


def training_file(args: argparse.Namespace, work: Path) -> Path:
    if args.rows is None:
        return args.data
    lines = [line for line in args.data.read_text().splitlines() if line.strip()][: args.rows]
    path = work / f"{args.data.stem}-{args.rows}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def job_spec(args: argparse.Namespace, file_id: str) -> dict[str, Any]:
    hyper: dict[str, Any] = {
        "n_epochs": args.epochs,
        "batch_size": args.batch_size,
        "max_seq_length": args.max_seq_length,
        "log_every_steps": 1,
    }
    if args.max_steps is not None:
        hyper["max_steps"] = args.max_steps
    return {
        "model": MODEL,
        "training_file": file_id,
        "suffix": "tour",
        "hyperparameters": hyper,
        "adapter": {
            "type": "gora",
            "r_ref": 8,
            "alpha": 16,
            "target_modules": "all-linear",
            "probe_steps": args.probe_steps,
        },
        "gpu": {"pool": "cpu"},
    }


def download(client: Client, job_id: str, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        archive = Path(scratch) / "adapter.tar.gz"
        client.download_adapter(job_id, "peft", archive)
        with tarfile.open(archive, "r:gz") as tar:
            tops = {Path(m.name).parts[0] for m in tar.getmembers() if m.name}
            tar.extractall(out, filter="data")
    (top,) = tops
    return out / top


# --- base vs tuned --------------------------------------------------------------------------


def compare(adapter_dir: Path, question: str) -> tuple[str, str]:
    """The base model's answer and the downloaded adapter's, greedy, as ``gora.demo`` asks."""
    import warnings

    import torch
    from peft import PeftModel
    from transformers.utils import logging as hf_logging

    from gora import load_base_model
    from gora.demo import answer

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.manual_seed(0)
    base, tokenizer = load_base_model(MODEL, "causal_lm")
    base.eval()
    before = answer(base, tokenizer, question)
    tuned = PeftModel.from_pretrained(base, str(adapter_dir))
    tuned.eval()
    after = answer(tuned, tokenizer, question)
    return before, after


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = _console()
    data_dir = args.data_dir.resolve()
    if args.stop:
        console.print(stop_service(data_dir))
        return 0
    began = time.monotonic()
    data_dir.mkdir(parents=True, exist_ok=True)
    state = _load_state(data_dir)
    state.setdefault("admin_token", f"demo-{secrets.token_hex(16)}")
    _save_state(data_dir, state)
    console.rule("GoRA service tour: gora up, then one fine-tuning job through the API")
    url = start_service(data_dir, args.port, state, console, args.start_timeout)
    key = team_key(url, state, data_dir, console)
    out = data_dir / "tour"
    out.mkdir(exist_ok=True)
    client = Client(url, key)
    try:
        path = training_file(args, out)
        uploaded = client.upload_file(path)
        console.print(
            f"upload: {path.name} -> {uploaded['id']} {uploaded['status']}, "
            f"{uploaded.get('rows')} rows ({uploaded.get('format')})"
        )
        job = client.create_job(job_spec(args, uploaded["id"]))
        job_id = job["id"]
        console.print(
            f"job: {job_id} (GoRA r_ref=8 on {MODEL}, all linear layers, "
            f"{args.probe_steps} probe batches); following its events"
        )
        final = _follow(client, job_id)
        if final != "succeeded":
            error = client.get_job(job_id).get("error") or {}
            console.print(f"[red]{job_id} {final}[/]: {error.get('message', '')}")
            return 1
        console.print(f"{job_id} succeeded")
        console.print(allocation_table(client.allocation(job_id)))
        png = out / f"{job_id}-allocation.png"
        png.write_bytes(client.allocation_png(job_id))
        console.print(f"heatmap saved to {png}")
        adapter_dir = download(client, job_id, out)
        console.print(f"adapter downloaded to {adapter_dir} (PEFT format)")
    finally:
        client.close()
    with console.status("loading the base model and the downloaded adapter"):
        before, after = compare(adapter_dir, QUESTION)
    console.print(f"[bold]Q:[/] {QUESTION}\n  base:  {before}\n  GoRA:  {after}")
    pid = _running_pid(data_dir)
    console.rule(f"done in {time.monotonic() - began:.0f} s")
    console.print(
        f"The service is still running at {url} (pid {pid}, log {data_dir / 'up.log'}). Try:\n"
        f"  the dashboard: open {url}/ and sign in with the API key {key}\n"
        f"  export GORA_API_URL={url} GORA_API_KEY={key}\n"
        f"  .venv/bin/gora jobs\n"
        f"  .venv/bin/gora allocation {job_id}\n"
        f"Stop it with {_stop_command(data_dir)} (or: kill -INT $(cat {data_dir / PID_FILE}))."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
