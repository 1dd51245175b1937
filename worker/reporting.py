"""What a running job writes back: phases, events, metrics, checkpoints, the allocation, the outcome.

Each write is its own short transaction, so the API shows it at once, and each is guarded by the
worker id, so a job taken back from this worker (stale heartbeat) is never written by it again.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from service.core.db import Database
from service.core.jobs import repository
from service.core.jobs.lifecycle import JobStatus

log = logging.getLogger(__name__)
HOLDING = (JobStatus.RUNNING.value, JobStatus.CANCELLING.value)


class JobReporter:
    def __init__(self, database: Database, job_id: str, worker_id: str, cancel_poll_s: float):
        self.database = database
        self.job_id = job_id
        self.worker_id = worker_id
        self.cancel_poll_s = cancel_poll_s
        self._last_poll = 0.0
        self._stop = False

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

    def metrics(self, values: dict[str, Any], metrics_file: Path) -> None:
        with open(metrics_file, "a") as out:
            out.write(json.dumps(values) + "\n")
        message = f"Step {values['step']}: training loss={values['loss']:.4f}"
        self.event(message, type="metrics", **values)
        with self.database.transaction() as session:
            repository.heartbeat(
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

    def should_stop(self) -> bool:
        """True once the job is no longer plainly running (a cancel, or taken back); polled per step."""
        now = time.monotonic()
        if not self._stop and now - self._last_poll >= self.cancel_poll_s:
            self._last_poll = now
            with self.database.transaction() as session:
                status = repository.status_of(session, self.job_id)
                held = repository.heartbeat(session, self.job_id, self.worker_id)
            self._stop = status != JobStatus.RUNNING.value or not held
        return self._stop

    def succeed(self, result_files: list[str], trained_tokens: int, model_name: str) -> bool:
        with self.database.transaction() as session:
            done = repository.transition_held(
                session,
                self.job_id,
                self.worker_id,
                expected=JobStatus.RUNNING,
                to=JobStatus.SUCCEEDED,
                result_files=result_files,
                trained_tokens=trained_tokens,
                fine_tuned_model=model_name,
            )
            if done:
                repository.add_event(session, self.job_id, "The job has successfully completed")
        return done

    def cancelled(self, step: int) -> bool:
        with self.database.transaction() as session:
            done = repository.transition_held(
                session, self.job_id, self.worker_id, expected=HOLDING, to=JobStatus.CANCELLED
            )
            if done:
                repository.add_event(session, self.job_id, f"Job cancelled at step {step}")
        return done

    def fail(self, error: dict[str, Any], detail: str | None = None) -> bool:
        data = {"log_tail": detail} if detail else None
        with self.database.transaction() as session:
            return repository.fail_held(
                session, self.job_id, self.worker_id, error, expected=HOLDING, data=data
            )


class QuietReporter(JobReporter):
    """The reporter of ranks above 0 in a multi-GPU job: rank 0 alone writes the job's record and
    polls the cancel flag (the recipe shares its stop decision with every rank)."""

    def event(self, message: str, *, level: str = "info", type: str = "message", **data: Any):
        log.debug("%s (rank > 0, not recorded): %s", self.job_id, message)

    def phase(self, phase: str, message: str, **data: Any) -> None:
        self.event(message)

    def metrics(self, values: dict[str, Any], metrics_file: Path) -> None:
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

    def fail(self, error: dict[str, Any], detail: str | None = None) -> bool:
        return False
