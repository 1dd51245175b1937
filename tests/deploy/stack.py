"""The team stack of docker/docker-compose.yml, driven as a team drives it: docker compose commands,
and HTTP to the API's published port. What the deployment test needs and nothing of the code."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker" / "docker-compose.yml"
EXPOSE_FILE = ROOT / "docker" / "expose-db.yml"
LOCAL_IMAGES = ROOT / "docker" / "local" / "stack.env"


def host_address() -> str:
    """This machine's address on its network: what another host would reach it by."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("198.51.100.1", 9))  # no packet is sent: it only picks the outgoing address
        return probe.getsockname()[0]


def run(*command: str, timeout_s: float = 600, check: bool = True) -> str:
    """The command's output (stdout and stderr together); a failure raises with its tail."""
    done = subprocess.run(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout[-4000:]}")
    return done.stdout


@dataclass
class Project:
    """One compose project: a host of the deployment."""

    name: str
    env_file: Path
    files: list[Path] = field(default_factory=lambda: [COMPOSE_FILE])

    def compose(self, *args: str, timeout_s: float = 600, check: bool = True) -> str:
        files = [arg for path in self.files for arg in ("-f", str(path))]
        env = ["--env-file", str(self.env_file), "--env-file", str(LOCAL_IMAGES)]
        return run(
            "docker",
            "compose",
            "-p",
            self.name,
            *files,
            *env,
            *args,
            timeout_s=timeout_s,
            check=check,
        )

    def container(self, service: str) -> str:
        return f"{self.name}-{service}-1"

    def logs(self, service: str) -> str:
        return run("docker", "logs", self.container(service), check=False)

    def exec(self, service: str, *command: str) -> str:
        return run("docker", "exec", self.container(service), *command, check=False)


class Api:
    """The API at its published port, with the admin token or a team's key."""

    def __init__(self, url: str, token: str):
        self.url, self.token = url, token

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
             content_type: str = "application/json", patience_s: float = 120) -> Any:  # fmt: skip
        """The response's JSON (or bytes); a 503 is tried again after its Retry-After, as a client
        should while the database restarts, for up to ``patience_s``."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        deadline = time.monotonic() + patience_s
        while True:
            request = urllib.request.Request(self.url + path, data=data, method=method)
            request.add_header("Authorization", f"Bearer {self.token}")
            if data is not None:
                request.add_header("Content-Type", content_type)
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    payload, kind = response.read(), response.headers.get_content_type()
                return json.loads(payload) if kind == "application/json" else payload
            except urllib.error.HTTPError as error:
                if error.code != 503 or time.monotonic() > deadline:
                    raise
                time.sleep(float(error.headers.get("Retry-After") or 1))

    def ready(self, timeout_s: float = 120) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.call("GET", "/readyz")
            except (urllib.error.URLError, ConnectionError, OSError):
                assert time.monotonic() < deadline, "the API did not become ready"
                time.sleep(1)

    def upload(self, content: bytes, name: str = "train.jsonl") -> dict:
        boundary = "gora-deploy-test"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n\r\n'
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return self.call(
            "POST", "/v1/files", raw=body, content_type=f"multipart/form-data; boundary={boundary}"
        )

    def job(self, job_id: str) -> dict:
        return self.call("GET", f"/v1/fine_tuning/jobs/{job_id}")

    def events(self, job_id: str) -> list[dict]:
        """Every event of the job, oldest first."""
        found, after = [], None
        while True:
            page = self.call(
                "GET",
                f"/v1/fine_tuning/jobs/{job_id}/events?limit=100"
                + (f"&after={after}" if after else ""),
            )
            found += page["data"]
            if not page["has_more"]:
                return list(reversed(found))
            after = page["data"][-1]["id"]

    def wait(self, job_id: str, predicate, what: str, timeout_s: float = 600) -> list[dict]:
        """Polls the job's events until ``predicate(events)`` holds; returns them."""
        deadline = time.monotonic() + timeout_s
        while True:
            events = self.events(job_id)
            if predicate(events):
                return events
            status = self.job(job_id)["status"]
            assert status not in ("failed", "cancelled"), (
                what,
                status,
                [e["message"] for e in events],
            )
            assert time.monotonic() < deadline, (what, [e["message"] for e in events])
            time.sleep(1)

    def wait_status(self, job_id: str, status: str, timeout_s: float = 600) -> dict:
        self.wait(
            job_id, lambda _: self.job(job_id)["status"] == status, f"status {status}", timeout_s
        )
        return self.job(job_id)


def worker_of(events: list[dict]) -> list[str]:
    """The worker hosts a job started on, in order ("Started on worker <host>/<pid>/<id> ...")."""
    return [
        e["message"].split()[3].split("/")[0]
        for e in events
        if e["message"].startswith("Started on worker")
    ]


def successes(events: list[dict]) -> int:
    return sum(e["message"] == "The job has successfully completed" for e in events)


def training_steps(events: list[dict]) -> list[int]:
    return [
        e["data"]["step"]
        for e in events
        if e["type"] == "metrics" and "loss" in (e.get("data") or {})
    ]
