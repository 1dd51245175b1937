"""What a running job writes back: phases, events, metrics, checkpoints, the allocation, the outcome.

Each write is its own short transaction, so the API shows it at once, and each is guarded by the
worker id, so a job taken back from this worker (stale heartbeat) is never written by it again.
The heartbeat itself is not written here: the supervisor is its one writer (worker/supervisor.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from service.core.db import Database
from service.core.jobs import repository
from service.core.jobs.errors import JobError
from service.core.jobs.lifecycle import HOLDING, JobStatus

log = logging.getLogger(__name__)


class JobReporter:
    def __init__(self, database: Database, job_id: str, worker_id: str, cancel_poll_s: float):
        self.database = database
        self.job_id = job_id
        self.worker_id = worker_id
        self.cancel_poll_s = cancel_poll_s
        self._last_poll = 0.0
        self._stop = False
        self._recorded_steps: set[int] | None = None

    def event(self, message: str, *, level: str = "info", type: str = "message", **data: Any):
        log.info("%s: %s", self.job_id, message)  # the log tail of a crash shows how far it got
        with self.database.transaction() as session:
            repository.add_event(
                session, self.job_id, message, level=level, type=type, data=data or None
            )

    def phase(self, phase: str, message: str, **data: Any) -> None:
        log.info("%s: %s", self.job_id, message)
        with self.database.transaction() as session:
            repository.set_phase(session, self.job_id, self.worker_id, phase)
            repository.add_event(session, self.job_id, message, data={"phase": phase, **data})

    def metrics(self, values: dict[str, Any]) -> None:
        """A training step's metrics event, once per step: a run resumed from a checkpoint repeats
        the steps an earlier attempt ran past it, and those already have theirs."""
        if self._recorded_steps is None:
            with self.database.transaction() as session:
                self._recorded_steps = repository.training_metric_steps(session, self.job_id)
        if values["step"] in self._recorded_steps:
            return
        self._recorded_steps.add(values["step"])
        message = f"Step {values['step']}: training loss={values['loss']:.4f}"
        with self.database.transaction() as session:
            repository.add_event(session, self.job_id, message, type="metrics", data=values)
            repository.record_progress(
                session, self.job_id, self.worker_id, trained_tokens=values["trained_tokens"]
            )

    def checkpoint(self, step: int, storage_key: str, metrics: dict[str, Any]) -> None:
        with self.database.transaction() as session:
            repository.add_checkpoint(session, self.job_id, step, storage_key, metrics)
            repository.add_event(
                session, self.job_id, f"Checkpoint saved at step {step}", data={"step": step}
            )

    def allocation(self, report: dict[str, Any]) -> None:
        totals = report["totals"]
        with self.database.transaction() as session:
            repository.save_allocation(session, self.job_id, report)
            repository.add_event(
                session,
                self.job_id,
                f"Rank allocation ready: {totals['allocated']:,} of {totals['budget']:,} "
                "adapter parameters",
                data={"totals": totals},
            )

    def stored_allocation(self) -> dict[str, Any]:
        """The allocation report stored when the job probed (a resumed attempt does not probe)."""
        with self.database.transaction() as session:
            report = repository.get_allocation(session, self.job_id)
        assert report is not None, f"job {self.job_id} resumes but has no stored allocation"
        return report

    def training_metrics(self) -> list[dict[str, Any]]:
        """Every training step's metrics, as the job's events recorded them."""
        with self.database.transaction() as session:
            return repository.training_metrics(session, self.job_id)

    def should_stop(self) -> bool:
        """True once the job is no longer this worker's to run plainly (a cancel, or taken back);
        read at most every ``cancel_poll_s``, at step boundaries."""
        now = time.monotonic()
        if not self._stop and now - self._last_poll >= self.cancel_poll_s:
            self._last_poll = now
            with self.database.transaction() as session:
                held = repository.holder(session, self.job_id)
            self._stop = held != (JobStatus.RUNNING.value, self.worker_id)
        return self._stop

    def succeed(self, result_files: list[str], trained_tokens: int, model_name: str) -> bool:
        with self.database.transaction() as session:
            return repository.move(
                session,
                self.job_id,
                expected=JobStatus.RUNNING,
                to=JobStatus.SUCCEEDED,
                event="The job has successfully completed",
                held_by=self.worker_id,
                result_files=result_files,
                trained_tokens=trained_tokens,
                fine_tuned_model=model_name,
            )

    def cancelled(self, step: int) -> bool:
        with self.database.transaction() as session:
            return repository.move(
                session,
                self.job_id,
                expected=HOLDING,
                to=JobStatus.CANCELLED,
                event=f"Job cancelled at step {step}",
                held_by=self.worker_id,
            )

    def fail(self, error: JobError) -> bool:
        with self.database.transaction() as session:
            return repository.fail(
                session, self.job_id, error, expected=HOLDING, held_by=self.worker_id
            )


class QuietReporter(JobReporter):
    """The reporter of ranks above 0 in a multi-GPU job: rank 0 alone writes the job's record and
    polls the cancel flag (the recipe shares its stop decision with every rank)."""

    def event(self, message: str, *, level: str = "info", type: str = "message", **data: Any):
        log.debug("%s (rank > 0, not recorded): %s", self.job_id, message)

    def phase(self, phase: str, message: str, **data: Any) -> None:
        self.event(message)

    def metrics(self, values: dict[str, Any]) -> None:
        pass

    def checkpoint(self, step: int, storage_key: str, metrics: dict[str, Any]) -> None:
        pass

    def allocation(self, report: dict[str, Any]) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def succeed(self, result_files: list[str], trained_tokens: int, model_name: str) -> bool:
        return False

    def cancelled(self, step: int) -> bool:
        return False

    def fail(self, error: JobError) -> bool:
        return False
