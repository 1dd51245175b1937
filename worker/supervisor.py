"""The parent side of a job: take a turn (claim), run the job in a child process, watch it, record
how it ended.

The child (``python -m worker.child``) trains and writes progress and its outcome; this process is
the one writer of the job's heartbeat, turns a cancel into a kill when the child does not stop in
time, and records the outcome of a child that died without writing one.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from pathlib import Path

from service.core.db import DATABASE_UNREACHABLE, Database
from service.core.jobs import repository
from service.core.jobs.errors import ErrorCode, JobError
from service.core.jobs.lifecycle import HOLDING, JobStatus
from service.core.queue import JobQueue, make_celery
from service.core.settings import Settings, get_settings
from worker.logs import bound
from worker.processes import die_with_parent, kill_job_processes
from worker.scheduling import claim_next, next_waiting
from worker.settings import WorkerSettings
from worker.workspace import child_log, take_rank_failure

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


def take_turn(hinted_job_id: str) -> str:
    """Claims the job this worker should run now (``hinted_job_id`` or an older one of its pool)
    and runs it to an outcome; what the Celery task calls."""
    settings, worker_settings = get_settings(), WorkerSettings()
    database = Database(settings.database_url)
    worker_id = new_worker_id()
    try:
        claimed = database.run(
            lambda session: claim(session, hinted_job_id, worker_id),
            patience_s=worker_settings.db_patience_s,
        )
        if claimed is None:
            return "nothing to run"
        job_id, pool, team_id, processes, runnable = claimed
        with bound(job_id, team_id):  # every line until the job ends names it and its team
            outcome = "failed"
            if runnable:
                job_run = JobRun(database, settings, worker_settings, job_id, worker_id, processes)
                outcome = job_run.supervise()
            give_next_turn(database, settings, pool, worker_settings.db_patience_s)
            return f"{job_id}: {outcome}"
    finally:
        database.dispose()


def claim(session, hinted_job_id: str, worker_id: str) -> tuple[str, str, str, int, bool] | None:
    """Claims the job to run now: (id, pool, team, processes, runnable here), or None."""
    job = claim_next(session, hinted_job_id, worker_id)
    if job is None:
        return None
    processes = max(1, job.gpu_count or 0)
    repository.add_event(session, job.id, f"Started on worker {worker_id} (attempt {job.attempt})")
    runnable = processes <= 1 or processes <= worker_gpus()
    if not runnable:
        refuse_gpu_count(session, job.id, worker_id, processes)
    return job.id, job.pool, job.team_id, processes, runnable


def worker_gpus() -> int:
    """The GPUs this worker was given (``gora worker --gpus 0,1`` sets CUDA_VISIBLE_DEVICES)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return len([device for device in visible.split(",") if device.strip()])


def refuse_gpu_count(session, job_id: str, worker_id: str, wanted: int) -> None:
    """A job asking for more GPUs than this worker has fails at once (a user error, not a retry:
    every worker of a pool is started with the same ``--gpus``)."""
    have = worker_gpus()
    error = JobError(
        ErrorCode.USER_BAD_CONFIG,
        f"the job asks for {wanted} GPUs but the workers of its pool have {have}; "
        f"ask for at most {max(have, 1)} (gpu.count) or use a pool with more GPUs",
        "gpu.count",
    )
    repository.fail(session, job_id, error, held_by=worker_id)


def child_command(job_id: str, worker_id: str, processes: int = 1) -> list[str]:
    """The training child: one process, or ``processes`` ranks under torchrun (one per GPU)."""
    job = ["-m", "worker.child", job_id, worker_id]
    if processes <= 1:
        return [sys.executable, *job]
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
    return [sys.executable, *launcher, "--standalone", *job]


class JobRun:
    """One claimed job's child process, watched until it ends."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        worker_settings: WorkerSettings,
        job_id: str,
        worker_id: str,
        processes: int = 1,
    ):
        self.database, self.ws = database, worker_settings
        self.job_id, self.worker_id, self.processes = job_id, worker_id, processes
        self.work_root = worker_settings.work_root(settings)
        self.log_path = child_log(self.work_root, job_id)

    def start(self) -> subprocess.Popen:
        distributed = self.processes > 1
        take_rank_failure(self.work_root, self.job_id)  # an earlier attempt's, if any
        with open(self.log_path, "ab") as log_file:
            return subprocess.Popen(
                child_command(self.job_id, self.worker_id, self.processes),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # torchrun gets a process group of its own (killed as one with whatever stayed in
                # it) and dies with this process; each rank dies with torchrun in turn.
                start_new_session=distributed,
                preexec_fn=die_with_parent if distributed else None,
            )

    def supervise(self) -> str:
        child = self.start()
        log.info("job %s: child %s started, log %s", self.job_id, child.pid, self.log_path)
        cancel_seen_at: float | None = None
        last_beat = time.monotonic()
        while child.poll() is None:
            time.sleep(min(1.0, self.ws.heartbeat_s))
            beat = time.monotonic() - last_beat >= self.ws.heartbeat_s
            held, status = self.check_in(beat)
            last_beat = time.monotonic() if beat else last_beat
            if status == JobStatus.CANCELLING and cancel_seen_at is None:
                cancel_seen_at = time.monotonic()
            overdue = (
                cancel_seen_at is not None
                and time.monotonic() - cancel_seen_at > self.ws.cancel_grace_s
            )
            if overdue or not held:
                log.info("job %s: stopping child (held=%s, status=%s)", self.job_id, held, status)
                kill_job_processes(child, self.processes)
        child.wait()
        return self.record_exit(child.returncode)

    def check_in(self, beat: bool) -> tuple[bool, str | None]:
        """(does this worker still hold the job, its status); stamps the heartbeat when ``beat``.

        A database it cannot reach (a restart) changes nothing: the child keeps training, and the
        next check-in tells (a heartbeat missed for less than ``stale_after_s`` loses no job).
        """
        try:
            with self.database.transaction() as session:
                status = repository.status_of(session, self.job_id)
                if beat:
                    held = repository.heartbeat(session, self.job_id, self.worker_id)
                else:
                    held = status in HOLDING
        except DATABASE_UNREACHABLE as exc:
            log.warning("job %s: cannot check in (%s); the child keeps running", self.job_id, exc)
            return True, None
        return held, status

    def record_exit(self, code: int) -> str:
        """The job's outcome once the child is gone; the child's own record wins when it wrote one."""
        failure = take_rank_failure(self.work_root, self.job_id)
        return self.database.run(
            lambda session: self._record_exit(session, code, failure),
            patience_s=self.ws.db_patience_s,
        )

    def _record_exit(self, session, code: int, failure: JobError | None) -> str:
        status = repository.status_of(session, self.job_id)
        if status == JobStatus.PAUSING:  # it ended before it could say so: its last checkpoint
            repository.move(
                session,
                self.job_id,
                expected=JobStatus.PAUSING,
                to=JobStatus.PAUSED,
                event="Job paused; a resume continues from its last checkpoint",
                held_by=self.worker_id,
                worker_id=None,
            )
            return "paused"
        if status == JobStatus.CANCELLING:
            repository.move(
                session,
                self.job_id,
                expected=JobStatus.CANCELLING,
                to=JobStatus.CANCELLED,
                event="Job cancelled; its training process stopped",
                held_by=self.worker_id,
            )
            return "cancelled"
        if status != JobStatus.RUNNING:
            return status or "gone"
        tail = log_tail(self.log_path, self.ws.log_tail_lines)
        error = exit_error(code, failure)
        data = {"exit_code": code, "log_tail": tail}
        repository.fail(session, self.job_id, error, held_by=self.worker_id, data=data)
        return "failed"


def log_tail(path: Path, lines: int) -> str:
    with open(path, errors="replace") as handle:
        return "".join(deque(handle, maxlen=lines))


def exit_error(exit_code: int, recorded: JobError | None = None) -> JobError:
    """The job error for a child that ended without recording one itself.

    Under torchrun a rank other than 0 cannot write the job's record: the error it met (out of
    device memory) comes as ``recorded``, and wins over the exit code torchrun passes on.
    """
    if recorded is not None:
        return recorded
    if exit_code == -9:
        return JobError.internal(
            "the training process was killed (signal 9; the kernel's out-of-memory killer does "
            "this): try a smaller batch_size or max_seq_length, or ask an operator"
        )
    if exit_code < 0:
        return JobError.internal(f"the training process was killed by signal {-exit_code}")
    return JobError.internal(
        f"the training process failed (exit code {exit_code}); see the job's events"
    )


def give_next_turn(database: Database, settings: Settings, pool: str, patience_s: float) -> None:
    """A job that waited for its team's limit gets a message now that a running job has ended."""
    waiting = database.run(lambda session: next_waiting(session, pool), patience_s=patience_s)
    if waiting is not None:
        JobQueue(make_celery(settings)).enqueue(waiting, pool)
