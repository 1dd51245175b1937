"""What a running job writes back: phases, events, metrics, checkpoints, the allocation, the outcome.

Each write is its own short transaction, so the API shows it at once, and each is made only while
this worker still holds the job, checked with the job's row locked: a worker whose job was taken back
(a stale heartbeat: it was paused, or cut off) writes nothing more, and stops at its next step. A
database that cannot be reached (a restart) is waited out for ``db_patience_s``. The heartbeat itself
is not written here: the supervisor is its one writer (worker/supervisor.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from service.core.db import Database
from service.core.files import service as files
from service.core.jobs import repository
from service.core.jobs.errors import JobError
from service.core.jobs.lifecycle import HOLDING, JobStatus
from service.core.storage import Storage, job_key

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ResultFile:
    """A file the job wrote for its team (``step_metrics.csv``), stored under ``files/<file_id>``."""

    file_id: str
    filename: str
    size: int
    rows: int


def reward_summary(margin: float | None, accuracy: float | None) -> str:
    """DPO's reward margin and accuracy for an event's message ("" for supervised runs)."""
    if margin is None or accuracy is None:
        return ""
    return f", reward margin={margin:.4f}, reward accuracy={accuracy:.2f}"


class JobReporter:
    def __init__(
        self,
        database: Database,
        job_id: str,
        worker_id: str,
        cancel_poll_s: float,
        db_patience_s: float = 0.0,
    ):
        self.database = database
        self.job_id = job_id
        self.worker_id = worker_id
        self.cancel_poll_s = cancel_poll_s
        self.db_patience_s = db_patience_s
        self.lost = False  # the job was taken back from this worker
        self._last_poll = 0.0
        self._stop = False
        self._pausing = False
        self._recorded_steps: set[int] | None = None
        self._run: int | None = None  # 0, or 1 once a collapse made the job retry

    def _write(self, write: Callable[[Session], T]) -> T | None:
        """``write(session)`` while this worker holds the job; None (and the job stops) once not."""

        def guarded(session: Session) -> T | None:
            status, worker = repository.holder(session, self.job_id, lock=True) or (None, None)
            if status not in HOLDING or worker != self.worker_id:
                if not self.lost:
                    log.warning(
                        "%s: no longer held by %s; writing nothing more",
                        self.job_id,
                        self.worker_id,
                    )
                self.lost = self._stop = True
                return None
            return write(session)

        return self.database.run(guarded, patience_s=self.db_patience_s)

    def _read(self, read: Callable[[Session], T]) -> T:
        return self.database.run(read, patience_s=self.db_patience_s)

    def event(self, message: str, *, level: str = "info", type: str = "message", **data: Any):
        log.info("%s: %s", self.job_id, message)  # the log tail of a crash shows how far it got
        self._write(
            lambda s: repository.add_event(
                s, self.job_id, message, level=level, type=type, data=data or None
            )
        )

    def phase(self, phase: str, message: str, **data: Any) -> None:
        log.info("%s: %s", self.job_id, message)

        def write(session: Session) -> None:
            repository.set_phase(session, self.job_id, self.worker_id, phase)
            repository.add_event(session, self.job_id, message, data={"phase": phase, **data})

        self._write(write)

    def metrics(self, values: dict[str, Any], estimated_finish: datetime | None = None) -> None:
        """A training step's metrics event, once per step: a run resumed from a checkpoint repeats
        the steps an earlier attempt ran past it, and those already have theirs. The job's
        estimated finish moves with each report."""
        if self._recorded_steps is None:
            self._recorded_steps = self._read(
                lambda s: repository.training_metric_steps(s, self.job_id)
            )
        if values["step"] in self._recorded_steps:
            return
        self._recorded_steps.add(values["step"])
        if self.run() > 0:
            values = {**values, "run": self.run()}
        message = f"Step {values['step']}: training loss={values['loss']:.4f}"
        message += reward_summary(values.get("reward_margin"), values.get("reward_accuracy"))

        def write(session: Session) -> None:
            repository.add_event(session, self.job_id, message, type="metrics", data=values)
            repository.record_progress(
                session,
                self.job_id,
                self.worker_id,
                trained_tokens=values["trained_tokens"],
                estimated_finish=estimated_finish,
            )

        self._write(write)

    def run(self) -> int:
        """The training run metrics belong to: 0, or 1 after a retry (read once per attempt)."""
        if self._run is None:
            self._run = self._read(lambda s: repository.training_run(s, self.job_id))
        return self._run

    def set_learning_rate(
        self, rate: float, multiplier: float, search: dict[str, Any] | None = None
    ) -> None:
        self._write(
            lambda s: repository.set_learning_rate(
                s, self.job_id, self.worker_id, rate, multiplier, search
            )
        )

    def restart_training(self, storage: Storage) -> None:
        """A retry from the initial adapter: the first run's checkpoints go (a crash must not resume
        from them), its metrics stay in the log as run 0, the retry's are run 1."""
        storage.delete(job_key(self.job_id, "checkpoints"))
        storage.delete(job_key(self.job_id, "checkpoint-adapters"))
        self._write(lambda s: repository.delete_checkpoints(s, self.job_id))
        self._run, self._recorded_steps = self.run() + 1, set()

    def checkpoint(self, step: int, storage_key: str, metrics: dict[str, Any]) -> None:
        def write(session: Session) -> None:
            repository.add_checkpoint(session, self.job_id, step, storage_key, metrics)
            repository.add_event(
                session, self.job_id, f"Checkpoint saved at step {step}", data={"step": step}
            )

        self._write(write)

    def allocation(self, report: dict[str, Any]) -> None:
        totals = report["totals"]

        def write(session: Session) -> None:
            repository.save_allocation(session, self.job_id, report)
            repository.add_event(
                session,
                self.job_id,
                f"Rank allocation ready: {totals['allocated']:,} of {totals['budget']:,} "
                "adapter parameters",
                data={"totals": totals},
            )

        self._write(write)

    def stored_allocation(self) -> dict[str, Any]:
        """The allocation report stored when the job probed (a resumed attempt does not probe)."""
        report = self._read(lambda s: repository.get_allocation(s, self.job_id))
        assert report is not None, f"job {self.job_id} resumes but has no stored allocation"
        return report

    def source_allocation(self, job_id: str) -> dict[str, Any]:
        """The allocation stored by another job of the team (a warm start's source)."""
        report = self._read(lambda s: repository.get_allocation(s, job_id))
        assert report is not None, f"warm-start source {job_id} has no stored allocation"
        return report

    def training_metrics(self) -> list[dict[str, Any]]:
        """Every training step's metrics, as the job's events recorded them."""
        return self._read(lambda s: repository.training_metrics(s, self.job_id))

    def validation_metrics(self) -> list[dict[str, Any]]:
        """Every evaluation's metrics, as the job's events recorded them."""
        return self._read(lambda s: repository.validation_metrics(s, self.job_id))

    def holds(self) -> bool:
        """Whether this worker still holds the job (read now): before writing to the store."""
        held = self._read(lambda s: repository.holder(s, self.job_id))
        self.lost = self.lost or held is None or held[0] not in HOLDING or held[1] != self.worker_id
        return not self.lost

    def should_stop(self) -> bool:
        """True once the job is no longer this worker's to run plainly (a cancel, or taken back);
        read at most every ``cancel_poll_s``, at step boundaries."""
        now = time.monotonic()
        if not self._stop and now - self._last_poll >= self.cancel_poll_s:
            self._last_poll = now
            held = self._read(lambda s: repository.holder(s, self.job_id))
            self._stop = held != (JobStatus.RUNNING.value, self.worker_id)
            self._pausing = held == (JobStatus.PAUSING.value, self.worker_id)
        return self._stop

    def pausing(self) -> bool:
        """Whether the stop ``should_stop`` found is a pause (the run checkpoints where it stops)."""
        return self._pausing

    def _finish(self, expected: Any, to: JobStatus, event: str, **values: Any) -> bool:
        moved = self._write(
            lambda s: repository.move(
                s,
                self.job_id,
                expected=expected,
                to=to,
                event=event,
                held_by=self.worker_id,
                **values,
            )
        )
        return bool(moved)

    def succeed(self, result: ResultFile, trained_tokens: int, model_name: str) -> bool:
        """Succeeded, with ``result`` (its bytes stored) recorded as the team's file in the same
        transaction. Only from running: a job cancelled while it exported ends cancelled."""

        def write(session: Session) -> bool:
            moved = repository.move(
                session,
                self.job_id,
                expected=JobStatus.RUNNING,
                to=JobStatus.SUCCEEDED,
                event="The job has successfully completed",
                held_by=self.worker_id,
                result_files=[result.file_id],
                trained_tokens=trained_tokens,
                fine_tuned_model=model_name,
            )
            if moved:
                job = repository.get(session, self.job_id)
                assert job is not None
                files.record_result(
                    session, job.team_id, result.file_id, result.filename, result.size, result.rows
                )
            return moved

        return bool(self._write(write))

    def pool_throughput(self) -> tuple[float, int] | None:
        """(median tokens/s, reports) of earlier jobs of this job's model on its pool."""
        return self._read(lambda s: repository.pool_throughput(s, self.job_id))

    def finish_dry_run(self, preview: dict[str, Any], message: str) -> bool:
        """A dry run ends succeeded, with its preview on the job."""
        return self._finish(JobStatus.RUNNING, JobStatus.SUCCEEDED, message, preview=preview)

    def stopped(self, step: int) -> bool:
        """The end of a run that stopped before its last step: paused (its checkpoint at ``step`` is
        stored; a resume continues from it, on any worker), or cancelled."""

        def write(session: Session) -> bool:
            if repository.status_of(session, self.job_id) == JobStatus.PAUSING:
                return repository.move(
                    session, self.job_id, expected=JobStatus.PAUSING, to=JobStatus.PAUSED,
                    event=f"Job paused at step {step}; a resume continues from there",
                    held_by=self.worker_id, worker_id=None,
                )  # fmt: skip
            return repository.move(
                session, self.job_id, expected=HOLDING, to=JobStatus.CANCELLED,
                event=f"Job cancelled at step {step}", held_by=self.worker_id,
            )  # fmt: skip

        return bool(self._write(write))

    def fail(self, error: JobError) -> bool:
        moved = self._write(
            lambda s: repository.fail(
                s, self.job_id, error, expected=HOLDING, held_by=self.worker_id
            )
        )
        return bool(moved)


class QuietReporter(JobReporter):
    """The reporter of ranks above 0 in a multi-GPU job: rank 0 alone writes the job's record and
    polls the cancel flag (the recipe shares its stop decision with every rank)."""

    def event(self, message: str, *, level: str = "info", type: str = "message", **data: Any):
        log.debug("%s (rank > 0, not recorded): %s", self.job_id, message)

    def phase(self, phase: str, message: str, **data: Any) -> None:
        self.event(message)

    def metrics(self, values: dict[str, Any], estimated_finish: datetime | None = None) -> None:
        pass

    def checkpoint(self, step: int, storage_key: str, metrics: dict[str, Any]) -> None:
        pass

    def allocation(self, report: dict[str, Any]) -> None:
        pass

    def set_learning_rate(
        self, rate: float, multiplier: float, search: dict[str, Any] | None = None
    ) -> None:
        pass

    def restart_training(self, storage: Storage) -> None:
        self._run, self._recorded_steps = self.run() + 1, set()

    def should_stop(self) -> bool:
        return False

    def succeed(self, result: ResultFile, trained_tokens: int, model_name: str) -> bool:
        return False

    def stopped(self, step: int) -> bool:
        return False

    def finish_dry_run(self, preview: dict[str, Any], message: str) -> bool:
        return False

    def fail(self, error: JobError) -> bool:
        return False
