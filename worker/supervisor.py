"""The parent side of a job: claim it, run it in a child process, watch it, record how it ended.

The child (``python -m worker.run_job``) does the training and writes progress and its outcome;
this process only heartbeats, turns a cancel into a kill when the child does not stop in time, and
records the outcome of a child that died without writing one (``failed``, an internal code, the last
lines of its log in an event).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from pathlib import Path

from service.core.db import Database
from service.core.jobs import repository
from service.core.jobs.lifecycle import ErrorCode, JobStatus
from service.core.queue import JobQueue, make_celery
from service.core.settings import Settings, get_settings
from worker.errors import out_of_memory_error
from worker.logs import bound
from worker.scheduling import claim_next, next_waiting
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)
HOLDING = (JobStatus.RUNNING.value, JobStatus.CANCELLING.value)


def new_worker_id() -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


def run_job(hinted_job_id: str) -> str:
    settings, worker_settings = get_settings(), WorkerSettings()
    database = Database(settings.database_url)
    worker_id = new_worker_id()
    try:
        with database.transaction() as session:
            job = claim_next(session, hinted_job_id, worker_id)
            if job is None:
                return "nothing to run"
            job_id, pool, attempt, team_id = job.id, job.pool, job.attempt, job.team_id
            processes = max(1, job.gpu_count or 0)
            repository.add_event(
                session, job_id, f"Started on worker {worker_id} (attempt {attempt})"
            )
            if processes > 1 and processes > worker_gpus():
                refuse_gpu_count(session, job_id, worker_id, processes)
                processes = 0
        with bound(job_id, team_id):  # every line until the job ends names it and its team
            if processes:
                outcome = supervise(
                    database, settings, worker_settings, job_id, worker_id, processes
                )
            else:
                outcome = "failed"
            give_next_turn(database, settings, pool)
            return f"{job_id}: {outcome}"
    finally:
        database.dispose()


def child_log_path(settings: Settings, worker_settings: WorkerSettings, job_id: str) -> Path:
    root = Path(worker_settings.work_dir or settings.data_dir / "work") / "logs"
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{job_id}.log"


def worker_gpus() -> int:
    """The GPUs this worker was given (``gora worker --gpus 0,1`` sets CUDA_VISIBLE_DEVICES)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return len([device for device in visible.split(",") if device.strip()])


def refuse_gpu_count(session, job_id: str, worker_id: str, wanted: int) -> None:
    """A job asking for more GPUs than this worker has fails at once (a user error, not a retry:
    every worker of a pool is started with the same ``--gpus``)."""
    have = worker_gpus()
    error = {
        "code": ErrorCode.USER_BAD_CONFIG.value,
        "message": f"the job asks for {wanted} GPUs but the workers of its pool have {have}; "
        f"ask for at most {max(have, 1)} (gpu.count) or use a pool with more GPUs",
        "param": "gpu.count",
    }
    repository.fail_held(session, job_id, worker_id, error)


def child_command(job_id: str, worker_id: str, processes: int = 1) -> list[str]:
    """The training child: one process, or ``processes`` ranks under torchrun (one per GPU)."""
    job = ["-m", "worker.run_job", job_id, worker_id]
    if processes <= 1:
        return [sys.executable, *job]
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
    return [sys.executable, *launcher, "--standalone", *job]


def _die_with_supervisor() -> None:  # runs in the forked torchrun before exec
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def start_child(
    job_id: str, worker_id: str, log_path: Path, processes: int = 1
) -> subprocess.Popen:
    distributed = processes > 1
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            child_command(job_id, worker_id, processes),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # torchrun gets a process group of its own (killed as one with whatever it started that
            # stayed in it); it dies with this process, and each rank with it (run_job's
            # PR_SET_PDEATHSIG).
            start_new_session=distributed,
            preexec_fn=_die_with_supervisor if distributed else None,
        )


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc; empty elsewhere or once it is gone)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as handle:
                    children = [int(child) for child in handle.read().split()]
            except OSError:
                continue
            found.extend(children)
            todo.extend(children)
    return found


def kill_child(child: subprocess.Popen, processes: int) -> None:
    if processes <= 1:
        child.kill()
        return
    # torchrun starts each rank in a session of its own, so its process group holds torchrun alone:
    # the ranks are found by ancestry and killed by pid (each would also die with torchrun, by
    # PR_SET_PDEATHSIG, but a rank must never outlive a kill).
    ranks = descendants(child.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    for pid in ranks:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def supervise(
    database: Database,
    settings: Settings,
    ws: WorkerSettings,
    job_id: str,
    worker_id: str,
    processes: int = 1,
) -> str:
    log_path = child_log_path(settings, ws, job_id)
    child = start_child(job_id, worker_id, log_path, processes)
    log.info("job %s: child %s started, log %s", job_id, child.pid, log_path)
    cancel_seen_at: float | None = None
    last_beat = time.monotonic()
    while child.poll() is None:
        time.sleep(min(1.0, ws.heartbeat_s))
        beat = time.monotonic() - last_beat >= ws.heartbeat_s
        held, status = check_in(database, job_id, worker_id, beat)
        last_beat = time.monotonic() if beat else last_beat
        if status == JobStatus.CANCELLING.value and cancel_seen_at is None:
            cancel_seen_at = time.monotonic()
        overdue = (
            cancel_seen_at is not None and time.monotonic() - cancel_seen_at > ws.cancel_grace_s
        )
        if overdue or not held:
            log.info(
                "job %s: stopping child %s (held=%s, status=%s)", job_id, child.pid, held, status
            )
            kill_child(child, processes)
    child.wait()
    return record_exit(database, ws, job_id, worker_id, child.returncode, log_path)


def check_in(
    database: Database, job_id: str, worker_id: str, beat: bool
) -> tuple[bool, str | None]:
    """(does this worker still hold the job, its status); stamps the heartbeat when ``beat``."""
    with database.transaction() as session:
        status = repository.status_of(session, job_id)
        held = repository.heartbeat(session, job_id, worker_id) if beat else status in HOLDING
    return held, status


def log_tail(path: Path, lines: int) -> str:
    with open(path, errors="replace") as handle:
        return "".join(deque(handle, maxlen=lines))


def record_exit(
    database: Database, ws: WorkerSettings, job_id: str, worker_id: str, code: int, log_path: Path
) -> str:
    """The job's outcome once the child is gone; the child's own record wins when it wrote one."""
    with database.transaction() as session:
        status = repository.status_of(session, job_id)
        if status == JobStatus.CANCELLING.value:
            if repository.transition_held(
                session, job_id, worker_id, expected=JobStatus.CANCELLING, to=JobStatus.CANCELLED
            ):
                repository.add_event(session, job_id, "Job cancelled; its training process stopped")
            return "cancelled"
        if status != JobStatus.RUNNING.value:
            return status or "gone"
        tail = log_tail(log_path, ws.log_tail_lines)
        error = child_error(code, tail)
        repository.fail_held(
            session, job_id, worker_id, error, data={"exit_code": code, "log_tail": tail}
        )
        return "failed"


def child_error(exit_code: int, tail: str = "") -> dict[str, str | None]:
    """The job error for a child that ended without recording one itself.

    Under torchrun, a rank other than 0 that runs out of device memory ends alone and takes the
    others down with it; only its traceback, in the shared log, says why.
    """
    if "OutOfMemoryError" in tail:
        return out_of_memory_error("on one of the job's processes")
    if exit_code == -9:
        message = (
            "the training process was killed (signal 9; the kernel's out-of-memory killer does "
            "this): try a smaller batch_size or max_seq_length, or ask an operator"
        )
        return {"code": ErrorCode.INTERNAL_ERROR.value, "message": message, "param": None}
    if exit_code < 0:
        message = f"the training process was killed by signal {-exit_code}"
    else:
        message = f"the training process failed (exit code {exit_code}); see the job's events"
    return {"code": ErrorCode.INTERNAL_ERROR.value, "message": message, "param": None}


def give_next_turn(database: Database, settings: Settings, pool: str) -> None:
    """A job that waited for its team's limit gets a message now that a running job has ended."""
    with database.transaction() as session:
        waiting = next_waiting(session, pool)
    if waiting is not None:
        JobQueue(make_celery(settings)).enqueue(waiting, pool)
