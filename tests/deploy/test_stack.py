"""The team deployment, built and run: docker/docker-compose.yml with images from the project's own
Dockerfiles (docker/local/build.sh where no registry can be reached), two CPU worker services
standing for two worker hosts, then the faults a team meets, with the figures printed.

Run by ``make test-deploy`` (and by .ci/run after ``make test``); needs a Docker engine and Compose
v2 (``docker/local/engine.sh`` installs and starts them). The worker settings are the defaults a team
runs with (heartbeat 5 s, stale after 90 s, reconciler every 30 s), so recovery times are the real
ones. Everything is torn down at the end: containers, volumes, the images built for the test.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.stack import (
    EXPOSE_FILE,
    ROOT,
    Api,
    Project,
    host_address,
    run,
    successes,
    training_steps,
    worker_of,
)

pytestmark = pytest.mark.deploy

TAG = "deploytest"
ADMIN_TOKEN = "deploy-admin-token"
API_PORT = 18765
ROWS = b"\n".join((ROOT / "examples" / "instructions.jsonl").read_bytes().splitlines()[:16]) + b"\n"
ADAPTER = {"type": "gora", "r_ref": 4, "target_modules": ["q_proj", "v_proj"], "probe_steps": 2}


def hyperparameters(steps: int, checkpoint_every: int) -> dict:
    return {
        "n_epochs": 20, "batch_size": 2, "max_steps": steps, "max_seq_length": 64,
        "log_every_steps": 1, "checkpoint_every_steps": checkpoint_every,
    }  # fmt: skip


def env_file(path: Path, **extra: str) -> Path:
    values = {
        "GORA_ADMIN_TOKEN": ADMIN_TOKEN,
        "POSTGRES_PASSWORD": "deploy-test-password",
        "GORA_API_PORT": str(API_PORT),
        "GORA_POOLS": "cpu",
        "GORA_DEFAULT_POOL": "cpu",
        "GORA_CPU_WORKER_THREADS": "1",
        "GORA_STORAGE_VOLUME": "gora-deploytest-storage",
        "GORA_IMAGE_TAG": TAG,
        # The first host publishes its database and broker to the second (docker/expose-db.yml).
        "GORA_EXPOSE_ADDRESS": host_address(),
        "GORA_EXPOSE_POSTGRES_PORT": "15432",
        "GORA_EXPOSE_REDIS_PORT": "16379",
        **extra,
    }
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """The first host: the whole stack, its database and broker published for the second."""
    run("docker", "info")  # a clear failure when there is no engine: run docker/local/engine.sh
    started = time.monotonic()
    run(
        "env", f"GORA_IMAGE_TAG={TAG}", "bash", "docker/local/build.sh", "--rebuild", timeout_s=1800
    )
    print(f"\nimages built in {time.monotonic() - started:.0f} s")
    folder = tmp_path_factory.mktemp("deploy")
    project = Project("gora-deploytest", env_file(folder / "host1.env"))
    project.files.append(EXPOSE_FILE)
    try:
        project.compose("up", "-d", "--no-build", "--wait", timeout_s=300)
        yield project
    finally:
        for other in ("gora-deploytest-host2", project.name):
            Project(other, project.env_file, project.files).compose(
                "down", "-v", "--remove-orphans", check=False
            )
        run("docker", "volume", "rm", "-f", "gora-deploytest-storage", check=False)
        run("docker", "rmi", "-f", f"gora-api:{TAG}", f"gora-worker:{TAG}", check=False)


@pytest.fixture(scope="module")
def admin(host: Project) -> Api:
    api = Api(f"http://127.0.0.1:{API_PORT}", ADMIN_TOKEN)
    api.ready()
    return api


@pytest.fixture(scope="module")
def team(admin: Api) -> Api:
    created = admin.call("POST", "/v1/teams", {"name": "deploy-test"})
    key = admin.call("POST", f"/v1/teams/{created['id']}/api_keys", {})
    return Api(admin.url, key["key"])


@pytest.fixture(scope="module")
def training_file(team: Api) -> str:
    uploaded = team.upload(ROWS)
    assert uploaded["status"] == "processed", uploaded
    return uploaded["id"]


def submit(team: Api, training_file: str, steps: int = 3, checkpoint_every: int = 2) -> str:
    body = {
        "model": "smollm2-135m",
        "training_file": training_file,
        "hyperparameters": hyperparameters(steps, checkpoint_every),
        "adapter": ADAPTER,
        "seed": 7,
    }
    return team.call("POST", "/v1/fine_tuning/jobs", body)["id"]


def test_the_stack_comes_up_ready(host: Project, admin: Api):
    assert admin.ready() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}
    states = {
        s["Service"]: s
        for s in map(json.loads, host.compose("ps", "-a", "--format", "json").splitlines())
    }
    assert states["migrate"]["ExitCode"] == 0 and states["migrate"]["State"] == "exited"
    assert {"api", "postgres", "redis", "worker-cpu-a", "worker-cpu-b"} <= {
        name for name, state in states.items() if state["State"] == "running"
    }
    # The API image carries neither torch nor worker code.
    assert host.exec(
        "api",
        "python",
        "-c",
        "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('worker'))",
    ).split() == ["None", "None"]


def test_two_jobs_run_at_once_on_the_two_workers(team: Api, training_file: str):
    first, second = submit(team, training_file), submit(team, training_file)
    hosts = []
    for job_id in (first, second):
        done = team.wait_status(job_id, "succeeded", timeout_s=900)
        events = team.events(job_id)
        assert successes(events) == 1 and training_steps(events) == [1, 2, 3]
        assert done["trained_tokens"] > 0
        hosts += worker_of(events)
    assert sorted(hosts) == ["worker-cpu-a", "worker-cpu-b"], hosts
    archive = team.call("GET", f"/v1/fine_tuning/jobs/{first}/adapter?format=peft")
    assert archive[:2] == b"\x1f\x8b"  # a gzip archive, streamed from the shared storage


def _training_on(team: Api, job_id: str) -> tuple[str, list[dict]]:
    """Waits until the job has trained past a checkpoint; the worker host it runs on."""
    events = team.wait(
        job_id,
        lambda ev: any(e["message"].startswith("Checkpoint saved") for e in ev),
        "a checkpoint",
    )
    return worker_of(events)[-1], events


def test_a_killed_worker_host_loses_no_job(host: Project, team: Api, training_file: str):
    """docker kill (a host lost): the reconciler of the other worker takes the job back once its
    heartbeat is stale, and the other worker resumes it from its checkpoint, exactly once."""
    job_id = submit(team, training_file, steps=24, checkpoint_every=3)
    victim, _ = _training_on(team, job_id)
    killed_at = time.monotonic()
    run("docker", "kill", host.container(victim))
    survivor = {"worker-cpu-a": "worker-cpu-b", "worker-cpu-b": "worker-cpu-a"}[victim]
    moved = team.wait(job_id, lambda ev: len(worker_of(ev)) == 2, "a restart", timeout_s=600)
    recovered_s = time.monotonic() - killed_at
    done = team.wait_status(job_id, "succeeded", timeout_s=900)
    finished_s = time.monotonic() - killed_at
    events = team.events(job_id)
    assert worker_of(moved)[-1] == survivor
    assert any(e["message"].startswith("Requeued") for e in events)
    assert any(e["message"].startswith("Resuming from checkpoint") for e in events)
    assert successes(events) == 1 and training_steps(events) == list(range(1, 25))
    assert done["trained_tokens"] > 0
    print(f"\nkilled {victim}: running again on {survivor} after {recovered_s:.0f} s, "
          f"succeeded {finished_s:.0f} s after the kill")  # fmt: skip
    host.compose("start", victim)


def test_a_paused_worker_wakes_to_find_its_job_gone_and_writes_nothing(
    host: Project, team: Api, training_file: str
):
    """docker pause past the stale timeout: the job moves to the other worker; unpaused, the first
    notices it lost the job (its writes are refused), stops its trainer and writes nothing more."""
    job_id = submit(team, training_file, steps=30, checkpoint_every=3)
    sleeper, _ = _training_on(team, job_id)
    run("docker", "pause", host.container(sleeper))
    paused_at = time.monotonic()
    try:
        team.wait(job_id, lambda ev: len(worker_of(ev)) == 2, "the move", timeout_s=600)
        moved_s = time.monotonic() - paused_at
    finally:
        run("docker", "unpause", host.container(sleeper))
    woken_at = time.time()
    status_when_woken = team.job(job_id)["status"]
    done = team.wait_status(job_id, "succeeded", timeout_s=900)
    time.sleep(15)  # the woken worker's supervisor checks in every 5 s, its child every step
    events = team.events(job_id)
    assert successes(events) == 1 and training_steps(events) == list(range(1, 31))
    assert team.job(job_id)["finished_at"] == done["finished_at"]
    log = host.exec(sleeper, "cat", f"/srv/work/logs/{job_id}.log") + host.logs(sleeper)
    noticed = [
        line for line in log.splitlines() if "writing nothing more" in line or "held=False" in line
    ]
    assert noticed, log[-3000:]
    assert _training_children(host, sleeper) == 0
    print(
        f"\npaused {sleeper}: job moved after {moved_s:.0f} s; woken at {woken_at:.0f} with the job "
        f"{status_when_woken} (finished at {done['finished_at']}); it noticed: {noticed}"
    )


def _training_children(host: Project, service: str) -> int:
    """How many training children run in the container (the images have no ps: /proc)."""
    count = (
        "import os; print(sum(b'-m\\x00worker.child' in open(f'/proc/{p}/cmdline', 'rb').read() "
        "for p in os.listdir('/proc') if p.isdigit()))"
    )
    return int(host.exec(service, "python", "-c", count).strip())


def test_restarting_database_and_broker_mid_queue_loses_and_doubles_nothing(
    host: Project, team: Api, training_file: str
):
    jobs = [submit(team, training_file, steps=6, checkpoint_every=3) for _ in range(4)]
    team.wait(jobs[0], lambda ev: any(e["type"] == "metrics" for e in ev), "training")
    host.compose("restart", "postgres", "redis", timeout_s=300)
    for job_id in jobs:
        team.wait_status(job_id, "succeeded", timeout_s=1200)
        events = team.events(job_id)
        assert successes(events) == 1, [e["message"] for e in events]
        assert training_steps(events) == list(range(1, 7))
    print(f"\ndatabase and broker restarted with {len(jobs)} jobs running or queued: "
          "lost 0, run twice 0")  # fmt: skip


def test_down_and_up_keep_teams_files_jobs_and_adapters(
    host: Project, team: Api, training_file: str
):
    succeeded = team.wait_status(submit(team, training_file), "succeeded", timeout_s=900)
    jobs_before = team.call("GET", "/v1/fine_tuning/jobs?limit=100")["data"]
    archive = team.call("GET", f"/v1/fine_tuning/jobs/{succeeded['id']}/adapter?format=peft")
    host.compose("down", timeout_s=300)
    host.compose("up", "-d", "--no-build", "--wait", timeout_s=300)
    Api(team.url, ADMIN_TOKEN).ready()
    assert team.call("GET", "/v1/fine_tuning/jobs?limit=100")["data"] == jobs_before
    assert team.call("GET", f"/v1/files/{training_file}")["status"] == "processed"
    again = team.call("GET", f"/v1/fine_tuning/jobs/{succeeded['id']}/adapter?format=peft")
    assert _files(again) == _files(archive)  # the same files (an archive's timestamps are its own)
    job_id = submit(team, training_file)
    assert team.wait_status(job_id, "succeeded", timeout_s=900)["status"] == "succeeded"


def _files(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_a_second_host_runs_jobs_from_the_first_hosts_queue(
    host: Project, team: Api, training_file: str, tmp_path: Path
):
    """README.md, "Team deployment", second host: a project of its own, pointed at the first host's
    published database and broker, mounting the storage volume by name (NFS on a real host)."""
    address = host_address()
    second = Project(
        "gora-deploytest-host2",
        env_file(
            tmp_path / "host2.env",
            POSTGRES_HOST=address, POSTGRES_PORT="15432", REDIS_HOST=address, REDIS_PORT="16379",
        ),
    )  # fmt: skip
    second.compose("up", "-d", "--no-build", "--no-deps", "worker-cpu-a", timeout_s=300)
    host.compose("stop", "worker-cpu-a", "worker-cpu-b", timeout_s=300)
    try:
        job_id = submit(team, training_file)
        assert team.wait_status(job_id, "succeeded", timeout_s=900)["status"] == "succeeded"
        assert job_id in second.logs("worker-cpu-a")
    finally:
        host.compose("start", "worker-cpu-a", "worker-cpu-b", timeout_s=300)
        second.compose("down", "-v", check=False)
